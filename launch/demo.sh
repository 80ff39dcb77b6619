#!/usr/bin/env bash
# The README's main command: sets up .venv if needed, then trains a small Motionformer on the
# embedded synthetic motion dataset (CPU, minutes: README), evaluates it and prints a result
# table (accuracy vs chance, clips/s, TensorBoard logdir).
# Usage: bash launch/demo.sh [WORKDIR] [--config.key=value ...]
#   WORKDIR defaults to a fresh workdirs/demo-<time>; an existing one is resumed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0
workdir="workdirs/demo-$(date +%Y%m%d-%H%M%S)"
if [[ $# -gt 0 && "$1" != --* ]]; then workdir="$1"; shift; fi
exec .venv/bin/python -m mformer_jax.main --config=configs/demo.py --workdir="$workdir" "$@"
