#!/usr/bin/env bash
# Final training on one GPU (issue 3, part 2): each candidate config is trained with several
# data seeds at once, merged by research.soup (the weight average, kept only if it beats every
# seed on validation), and the candidate with the best validation Pearson is copied to
# OUT_DIR/best. Dev and KorSTS dev are reported, never used to choose.
#
#   research/experiments/final.sh OUT_DIR HARD_STOP_SECONDS "SEEDS" CONFIG...
set -uo pipefail
source "$(dirname "$0")/jobs.sh"
out=$1
hard_stop=$2
seeds=$3
shift 3
configs=("$@")
mkdir -p "$out/logs"

for config in "${configs[@]}"; do
  name=$(basename "$config" .yaml)
  for seed in $seeds; do
    python3 -m training.train --config "$config" --data_seed "$seed" --output_dir "$out/$name/seed$seed" \
      --save_to_store false --export_onnx false --save_dtype float16 --disable_tqdm true \
      >"$out/logs/$name-seed$seed.log" 2>&1 &
  done
done
wait_until "$hard_stop"

soups=()
for config in "${configs[@]}"; do
  name=$(basename "$config" .yaml)
  finished=()
  for run in "$out/$name"/seed*/model; do [ -f "$run/metadata.json" ] && finished+=("$run"); done
  if [ ${#finished[@]} -ge 2 ]; then
    python3 -m research.soup "$out/$name/soup" "${finished[@]}" >"$out/logs/$name-soup.log" 2>&1 && soups+=("$out/$name/soup")
  elif [ ${#finished[@]} -eq 1 ]; then
    soups+=("${finished[0]}")
  fi
done
[ ${#soups[@]} -gt 0 ] || { echo "no run finished"; exit 1; }
python3 -m training.compare "${soups[@]}" "$out"/*/seed*/model >"$out/final.md"
best=$(python3 - "${soups[@]}" <<'PY'
import json, sys
print(max(sys.argv[1:], key=lambda p: json.load(open(f"{p}/metadata.json"))["metrics"]["validation"]["pearson"]))
PY
)
echo "best on validation: $best"
rm -rf "$out/best" && cp -r "$best" "$out/best"
