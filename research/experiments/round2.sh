#!/usr/bin/env bash
# Round 2 (issue 10) on one GPU in one command, with a hard stop; see round2.py for the phases.
#
#   BASE_MODEL=/path/to/me5-small-ko research/experiments/round2.sh OUT_DIR [HARD_STOP_SECONDS]
#
# Environment: BASE_MODEL (the unpacked encoder; default: the config's model_name_or_path),
# PYTHON (default python3), PROFILE (gpu, or tiny for a CPU dry run with outputs/tiny-electra),
# CONFIG (default research/configs/me5-small-ko-r2.yaml), HARD_NEGATIVES (a pre-generated
# training.augment file; default: generated at the start), USE_MPS (1 = try CUDA MPS, default).
# Everything lands in OUT_DIR; OUT_DIR/summary.md is rewritten after every phase.
set -uo pipefail
started=$(date +%s)
cd "$(dirname "$0")/../.."
out=${1:?usage: round2.sh OUT_DIR [HARD_STOP_SECONDS]}
hard_stop=${2:-540}
python=${PYTHON:-python3}
mkdir -p "$out"
out=$(cd "$out" && pwd)

source research/experiments/jobs.sh
start_mps "$python"
echo "CUDA MPS: $mps" | tee "$out/mps.txt"

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# the driver keeps its own deadline (what is left of HARD_STOP_SECONDS after the MPS probe);
# timeout is the backstop (SIGTERM makes the driver stop every run it started)
left=$((${hard_stop%.*} - ($(date +%s) - started)))
timeout --kill-after=10 "$((left + 10))" "$python" research/experiments/round2.py "$out" \
  --hard-stop "$left" --config "${CONFIG:-research/configs/me5-small-ko-r2.yaml}" \
  --profile "${PROFILE:-gpu}" ${BASE_MODEL:+--base-model "$BASE_MODEL"}
status=$?
echo "exit $status; summary: $out/summary.md"
exit $status
