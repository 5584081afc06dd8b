#!/usr/bin/env bash
# Quality search on one GPU (issue 3, part 1): one-change ablations of the reference
# me5-small-ko recipe and an Optuna study, all running at once and sharing the GPU.
#
#   research/experiments/search.sh OUT_DIR TUNE_SECONDS HARD_STOP_SECONDS
#
# Every ablation is $CONFIG (default research/configs/me5-small-ko-r1.yaml) with one change; the
# study samples $SPACE (default training/configs/search/default.yaml) with $WORKERS
# processes and starts no trial after TUNE_SECONDS. Runs still going at HARD_STOP_SECONDS are
# stopped (their per-epoch metrics stay in OUT_DIR/logs). Selection is on validation only.
# Results: OUT_DIR/ablations.md (python -m training.compare), OUT_DIR/tune/<study>/report.md.
set -uo pipefail
source "$(dirname "$0")/jobs.sh"
out=${1:-outputs/search}
tune_seconds=${2:-450}
hard_stop=${3:-540}
config=${CONFIG:-research/configs/me5-small-ko-r1.yaml}
space=${SPACE:-training/configs/search/default.yaml}
names=(baseline symmetric korsts mean_pooling bce llrd_0.8 long_early_stop average_top3)
mkdir -p "$out/logs"

ablation() {
  local name=$1
  shift
  python3 -m training.train --config "$config" --output_dir "$out/runs/$name" --save_to_store false \
    --export_onnx false --disable_tqdm true "$@" >"$out/logs/$name.log" 2>&1 &
}

ablation baseline
ablation symmetric --symmetric true
ablation korsts --extra_train_files data/korsts/korsts_train.jsonl
ablation mean_pooling --pooling mean
ablation bce --objective bce
ablation llrd_0.8 --layerwise_lr_decay 0.8
ablation long_early_stop --num_train_epochs 15 --early_stopping_patience 3
ablation average_top3 --average_top_k 3
python3 -m training.tune --config "$config" --space "$space" --output-dir "$out/tune" \
  --workers "${WORKERS:-5}" --n-trials 200 --timeout "$tune_seconds" >"$out/logs/tune.log" 2>&1 &

wait_until "$hard_stop"

packages=()
for name in "${names[@]}"; do
  [ -f "$out/runs/$name/model/metadata.json" ] && packages+=("$out/runs/$name/model")
done
[ ${#packages[@]} -gt 0 ] && python3 -m training.compare "${packages[@]}" >"$out/ablations.md"
python3 -m training.tune --config "$config" --space "$space" --output-dir "$out/tune" --report-only >>"$out/logs/tune.log" 2>&1
exit 0
