#!/usr/bin/env bash
# Idempotent environment set-up: creates .venv (Python 3.11) with the pinned stack, the package in
# editable mode and, where a CPU wheel is reachable, the optional torch extra (.pyth reading only).
# Usage: bash launch/setup_env.sh     (re-running is a no-op once .venv/.ready exists)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ -f .venv/.ready && ! requirements.txt -nt .venv/.ready ]]; then exit 0; fi
echo "[setup] creating .venv with $($PY --version)"
rm -rf .venv
$PY -m venv .venv
.venv/bin/pip install -q uv==0.13.9 || true
if [[ -x .venv/bin/uv ]]; then
  # uv ignores pip.conf; --compile-bytecode matters when PYTHONDONTWRITEBYTECODE is set.
  .venv/bin/uv pip install -q --compile-bytecode -p .venv/bin/python -r requirements.txt
  .venv/bin/uv pip install -q --no-deps -p .venv/bin/python -e .
else
  .venv/bin/pip install -q -r requirements.txt
  .venv/bin/pip install -q --no-deps -e .
fi
# Optional: CPU torch for reading .pyth files. Only a CPU build: from a local wheel folder
# (PIP_FIND_LINKS, e.g. /opt/wheels) or, with MFORMER_TORCH=cpu-index, the PyTorch CPU index.
# Never plain `pip install torch`: from PyPI that pulls several GB of CUDA wheels.
TORCH_WHEEL=$(ls ${PIP_FIND_LINKS:-/opt/wheels}/torch-2.13.0+cpu-*.whl 2>/dev/null | head -1 || true)
if [[ "${MFORMER_TORCH:-auto}" == "cpu-index" ]]; then
  .venv/bin/pip install -q -r requirements-torch.txt --index-url https://download.pytorch.org/whl/cpu
elif [[ -n "$TORCH_WHEEL" && "${MFORMER_TORCH:-auto}" != "off" ]]; then
  .venv/bin/pip install -q "$TORCH_WHEEL" && echo "[setup] torch (optional .pyth reader) installed"
else
  echo "[setup] torch not installed: .pyth import disabled (.npz works); MFORMER_TORCH=cpu-index to add it"
fi
touch .venv/.ready
echo "[setup] done"
