#!/usr/bin/env bash
# Idempotent environment set-up: creates .venv (Python 3.11) with the pinned stack, the package in
# editable mode and, where a CPU wheel is reachable, the optional torch extra (.pyth reading only).
# Usage: bash launch/setup_env.sh     (re-running is a no-op once .venv/.ready exists)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ -f .venv/.ready && .venv/.ready -nt requirements.txt ]]; then exit 0; fi
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
# Optional: CPU torch for reading .pyth files. pip (not uv) so the machine's find-links CPU wheel
# is used; never unpinned (an unpinned torch pulls several GB of CUDA wheels).
if [[ "${MFORMER_NO_TORCH:-0}" != "1" ]]; then
  .venv/bin/pip install -q torch==2.13.0 2>/dev/null \
    && echo "[setup] torch (optional .pyth reader) installed" \
    || echo "[setup] torch not installed: .pyth import disabled, .npz works"
fi
touch .venv/.ready
echo "[setup] done"
