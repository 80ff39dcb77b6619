#!/usr/bin/env bash
# Idempotent environment set-up: creates .venv (Python 3.12) with the pinned stack and the package in
# editable mode. torch is not needed (official .pyth files are read without it); MFORMER_TORCH=cpu-index
# adds the CPU build for running the official PyTorch code in benchmarks/.
# Usage: bash launch/setup_env.sh     (re-running is a no-op once .venv/.ready is newer than requirements.txt)
#        PYTHON=/path/to/python3.12 bash launch/setup_env.sh     (choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -f .venv/.ready && ! requirements.txt -nt .venv/.ready ]]; then exit 0; fi

# jax 0.12 needs Python >= 3.12. Found by path too: a pyenv shim such as `python3.12` fails unless
# pyenv has that version selected, so the versions folder is searched directly.
ok() { [[ -n "$1" ]] && "$1" -c 'import sys; sys.exit(not (3, 12) <= sys.version_info[:2] < (3, 14))' 2>/dev/null; }
PY=${PYTHON:-}
if [[ -n "$PY" ]] && ! ok "$PY"; then
  echo "[setup] error: PYTHON=$PY is not a working Python 3.12 or 3.13" >&2; exit 1
fi
if [[ -z "$PY" ]]; then
  for cand in python3.12 python3 python3.13 \
      "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.12*/bin/python3.12 \
      "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.13*/bin/python3.13; do
    if ok "$(command -v "$cand" 2>/dev/null || true)"; then PY=$(command -v "$cand"); break; fi
  done
fi
if [[ -z "$PY" ]]; then
  cat >&2 <<'MSG'
[setup] error: Python 3.12 (or 3.13) not found; jax 0.12 needs it. Install one, e.g.
  pyenv install 3.12          (then re-run; pyenv's versions folder is searched)
  apt-get install python3.12 python3.12-venv    (Ubuntu 24.04; Debian 12 has no 3.12 package)
  uv python install 3.12      (then PYTHON=$(uv python find 3.12) bash launch/setup_env.sh)
MSG
  exit 1
fi
echo "[setup] creating .venv with $("$PY" --version) ($PY)"
rm -rf .venv
"$PY" -m venv .venv
.venv/bin/pip install -q uv==0.13.9 || true
if [[ -x .venv/bin/uv ]]; then
  # uv ignores pip.conf; --compile-bytecode matters when PYTHONDONTWRITEBYTECODE is set.
  .venv/bin/uv pip install -q --compile-bytecode -p .venv/bin/python -r requirements.txt
  .venv/bin/uv pip install -q --no-deps -p .venv/bin/python -e .
else
  .venv/bin/pip install -q -r requirements.txt
  .venv/bin/pip install -q --no-deps -e .
fi
# Optional: CPU torch, only to run the official PyTorch code beside ours (benchmarks/). Never plain
# `pip install torch`: from PyPI that pulls several GB of CUDA wheels.
if [[ "${MFORMER_TORCH:-off}" == "cpu-index" ]]; then
  .venv/bin/pip install -q -r requirements-torch.txt --index-url https://download.pytorch.org/whl/cpu
fi
# ---- libtpu (optional extra, requirements-tpu.txt) -------------------------------------------
# Only `python -m mformer_jax.plan` uses it. Into .venv/libtpu, outside site-packages: an
# importable libtpu makes every `import jax` on a machine without a TPU load it (warnings, a
# lockfile). Unreachable is not an error; MFORMER_LIBTPU=off skips it (a TPU VM: jax[tpu] brings
# its own).
if [[ "${MFORMER_LIBTPU:-on}" != "off" ]]; then
  if [[ -x .venv/bin/uv ]]; then
    tpu_install=(.venv/bin/uv pip install -q -p .venv/bin/python)
  else
    tpu_install=(.venv/bin/pip install -q)
  fi
  "${tpu_install[@]}" --target .venv/libtpu -r requirements-tpu.txt \
    || echo "[setup] libtpu not reachable: mformer_jax.plan (TPU plans) unavailable, all else works"
fi
# ---- end libtpu ------------------------------------------------------------------------------
# ---- export (optional extra, requirements-export.txt) ----------------------------------------
# Only `python -m mformer_jax.export --format=onnx` uses it. --no-deps into .venv/export, outside
# site-packages: jax2onnx pins an orbax-checkpoint older than requirements.txt's, so installed
# beside the core packages `pip check` would fail; the core environment provides the packages it
# shares. Unreachable is not an error; MFORMER_EXPORT=off skips it.
if [[ "${MFORMER_EXPORT:-on}" != "off" ]]; then
  if [[ -x .venv/bin/uv ]]; then
    export_install=(.venv/bin/uv pip install -q -p .venv/bin/python)
  else
    export_install=(.venv/bin/pip install -q)
  fi
  "${export_install[@]}" --no-deps --target .venv/export -r requirements-export.txt \
    || echo "[setup] export extra not reachable: --format=onnx unavailable, all else works"
fi
# ---- end export ------------------------------------------------------------------------------
touch .venv/.ready
echo "[setup] done"
