#!/bin/bash
# The config stack of an experiment, as samadapt arguments: experiments/base.yaml, experiments/<EXP>.yaml and,
# with an ablation, its delta file experiments/<EXP>/<ABL>.yaml. An old flat name (ldit_refcoco) is looked up in
# experiments/renamed.yaml, with one line on stderr naming the new one. Used by make train/eval and scripts/*.
#   scripts/experiment_configs.sh refcoco/ldit frozen
#   -> --config experiments/base.yaml --config experiments/refcoco/ldit.yaml --config experiments/refcoco/ldit/frozen.yaml
set -euo pipefail
EXP=${1:-} ABL=${2:-} DIR=experiments
list() { find "$DIR/$1" -mindepth "$2" -maxdepth "$2" -name '*.yaml' | sed "s|^$DIR/$1/*||; s|\.yaml$||" | sort | xargs; }

if [ -n "$EXP" ] && [ ! -f "$DIR/$EXP.yaml" ]; then
  NEW=$(awk -F': *' -v old="$EXP" '$1 == old {print $2}' "$DIR/renamed.yaml")
  if [ -n "$NEW" ]; then
    if [ -f "$DIR/$(dirname "$NEW").yaml" ]; then  # a path three deep is an ablation of its parent experiment
      [ -z "$ABL" ] || { echo "EXP=$EXP is now EXP=$(dirname "$NEW") ABL=$(basename "$NEW"): drop ABL=$ABL" >&2; exit 2; }
      ABL=$(basename "$NEW") NEW=$(dirname "$NEW")
    fi
    echo "samadapt: EXP=$EXP is now EXP=$NEW${ABL:+ ABL=$ABL} (the old name works for one more release)" >&2
    EXP=$NEW
  fi
fi
if [ -z "$EXP" ] || [ ! -f "$DIR/$EXP.yaml" ]; then
  problem=${EXP:+no experiment file $DIR/$EXP.yaml}
  echo "${problem:-set EXP=<dataset>/<method>}; choose EXP= from: $(list "" 2)" >&2
  exit 2
fi
CONFIGS="--config $DIR/base.yaml --config $DIR/$EXP.yaml"
if [ -n "$ABL" ]; then
  if [ ! -f "$DIR/$EXP/$ABL.yaml" ]; then
    echo "no ablation file $DIR/$EXP/$ABL.yaml; ABL= for EXP=$EXP: $( [ -d "$DIR/$EXP" ] && list "$EXP" 1 || echo none)" >&2
    exit 2
  fi
  CONFIGS="$CONFIGS --config $DIR/$EXP/$ABL.yaml"
fi
echo "$CONFIGS"
