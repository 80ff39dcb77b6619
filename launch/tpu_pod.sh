#!/usr/bin/env bash
# Cloud TPU VM pod: create the VM, copy the code and install it on every worker, run on all.
#
#   export TPU_NAME=mformer ZONE=us-central2-b ACCELERATOR=v4-32 BUCKET=my-bucket
#   bash launch/tpu_pod.sh create
#   bash launch/tpu_pod.sh install
#   bash launch/tpu_pod.sh run --config=configs/k400_base.py \
#       --workdir=gs://$BUCKET/mformer/k400 --config.data.data_dir=gs://$BUCKET/k400_prepared \
#       --config.init.imagenet=gs://$BUCKET/vit_b16.npz
#   bash launch/tpu_pod.sh delete
#
# `run` first compiles the training step for $ACCELERATOR on this machine (mformer_jax.plan, with
# the run's own config and global batch; libtpu needed, no TPU) and refuses to start when it
# does not fit in the chips' memory; MFORMER_SKIP_PLAN=1 skips that check. `plan CONFIG_FLAGS
# [--batch_per_chip=N|max]` only prints the plan, e.g. before `create`.
#
# Every worker runs the same command with --multihost: jax.distributed.initialize() finds its
# peers from the TPU metadata, each host reads its own block of the data, and the workdir must
# be on GCS so that all hosts see the same checkpoints (orbax writes each host's shards there).
# A preempted run continues from its latest checkpoint when `run` is started again.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${1:-}" == plan ]] || : "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"  # plan: local only
ACCELERATOR=${ACCELERATOR:-v4-32}
VERSION=${VERSION:-tpu-ubuntu2204-base}
REMOTE_DIR=${REMOTE_DIR:-mformer_jax}
ssh_all() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$1"
}

case "${1:-}" in
  create)
    gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" \
      --accelerator-type="$ACCELERATOR" --version="$VERSION" ${SPOT:+--spot}
    ;;
  install)
    # The tracked files only (no .venv, no workdirs), unpacked on every worker.
    git archive --format=tar.gz -o /tmp/mformer_jax.tgz HEAD
    gcloud compute tpus tpu-vm scp /tmp/mformer_jax.tgz "$TPU_NAME": --zone="$ZONE" --worker=all
    ssh_all "mkdir -p $REMOTE_DIR && tar -xzf mformer_jax.tgz -C $REMOTE_DIR && cd $REMOTE_DIR \
      && MFORMER_LIBTPU=off bash launch/setup_env.sh \
      && .venv/bin/pip install -q 'jax[tpu]==$(grep '^jax==' requirements.txt | cut -d= -f3)'"
    ;;
  plan)
    shift
    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -m mformer_jax.plan --accelerator="$ACCELERATOR" "$@"
    ;;
  run)
    shift
    if [[ "${MFORMER_SKIP_PLAN:-0}" != 1 ]]; then
      config_args=()
      for a in "$@"; do [[ "$a" == --config* ]] && config_args+=("$a"); done
      if ! TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -m mformer_jax.plan --accelerator="$ACCELERATOR" \
          --global_batch=config "${config_args[@]}"; then
        echo "[tpu_pod] not started: the plan for $ACCELERATOR failed (above);" \
          "MFORMER_SKIP_PLAN=1 starts it anyway" >&2
        exit 2
      fi
    fi
    ssh_all "cd $REMOTE_DIR && TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -m mformer_jax.main \
      --multihost $(printf '%q ' "$@")"
    ;;
  delete)
    gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" --quiet
    ;;
  *)
    sed -n '2,20p' "$0"
    exit 1
    ;;
esac
