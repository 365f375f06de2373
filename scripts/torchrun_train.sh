#!/bin/bash
# Multi-node training with torchrun (no SLURM): run this on every node with its NODE_RANK.
#   node 0: NODE_RANK=0 MASTER_ADDR=10.0.0.1 NNODES=2 GPUS=8 scripts/torchrun_train.sh
#   node 1: NODE_RANK=1 MASTER_ADDR=10.0.0.1 NNODES=2 GPUS=8 scripts/torchrun_train.sh
# Lightning detects torchrun's environment (TorchElasticEnvironment) and joins the processes it started.
set -euo pipefail
CONFIGS=$(scripts/experiment_configs.sh "${EXP:-refcoco/ldit}" "${ABL:-}")  # EXP=<dataset>/<method> [ABL=...]
NNODES=${NNODES:-2} GPUS=${GPUS:-8} NODE_RANK=${NODE_RANK:?set NODE_RANK} MASTER_ADDR=${MASTER_ADDR:?set MASTER_ADDR}
export HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 WANDB_MODE=${WANDB_MODE:-offline}
STRATEGY=()
grep -qE "^ +strategy:" ${CONFIGS//--config /} || STRATEGY=(--trainer.strategy=ddp)
"${VENV:-.venv}"/bin/torchrun --nnodes="$NNODES" --nproc-per-node="$GPUS" --node-rank="$NODE_RANK" \
  --master-addr="$MASTER_ADDR" --master-port="${MASTER_PORT:-29500}" -m samadapt.cli fit \
  $CONFIGS \
  --trainer.accelerator="${ACCELERATOR:-gpu}" --trainer.num_nodes="$NNODES" --trainer.devices="$GPUS" \
  --trainer.precision="${PRECISION:-bf16-mixed}" "${STRATEGY[@]}" "$@"
