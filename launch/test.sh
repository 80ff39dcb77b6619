#!/usr/bin/env bash
# The README's test command: sets up the environment if needed, then runs the whole test suite.
# Extra arguments go to pytest (e.g. bash launch/test.sh -k goldens).
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0
exec .venv/bin/python -m pytest -q -ra "$@"
