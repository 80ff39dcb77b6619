#!/usr/bin/env bash
# The oldest supported JAX: builds .venv-jax<V> (requirements.txt with jax/jaxlib replaced by V, the
# first entry of mformer_jax.JAX_SUPPORTED) and runs the fast test tier in it.
# Usage: bash launch/test_compat.sh [pytest args]      (default args: -m "not slow")
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup_env.sh                     # finds Python 3.12 and the uv used below
V=$(.venv/bin/python -c "import ast; t = ast.parse(open('mformer_jax/__init__.py').read()); \
print(next(ast.literal_eval(n.value)[0] for n in t.body if isinstance(n, ast.Assign) \
and n.targets[0].id == 'JAX_SUPPORTED'))")
VENV=.venv-jax$V
if [[ ! -f $VENV/.ready || requirements.txt -nt $VENV/.ready ]]; then
  echo "[compat] creating $VENV (jax/jaxlib $V, the rest as requirements.txt)"
  rm -rf "$VENV"
  "$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" -m venv "$VENV"
  sed -E "s/^(jax|jaxlib)==.*/\1==$V/" requirements.txt > "$VENV/requirements.txt"
  .venv/bin/uv pip install -q --compile-bytecode -p "$VENV/bin/python" -r "$VENV/requirements.txt"
  .venv/bin/uv pip install -q --no-deps -p "$VENV/bin/python" -e .
  touch "$VENV/.ready"
fi
export TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0
"$VENV/bin/python" -c "import jax; assert jax.__version__ == '$V', jax.__version__; print('[compat] jax', jax.__version__)"
if [[ $# -eq 0 ]]; then set -- -m "not slow"; fi
exec "$VENV/bin/python" -m pytest -q -ra -p no:cacheprovider "$@"
