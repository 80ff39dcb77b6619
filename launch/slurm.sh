#!/usr/bin/env bash
# Multi-node GPU training under SLURM: one process per node, all its GPUs local to it.
#
#   sbatch --nodes=4 launch/slurm.sh --config=configs/k400_base.py \
#       --workdir=/shared/mformer/k400 --config.data.data_dir=/shared/k400_prepared \
#       --config.init.imagenet=/shared/vit_b16.pth
#
# The workdir and data must be on a filesystem every node sees. The script exports
# JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, the same variables the
# two-process test (tests/test_distributed.py) sets, so both go through one code path:
# mformer_jax.run.sharding.initialize_distributed(). Re-submitting resumes from the latest checkpoint.
# Preemption and the time limit: SLURM sends SIGTERM (--signal below: 120 s before the limit); the
# trainer finishes its step, saves it and exits with status 75, and the job requeues itself.
# First-time set-up on a login node: bash launch/setup_env.sh &&
#   .venv/bin/pip install "jax[cuda13]==$(grep '^jax==' requirements.txt | cut -d= -f3)"
#   (the project's jax pin; cuda12 instead of cuda13 where the nodes' driver is older than CUDA 13's)
#SBATCH --job-name=mformer
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=48:00:00
#SBATCH --requeue
#SBATCH --signal=TERM@120
#SBATCH --output=slurm-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)  # sed reads all: no SIGPIPE under pipefail
export JAX_COORDINATOR_ADDRESS="$head_node:${MFORMER_PORT:-12355}"
export JAX_NUM_PROCESSES="$SLURM_NTASKS"
export TF_CPP_MIN_LOG_LEVEL=3
# SLURM_PROCID differs per task, so it is read inside each task.
status=0
srun bash -c 'JAX_PROCESS_ID=$SLURM_PROCID exec .venv/bin/python -m mformer_jax.main "$@"' \
  mformer "$@" || status=$?
if [ "$status" -eq 75 ]; then  # stopped with a checkpoint (mformer_jax/preemption.py): go on
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
