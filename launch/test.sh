#!/usr/bin/env bash
# The README's test command: sets up the environment if needed, then runs the whole test suite in
# two tiers: the fast tier first (-m "not slow", where a test over the time budget fails:
# tests/conftest.py), then the slow one; the status is non-zero if either fails.
# Extra arguments make it one pytest run with them instead (e.g. bash launch/test.sh -k goldens,
# bash launch/test.sh -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0
pytest=(.venv/bin/python -m pytest -q -ra)
if [[ $# -gt 0 ]]; then exec "${pytest[@]}" "$@"; fi
status=0
echo "[test] fast tier (-m 'not slow')"
"${pytest[@]}" -m "not slow" --durations=5 || status=$?
echo "[test] slow tier (-m slow)"
"${pytest[@]}" -m slow || status=$((status ? status : $?))
exit "$status"
