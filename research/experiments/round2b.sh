#!/usr/bin/env bash
# Round 2b (issue 10) on one GPU: the shipped recipe (research/configs/me5-small-ko-r2.yaml) with
# few processes so that runs get most of their schedule: alone, with KorSTS train mixed in, with
# hard negatives (training.augment), and with both; two seeds where it matters, a weight soup per
# recipe, the choice by selection score, the comparison and the contrast set per candidate.
#
#   BASE_MODEL=/path/to/me5-small-ko research/experiments/round2b.sh OUT_DIR [RUN_SECONDS]
#
# Every run stops after the epoch that would end past RUN_SECONDS (stop_at; its best epoch is
# kept). Results: OUT_DIR/train2.log, compare.md, contrast.md, OUT_DIR/work/final/model.
set -u
out=$1; budget=${2:-330}; t0=$SECONDS; w=$out/work; mkdir -p "$w"
python=${PYTHON:-python3}; device=${DEVICE:-cuda}; base=${BASE_MODEL:?set BASE_MODEL}
log() { echo "[$((SECONDS - t0))s] $*" | tee -a "$out/train2.log"; }
$python -m training.augment data/klue-sts/klue_sts_train.jsonl "$w/hn.jsonl" --per-kind 1500 --seed 13 > "$w/augment.log" 2>&1
log "augment: $(wc -l < "$w/hn.jsonl") pairs"
source "$(dirname "$0")/jobs.sh"
start_mps "$python"; log "CUDA MPS: $mps"
stop=$(( $(date +%s) + budget ))
run() { local name=$1 seed=$2; shift 2
  OMP_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false $python -m training.train --config research/configs/me5-small-ko-r2.yaml \
    --model_name_or_path "$base" --output_dir "$w/$name-s$seed" --seed "$seed" --data_seed "$seed" --stop_at "$stop" \
    --disable_tqdm true --save_dtype float32 ${EXTRA:-} "$@" > "$w/$name-s$seed.log" 2>&1 & }
korsts=data/korsts/korsts_train.jsonl
run ref 1
run korsts 1 --extra_train_files $korsts; run korsts 2 --extra_train_files $korsts
run korsts_hn 1 --extra_train_files $korsts "$w/hn.jsonl"; run korsts_hn 2 --extra_train_files $korsts "$w/hn.jsonl"
run hn 1 --extra_train_files "$w/hn.jsonl"
wait; log "runs done"
soup_recipes "$w" korsts korsts_hn; log "soups done"
packages=$(ls -d "$w"/*/metadata.json "$w"/*/model/metadata.json 2>/dev/null | xargs -n1 dirname | tr '\n' ' ')
report_packages "$out" "$w/reports.err" $packages
best=$($python -c "
import json, sys
scores = {p: json.load(open(p + '/metadata.json')).get('selection', {}).get('score') or 0 for p in sys.argv[1:]}
for p, s in sorted(scores.items(), key=lambda kv: -kv[1]): print(round(s, 4), p, file=sys.stderr)
print(max(scores, key=scores.get))" $packages 2>> "$out/train2.log")
log "best by selection score: $best"; mkdir -p "$w/final" && cp -r "$best" "$w/final/model"
