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
