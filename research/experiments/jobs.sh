# Sourced by the experiment scripts.

# wait_until SECONDS: wait for this shell's background jobs; those still running SECONDS after
# the script started are stopped (SIGTERM; training.tune then stops its own workers).
wait_until() {
  local deadline=$1
  while [ -n "$(jobs -rp)" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 5; done
  if [ -n "$(jobs -rp)" ]; then
    echo "hard stop at ${SECONDS}s: stopping $(jobs -rp | wc -l) runs"
    kill -TERM $(jobs -rp) 2>/dev/null || true
  fi
  wait
}

# start_mps PYTHON: start a private CUDA MPS daemon, so that the runs' small kernels share the
# GPU's SMs instead of taking turns, and stop it when the script exits. Sets mps=on, or mps=off
# (no daemon, or a probe on the GPU failed: the runs then share the GPU by time slicing).
# USE_MPS=0 skips it.
start_mps() {
  local python=$1
  mps=off
  if [ "${USE_MPS:-1}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null 2>&1; then
    local mps_dir
    mps_dir=$(mktemp -d /tmp/mps.XXXXXX)  # short: the daemon's socket path has a length limit
    export CUDA_MPS_PIPE_DIRECTORY="$mps_dir/pipe" CUDA_MPS_LOG_DIRECTORY="$mps_dir/log"
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if nvidia-cuda-mps-control -d 2>/dev/null \
      && timeout 60 "$python" -c "import torch; torch.ones(1, device='cuda').sum().item()" >/dev/null 2>&1; then
      mps=on
      trap stop_mps EXIT
      trap 'stop_mps; exit 143' TERM INT
    else
      stop_mps
      unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    fi
  fi
}

stop_mps() { echo quit | nvidia-cuda-mps-control >/dev/null 2>&1; }

# soup_recipes WORK RECIPE...: for each recipe with runs WORK/RECIPE-s*/model, their weight soup
# in WORK/RECIPE-soup, made with $python (research.soup keeps the best run when averaging does not help).
soup_recipes() {
  local work=$1 recipe packages; shift
  for recipe in "$@"; do
    packages=$(ls -d "$work/$recipe"-s*/model/ 2>/dev/null | tr '\n' ' ')
    [ -n "$packages" ] && $python -m research.soup "$work/$recipe-soup" $packages > "$work/$recipe-soup.log" 2>&1 &
  done
  wait
}

# report_packages OUT LOG PACKAGE...: with $python, OUT/compare.md (validation and dev side by side, per
# source) and OUT/contrast.md (the contrast set per package, scored on $device); errors to LOG.
report_packages() {
  local out=$1 log=$2 p; shift 2
  $python -m training.compare "$@" --sources validation dev > "$out/compare.md" 2>> "$log" &
  for p in "$@"; do
    ($python -m training.contrast "$p" --backend torch --device "$device" > "$p/contrast.md" 2>> "$log") &
  done
  wait
  : > "$out/contrast.md"
  for p in "$@"; do echo "== $p" >> "$out/contrast.md"; cat "$p/contrast.md" >> "$out/contrast.md"; done
}
