#!/usr/bin/env bash
# Round 3 (issue 10) on one GPU: hard negatives for every contrast kind (training.augment), on the
# shipped default's own split (research/configs/me5-small-ko-r3.yaml), trained two ways:
#   from the base model:      KLUE-STS alone (reference), + hard negatives, + KorSTS + hard negatives (2 seeds)
#   from the shipped default: + KorSTS + hard negatives (2 seeds), + hard negatives; 3 epochs at lr 2e-5
# (PLAN=seeds instead: three more seeds of the first KorSTS + hard-negative recipe, two of the
# second, and the first at lr 3e-5 with two seeds; PLAN=korsts_negatives: both recipes with hard
# negatives made from KorSTS train's sentences as well, whose captions hold role swaps),
# a weight soup per two-seed recipe, then the pre-declared choice: the highest selection score
# (validation + KorSTS-train hold-out; training.train) among the runs and soups trained with
# hard negatives, since telling meaning from topic is a requirement (issue 10, item 4) that
# validation does not measure. Dev, KorSTS dev and the contrast set are reported, never used.
#
#   BASE_MODEL=/path/to/me5-small-ko research/experiments/round3.sh OUT_DIR [RUN_SECONDS]
#
# CONTINUE_FROM replaces the shipped default as the second starting point and EXTRA adds
# arguments to every run (a quick check: a tiny model and --max_train_samples).
# Results: OUT_DIR/round3.log, compare.md, contrast.md; OUT_DIR/work/final/model (the choice).
set -u
out=$1; budget=${2:-400}; t0=$SECONDS; w=$out/work; mkdir -p "$w"
python=${PYTHON:-python3}; device=${DEVICE:-cuda}; base=${BASE_MODEL:?set BASE_MODEL}
log() { echo "[$((SECONDS - t0))s] $*" | tee -a "$out/round3.log"; }
config=research/configs/me5-small-ko-r3.yaml

# The shipped default as a float32 checkpoint (rebuilt from its int8 export) to continue from.
default=${CONTINUE_FROM:-$w/default-fp32}
if [ -z "${CONTINUE_FROM:-}" ]; then
  mkdir -p "$default"
  cp models/default/config.json models/default/tokenizer.json models/default/tokenizer_config.json "$default/"
  $python -c "from models.weights import write_torch_weights as w; w('$default', 'models/default/onnx/model_quantized.onnx', 'float32')"
fi
$python -m training.augment data/klue-sts/klue_sts_train.jsonl "$w/hn.jsonl" --per-kind 1000 --seed 13 > "$w/augment.log" 2>&1
log "augment: $(wc -l < "$w/hn.jsonl") pairs; $(grep -c . "$w/augment.log") log lines"

source "$(dirname "$0")/jobs.sh"
start_mps "$python"; log "CUDA MPS: $mps"
stop=$(( $(date +%s) + budget ))
run() { local name=$1 seed=$2 init=$3; shift 3
  OMP_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false $python -m training.train --config $config \
    --model_name_or_path "$init" --output_dir "$w/$name-s$seed" --seed "$seed" --data_seed "$seed" --stop_at "$stop" \
    --disable_tqdm true --save_dtype float32 ${EXTRA:-} "$@" > "$w/$name-s$seed.log" 2>&1 & }
korsts=data/korsts/korsts_train.jsonl; hn=$w/hn.jsonl
continued=(--learning_rate 2e-5 --num_train_epochs 3)
if [ "${PLAN:-recipes}" = recipes ]; then  # which recipe
  run ref 1 "$base"
  run hn 1 "$base" --extra_train_files "$hn"
  run korsts_hn 1 "$base" --extra_train_files $korsts "$hn"
  run korsts_hn 2 "$base" --extra_train_files $korsts "$hn"
  run default_korsts_hn 1 "$default" --extra_train_files $korsts "$hn" "${continued[@]}"
  run default_korsts_hn 2 "$default" --extra_train_files $korsts "$hn" "${continued[@]}"
  run default_hn 1 "$default" --extra_train_files "$hn" "${continued[@]}"
elif [ "$PLAN" = korsts_negatives ]; then  # hard negatives from KorSTS train's sentences too (roles: 남자가 여자에게)
  $python -m training.augment $korsts "$w/hn_korsts.jsonl" --per-kind 1000 --seed 13 > "$w/augment_korsts.log" 2>&1
  log "augment KorSTS: $(wc -l < "$w/hn_korsts.jsonl") pairs"
  for seed in 1 2 3; do run korsts_hn2 $seed "$base" --extra_train_files $korsts "$hn" "$w/hn_korsts.jsonl"; done
  for seed in 1 2; do
    run default_korsts_hn2 $seed "$default" --extra_train_files $korsts "$hn" "$w/hn_korsts.jsonl" "${continued[@]}"
  done
else  # PLAN=seeds: more seeds of the two KorSTS + hard-negative recipes, and a lower rate
  for seed in 3 4 5; do run korsts_hn $seed "$base" --extra_train_files $korsts "$hn"; done
  for seed in 3 4; do run default_korsts_hn $seed "$default" --extra_train_files $korsts "$hn" "${continued[@]}"; done
  for seed in 1 2; do run korsts_hn_lr3e-5 $seed "$base" --extra_train_files $korsts "$hn" --learning_rate 3e-5; done
fi
wait; log "runs done"
soup_recipes "$w" korsts_hn default_korsts_hn korsts_hn_lr3e-5 korsts_hn2 default_korsts_hn2; log "soups done"
packages=$(ls -d "$w"/*/metadata.json "$w"/*/model/metadata.json 2>/dev/null | xargs -n1 dirname | tr '\n' ' ')
best=$($python - $packages <<'PY' 2>> "$out/round3.log"
import json, sys
scores = {}
for package in sys.argv[1:]:
    meta = json.load(open(package + "/metadata.json"))
    extra = meta["hyperparameters"].get("extra_train_files") or []  # a soup keeps its components' recipe
    score = meta.get("selection", {}).get("score") or 0
    hard_negatives = any(path.rsplit("/", 1)[-1].startswith("hn") for path in extra)
    print(f"{score:.4f} {'hn' if hard_negatives else '--'} {package}", file=sys.stderr)
    if hard_negatives:
        scores[package] = score
print(max(scores, key=scores.get))
PY
)
log "choice (highest selection score among hard-negative runs): $best"; mkdir -p "$w/final" && cp -r "$best" "$w/final/model"
[ -n "${AFTER_CHOICE:-}" ] && bash -c "$AFTER_CHOICE"
report_packages "$out" "$w/reports.err" $packages
log "reports done"
