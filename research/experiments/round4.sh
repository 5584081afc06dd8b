#!/usr/bin/env bash
# Round 4 (issue 16) on one GPU, in calls of under 10 minutes; every call starts from the base and
# the checkout, so each is self-contained (WORK, default /tmp/r4, is reused when the machine is warm).
#
#   BASE_MODEL=/path/to/me5-small-ko research/experiments/round4.sh OUT_DIR STAGE [STOP_SECONDS]
#
# STAGE compare (call 1): heal the base (python -m training.heal on the round-4 recipe's training
#   sentences), then six runs side by side under CUDA MPS, all started together: the shipped
#   default's recipe (training/configs/me5-small-ko.yaml) from the 4-bit base and from the healed
#   base, seeds 1-3 each. Then the teacher: the six runs' mean score labels the round-4 recipe's
#   training pairs (research/configs/me5-small-ko-r4.yaml: + paraphrase positives and lexical
#   negation) and 5,000 re-paired sentences (python -m training.distill, weight 0.5), and its figures.
# STAGE student (call 2): needs SOFT (the teacher's labels from call 1) and STUDENT_BASE (the 4-bit
#   base or, by default, the healed one): three students (STUDENT_CONFIG, by default
#   research/configs/me5-small-ko-r4-student.yaml; its soft_label_file is where SOFT goes), seeds 1-3. The one with the highest selection score (validation only) comes back (send_back): its json
#   files and its float16 weights in 14 MB parts. STUDENT_NAME, STUDENT_ARGS and SEEDS name the runs, add arguments to
#   each and choose their seeds (block 6: canonical order with the order-consistency term); TRAIN_ONLY=1, then STAGE
#   student-finish in the next call, split it as for the teachers. SOUP=1 (block 9): the greedy soup of the runs
#   (python -m research.soup --greedy: averaged weights, each run kept only if validation does not fall) is sent back.
#   INIT_SEED (block 10) gives every run that seed (head initialisation, dropout); SEEDS then sets the data order only.
# STAGE study (call 3): the round-4 recipe from the healed base (seeds 1-3) beside its Optuna study
#   (training/configs/search/me5-small-ko-r4.yaml, WORKERS processes), resumed from STUDY_DB if given.
# STAGE variants (block 2): the shipped default's recipe in full (6-epoch schedule, stopped after 5), seeds 1-3,
#   from INIT (the 4-bit base unless given; `healed` heals or unpacks HEALED_PACKED), for each of VARIANTS:
#   current (as shipped), mp0 / mp1 (+ the hand-written training triples,
#   data/contrast/ko_minimal_pairs_train.jsonl, with margin weight 0 / 1), canonical / mp1-canonical (scored,
#   evaluated and selected once per pair, in canonical order: the shorter sentence first since block 5, the smaller
#   string first before), mp1-r4 (mp1 selected with the round-4
#   weights: + 0.1 x held-out minimal pairs), canonical-oW (canonical, trained with order_consistency_weight W: issue
#   15's one pass per pair). PACK_HEALED=1 heals beside the runs and sends the healed base back
#   packed, for the next call's HEALED_PACKED; SEND_BACK=VARIANT sends back that variant's best run (as `student`).
# STAGE teacher (block 3): training/configs/me5-small-ko-mp.yaml (block 2's mp1 selected with the round-4 weights)
#   from the 4-bit base, SEEDS (1-5); its best run comes back (send_back) and the five together label its
#   training pairs (training.distill, as in `compare`) for the students. TEACHERS="mp mpp" (block 5) trains
#   research/configs/me5-small-ko-mpp.yaml (+ hand-written and generated paraphrase positives) beside it; the last recipe
#   listed is the one sent back and distilled. Then stage student with
#   STUDENT_CONFIG=training/configs/me5-small-ko-mp-student.yaml STUDENT_BASE=$BASE_MODEL.
#   TRAIN_ONLY=1 gives the runs the whole call (block 5: five runs of mpp took 80 s an epoch on a slow machine and
#   were cut at epoch 4 when the reports shared the call); STAGE teacher-finish, the next call on the warm machine
#   with the same TEACHERS and WORK, sends back, distils and reports.
#   SHALLOW_BASE (a base with fewer layers, research/experiments/shrink_base.py) adds three students from it,
#   named shallow-sN: their figures are reported, they are never sent back (issue 15's smaller-model lever).
#
# HEALED_PACKED=FILE.npz skips healing (research/experiments/pack_base.py unpack); PACK_HEALED=1 returns the
# healed base packed (23 MB, int8 per row) in 15 MB parts: `cat healed.npz.part-* > healed.npz` to carry it.
# Every run stops at the last epoch that ends within STOP_SECONDS of the script's start (stop_at).
# Results in OUT_DIR: round4.log, compare.md, results.tar.gz (per-run logs, run.json, metadata.json,
# contrast.json, heal.json, the study's database and report), r4-soft.jsonl.gz, the chosen student.
set -u
out=$1; stage=$2; budget=${3:-480}; t0=$SECONDS; stop=$(( $(date +%s) + budget ))
w=${WORK:-/tmp/r4}; mkdir -p "$w" "$out"
python=${PYTHON:-python3}; device=${DEVICE:-cuda}; base=${BASE_MODEL:?set BASE_MODEL}
log() { echo "[$((SECONDS - t0))s] $*" | tee -a "$out/round4.log"; }
current=training/configs/me5-small-ko.yaml; r4=research/configs/me5-small-ko-r4.yaml
student=research/configs/me5-small-ko-r4-student.yaml; mp=training/configs/me5-small-ko-mp.yaml
mpp=research/configs/me5-small-ko-mpp.yaml
source "$(dirname "$0")/jobs.sh"

# The recipes' generated pairs, at the paths the configs name (deterministic: seed 13; written whole, then renamed,
# so that two scripts started side by side never read a half-written file).
augment() { local file=$1 part=${1%.jsonl}.$$.jsonl; shift
  [ -s "$file" ] || { $python -m training.augment data/klue-sts/klue_sts_train.jsonl "$part" "$@" --seed 13 \
    > "$w/augment-$(basename "$(dirname "$file")").log" 2>&1 && mv "$part" "$file"; } & }
augment outputs/hard-negatives/klue_sts_train.jsonl --per-kind 1000
augment outputs/paraphrases/klue_sts_train.jsonl --kinds paraphrases,negation_lexical --per-kind 1000
augment outputs/paraphrase-positives/klue_sts_train.jsonl --kinds paraphrases --per-kind 1000
wait
log "augment: $(wc -l < outputs/hard-negatives/klue_sts_train.jsonl) hard negatives, $(wc -l < outputs/paraphrases/klue_sts_train.jsonl) paraphrase pairs, $(wc -l < outputs/paraphrase-positives/klue_sts_train.jsonl) paraphrase positives"

heal() {  # HEALED_PACKED: a packed healed base (pack_base.py) instead of healing; PACK_HEALED=1 sends it back
  [ -s "$w/healed/heal.json" ] && return
  if [ -n "${HEALED_PACKED:-}" ]; then
    $python "$(dirname "$0")/pack_base.py" unpack "$HEALED_PACKED" "$w/healed" > /dev/null || exit 1
    log "healed base unpacked from $HEALED_PACKED"; return
  fi
  $python -m training.heal --config $r4 --model_name_or_path "$base" --output_dir "$w/healed" ${HEAL_ARGS:-} \
    > "$w/heal.log" 2>&1 || { tail -30 "$w/heal.log"; exit 1; }
  log "healed: $(tr -d '\n ' < "$w/healed/heal.json" | grep -o '"before".*')"
  if [ "${PACK_HEALED:-0}" = 1 ]; then  # files come back at 16 MiB at most: parts, joined with cat
    $python "$(dirname "$0")/pack_base.py" pack "$w/healed" "$w/healed.npz" > /dev/null && split -b 15m "$w/healed.npz" "$out/healed.npz.part-"
  fi
}

run() { local name=$1 seed=$2 init=$3 config=$4; shift 4
  OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false $python -m training.train --config "$config" \
    --model_name_or_path "$init" --output_dir "$w/$name-s$seed" --seed "${INIT_SEED:-$seed}" --data_seed "$seed" --stop_at "$stop" \
    --disable_tqdm true --save_dtype float32 --save_to_store false --export_onnx false ${EXTRA:-} "$@" \
    > "$w/$name-s$seed.log" 2>&1 & }

collect() {  # the small files of every run, the study, the reports and the logs, in one archive
  (cd "$w" && tar cf "$w/results.tar" --ignore-failed-read *.log healed/heal.json */run.json */model/metadata.json \
    */model/contrast.json teacher.json tune/*/study.db tune/*/report.md tune/*/trials.csv tune/*/best.yaml 2>/dev/null)
  tar rf "$w/results.tar" -C "$out" compare.md round4.log && gzip -c "$w/results.tar" > "$out/results.tar.gz"
}

send_back() {  # PACKAGE...: the one with the highest selection score (validation only) comes back: its json files
  # (choice.tar.gz) and its weights in float16, in parts under 14 MB (the device returns files of at most 16 MiB);
  # NO_SEND_BACK=1 names it only (a call returns at most 8 files)
  best=$($python - "$@" <<'PY'
import json, sys
scores = {p: json.load(open(p + "/metadata.json")).get("selection", {}).get("score") or 0 for p in sys.argv[1:]}
print(max(scores, key=scores.get))
PY
)
  log "choice (highest selection score): $best"
  [ "${NO_SEND_BACK:-0}" = 1 ] && return
  (cd "$best" && tar czf "$out/choice.tar.gz" *.json report) && $python - "$best" "$out" <<'PY'
import sys
import torch
from safetensors.torch import load_file, save_file
weights = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(sys.argv[1] + "/model.safetensors").items()}
names, part, size, parts = sorted(weights), {}, 0, []
for name in names:
    part[name] = weights[name]; size += weights[name].numel() * 2
    if size > 14e6: parts.append(part); part, size = {}, 0
parts.append(part) if part else None
for i, p in enumerate(parts):
    save_file(p, f"{sys.argv[2]}/model-{i:02d}.safetensors")
PY
}

selection_scores() {  # every run's selection score (validation only), into round4.log
  for m in "$w"/*-s[0-9]*/model/metadata.json; do
    [ -f "$m" ] && log "$(basename "$(dirname "$(dirname "$m")")") selection $($python -c 'import json, sys; print(round(json.load(open(sys.argv[1]))["selection"]["score"], 4))' "$m")"
  done; }

start_mps "$python"; log "CUDA MPS: $mps"
if [ "$stage" = compare ]; then
  heal
  for seed in 1 2 3; do
    run current-base $seed "$base" $current
    run current-healed $seed "$w/healed" $current
  done
  wait; log "runs done"
  teachers=$(ls -d "$w"/current-*-s[0-9] | tr '\n' ' ')
  $python -m training.distill --teachers $teachers --recipe $r4 --repair 5000 --weight 0.5 --device "$device" \
    --output "$w/r4-soft.jsonl" --report "$w/teacher.json" \
    --report-files data/klue-sts/klue_sts_dev.jsonl data/korsts/korsts_dev.jsonl > "$w/distill.log" 2>&1 &
elif [ "$stage" = teacher ] || [ "$stage" = teacher-finish ]; then
  for recipe in ${TEACHERS:-mp}; do  # side by side; the last one listed is sent back and labels the students' pairs
    case $recipe in mp) config=$mp;; mpp) config=$mpp;; *) echo "unknown teacher recipe $recipe: mp or mpp"; exit 2;; esac
    [ "$stage" = teacher ] && for seed in ${SEEDS:-1 2 3 4 5}; do run "$recipe" $seed "$base" $config; done
  done
  if [ "$stage" = teacher ]; then
    wait; log "runs done"
    # TRAIN_ONLY=1: the whole call for the runs; stage teacher-finish (same TEACHERS, next call, warm WORK) does the rest
    [ "${TRAIN_ONLY:-0}" = 1 ] && { selection_scores; exit 0; }
  fi
  send_back "$w/$recipe"-s*/model
  $python -m training.distill --teachers "$w/$recipe"-s[0-9] --recipe $config --repair 5000 --weight 0.5 --device "$device" \
    --output "$w/r4-soft.jsonl" --report "$w/teacher.json" \
    --report-files data/klue-sts/klue_sts_dev.jsonl data/korsts/korsts_dev.jsonl > "$w/distill.log" 2>&1 &
elif [ "$stage" = student ] || [ "$stage" = student-finish ]; then
  # STUDENT_NAME (default student) names the runs (seeds SEEDS, default 1-3), STUDENT_ARGS are added to each (block 6: issue 15's canonical order
  # trained with the order-consistency term); TRAIN_ONLY and student-finish split the stage as for the teachers
  name=${STUDENT_NAME:-student}
  if [ "$stage" = student ]; then
    soft=${SOFT:?set SOFT to the teacher labels}; config=${STUDENT_CONFIG:-$student}; init=${STUDENT_BASE:-$w/healed}
    [ "$init" = "$w/healed" ] && heal
    labels=$(sed -n 's/^soft_label_file: *//p' "$config")
    mkdir -p "$(dirname "$labels")" && gzip -dc "$soft" > "$labels"
    # shellcheck disable=SC2086  # STUDENT_ARGS is a list of arguments
    for seed in ${SEEDS:-1 2 3}; do run "$name" $seed "$init" "$config" ${STUDENT_ARGS:-}; done
    # SHALLOW_BASE (shrink_base.py: every other layer): the same students beside them, reported, never sent back
    [ -n "${SHALLOW_BASE:-}" ] && for seed in 1 2 3; do run shallow $seed "$SHALLOW_BASE" "$config"; done
    wait; log "runs done"
    [ "${TRAIN_ONLY:-0}" = 1 ] && { selection_scores; exit 0; }
  fi
  if [ "${SOUP:-0}" = 1 ]; then  # blocks 9-10: the greedy soup of the runs (research.soup --greedy), sent back
    $python -m research.soup --greedy --device "$device" "$w/$name-soup" "$w/$name"-s[0-9]*/model \
      > "$w/$name-soup.log" 2>&1 || { tail -30 "$w/$name-soup.log"; exit 1; }
    log "soup: $(grep -h "greedy soup +\|soup of" "$w/$name-soup.log" | cut -c1-150 | tr '\n' ';')"
    send_back "$w/$name-soup"
  else
    send_back "$w/$name"-s*/model
  fi
elif [ "$stage" = study ]; then
  # STUDY_CONFIG (default the round-4 recipe, beside three runs of it) from STUDY_INIT (default the healed base)
  config=${STUDY_CONFIG:-$r4}; init=${STUDY_INIT:-$w/healed}; name=$(basename "$config" .yaml)
  [ "$init" = "$w/healed" ] && heal
  study=$w/tune/$name; mkdir -p "$study"
  [ -n "${STUDY_DB:-}" ] && [ ! -s "$study/study.db" ] && cp "$STUDY_DB" "$study/study.db"
  sed "s#^model_name_or_path: .*#model_name_or_path: $init#" "$config" > "$w/$name.yaml"
  [ "$config" = $r4 ] && for seed in 1 2 3; do run r4 $seed "$init" $r4; done
  # its --timeout prunes running trials only when they report an epoch: a hard stop GRACE s (default 30) later, so that the reports run
  timeout -s TERM "$((stop - $(date +%s) + ${GRACE:-30}))" $python -m training.tune --config "$w/$name.yaml" \
    --space training/configs/search/me5-small-ko-r4.yaml --output-dir "$w/tune" --workers "${WORKERS:-10}" \
    --n-trials 200 --timeout "$((stop - $(date +%s)))" > "$w/tune.log" 2>&1 || tail -5 "$w/tune.log"
  $python -m training.tune --config "$w/$name.yaml" --space training/configs/search/me5-small-ko-r4.yaml \
    --output-dir "$w/tune" --report-only >> "$w/tune.log" 2>&1
  wait; log "runs done"
  log "study: $(grep -c . "$study/trials.csv" 2>/dev/null) lines in trials.csv"
elif [ "$stage" = variants ]; then
  init=${INIT:-$base}
  if [ "$init" = healed ]; then heal; init=$w/healed; elif [ "${PACK_HEALED:-0}" = 1 ]; then heal & fi
  triples="--minimal_pair_train_file data/contrast/ko_minimal_pairs_train.jsonl --minimal_pair_margin_weight"
  for variant in ${VARIANTS:-current mp0 mp1 canonical}; do
    case $variant in
      current) args=;; mp0) args="$triples 0";; mp1) args="$triples 1";; canonical) args="--symmetry canonical";;
      mp1-canonical) args="$triples 1 --symmetry canonical";;
      mp1-r4) args="$triples 1 --contrast_validation_weight 0.1";;  # selected as the round-4 recipe is
      # canonical-oW: canonical, both orders of a pair in one batch and their squared difference x W added to the loss
      # (order_consistency_weight); 16 pairs a batch, so that a step still takes 32 rows
      canonical-o*) args="--symmetry canonical --order_consistency_weight ${variant#canonical-o} --per_device_train_batch_size 16";;
      *) echo "unknown variant $variant: current, mp0, mp1, canonical, canonical-oW, mp1-canonical or mp1-r4"; exit 2;;
    esac
    for seed in ${SEEDS:-1 2 3}; do run "$variant" $seed "$init" $current $args; done
  done
  wait; log "runs done"
  [ -n "${SEND_BACK:-}" ] && send_back "$w/$SEND_BACK"-s*/model
else
  echo "unknown stage $stage: compare, student, student-finish, study, variants, teacher or teacher-finish"; exit 2
fi
packages=$(ls -d "$w"/*/model/metadata.json 2>/dev/null | xargs -r -n1 dirname | tr '\n' ' ')
: > "$out/compare.md"  # empty when the stage trained no package (a study alone)
[ -n "$packages" ] && $python -m training.compare $packages --sources validation dev > "$out/compare.md" 2>> "$w/reports.log" &
for p in $packages; do
  $python -m training.contrast "$p" --backend torch --device "$device" --json > "$p/contrast.json" 2>> "$w/reports.log" &
done
wait; log "reports done"
[ -s "$w/r4-soft.jsonl" ] && gzip -c "$w/r4-soft.jsonl" > "$out/r4-soft.jsonl.gz"
collect; log "collected: $(du -h "$out/results.tar.gz" | cut -f1)"
cat "$out/compare.md"; rm "$out/compare.md" "$out/round4.log"  # both are in the archive: few files come back
