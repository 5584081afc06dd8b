#!/usr/bin/env bash
# Runs the CPU image the way production would and checks it end to end (the CI stage's core).
#
#   scripts/check-image.sh [IMAGE]        # default ko-sts:cpu
#
# The container runs with a read-only root filesystem (as deploy/ sets it on Kubernetes), a
# tmpfs /tmp and the KO_STS_* defaults baked into the image. Checks, in order:
#   image:   HEALTHCHECK kept (docker format), numeric non-root USER, ports 3000 and 50051 exposed,
#            torch and transformers not installed
#   run:     /readyz turns 200 (the model is loaded and warmed), /livez 200, the image's
#            HEALTHCHECK passes, the server processes run as non-root, the model directory
#            cannot be written, gRPC health on 50051 answers SERVING, KLUE-STS dev scored over
#            HTTP reaches the model card's Pearson (F1 below it is reported)
#   stop:    SIGTERM (podman stop) during a request: the request is answered, the server exits 0
#            within the grace period
# Any failure prints the container's log and exits non-zero.
#
# Environment: OCI_RUNTIME (e.g. runc), RUN_ULIMITS (default "nofile=1024:1024 nproc=1024:1024"),
# PORT and GRPC_PORT (host ports, default 3000 and 50051), READY_TIMEOUT (s, default 300),
# STOP_GRACE (s, default 30), REQUIRE_GRPC (default 1: fail when nothing serves gRPC health on
# 50051; 0 only reports it, for an image run with KO_STS_GRPC_ENABLED=false).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${1:-ko-sts:cpu}
PORT=${PORT:-3000}
GRPC_PORT=${GRPC_PORT:-50051}
REQUIRE_GRPC=${REQUIRE_GRPC:-1}
READY_TIMEOUT=${READY_TIMEOUT:-300}
STOP_GRACE=${STOP_GRACE:-30}
RUN_ULIMITS=${RUN_ULIMITS-nofile=1024:1024 nproc=1024:1024}
PYTHON=${PYTHON:-.venv/bin/python}
NAME=ko-sts-check-$$
URL=http://127.0.0.1:$PORT

podman=(podman)
[ -n "${OCI_RUNTIME:-}" ] && podman+=(--runtime "$OCI_RUNTIME")
ulimits=()
for limit in $RUN_ULIMITS; do ulimits+=(--ulimit "$limit"); done

fail() {
    echo "FAIL: $*" >&2
    if podman container exists "$NAME" 2>/dev/null; then
        echo "--- container log (last 80 lines)" >&2
        podman logs --tail 80 "$NAME" >&2 || true
    fi
    exit 1
}
cleanup() { podman rm --force --time 0 "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT
check() { printf '  %-58s ok\n' "$*"; }
step_started=$SECONDS
step() { printf '\n== %s\n' "$*"; step_started=$SECONDS; }
took() { echo "  ($((SECONDS - step_started)) s)"; }

step "image $IMAGE"
podman image exists "$IMAGE" || fail "no image $IMAGE: build it with make image"
inspect() { podman image inspect --format "$1" "$IMAGE"; }
[[ "$(inspect '{{json .HealthCheck}}')" == *readyz* ]] || fail "HEALTHCHECK missing (built in OCI format? use --format docker)"
check "HEALTHCHECK asks /readyz"
user=$(inspect '{{.User}}')
[[ "$user" =~ ^[1-9][0-9]*(:[0-9]+)?$ ]] || fail "USER is '$user', not a numeric non-root uid"
check "USER $user (numeric, non-root)"
ports=$(inspect '{{json .Config.ExposedPorts}}')
[[ "$ports" == *'"3000/tcp"'* && "$ports" == *'"50051/tcp"'* ]] || fail "exposed ports are $ports"
check "EXPOSE 3000 (HTTP), 50051 (gRPC)"
"${podman[@]}" run --rm "${ulimits[@]}" --network none --entrypoint python "$IMAGE" -c '
import importlib.util, sys
present = [m for m in ("torch", "transformers") if importlib.util.find_spec(m)]
sys.exit(f"installed: {present}" if present else 0)' || fail "the CPU image carries torch or transformers"
check "torch and transformers not installed"
echo "  size: $(($(inspect '{{.Size}}') / 1000000)) MB"

step "run (read-only root filesystem, port $PORT)"
"${podman[@]}" run --detach --name "$NAME" "${ulimits[@]}" \
    --read-only --tmpfs /tmp --health-interval disable \
    --publish "127.0.0.1:$PORT:3000" --publish "127.0.0.1:$GRPC_PORT:50051" "$IMAGE" >/dev/null \
    || fail "podman run failed"
while true; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz" || true)
    [ "$code" = 200 ] && break
    [ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] || fail "the container exited before it was ready"
    ((SECONDS - step_started < READY_TIMEOUT)) || fail "/readyz not 200 after $READY_TIMEOUT s (last: $code)"
    sleep 1
done
# BentoML logs this once the service's __init__ (model load and warm-up batch) has returned.
podman logs "$NAME" 2>&1 | grep -q "Service KoSTS initialized" || fail "/readyz answered 200 before the service was initialised"
started_log=$(podman logs "$NAME" 2>&1)
if grep -q "openvino_telemetry" <<<"$started_log"; then fail "OpenVINO warns about its telemetry file: the image lacks its consent file"; fi
check "/readyz 200 after $((SECONDS - step_started)) s (model loaded, first batch scored)"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/livez")" = 200 ] || fail "/livez is not 200"
check "/livez 200"
podman healthcheck run "$NAME" >/dev/null || fail "the image's HEALTHCHECK fails on a ready container"
check "HEALTHCHECK passes"
users=$(podman top "$NAME" user | tail -n +2 | sort -u | tr -s ' \n' ' ')
if [ -z "$users" ] || grep -qwE 'root|0' <<<"$users"; then fail "processes run as: $users"; fi
check "every process runs as: $users($(podman top "$NAME" pid | tail -n +2 | wc -l) processes)"
# shellcheck disable=SC2016
if podman exec "$NAME" sh -c 'touch "$BENTO_PATH"/models/*/*/written' 2>/dev/null; then
    fail "the model directory is writable"
fi
check "model directory read-only"
# shellcheck disable=SC2016
unreadable=$(podman exec "$NAME" sh -c 'find "$BENTO_PATH" ! -readable' 2>&1 | head -5)
[ -z "$unreadable" ] || fail "the service user cannot read: $unreadable"
check "the service user can read the whole bento"

grpc_status=0
"$PYTHON" - "$GRPC_PORT" <<'EOF' || grpc_status=$?
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

channel = grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}")
try:
    grpc.channel_ready_future(channel).result(timeout=5)
except grpc.FutureTimeoutError:
    sys.exit(2)
answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
sys.exit(0 if answer.status == health_pb2.HealthCheckResponse.SERVING else 1)
EOF
case "$grpc_status" in
    0) check "gRPC health on 50051: SERVING" ;;
    2) [ "$REQUIRE_GRPC" = 1 ] && fail "nothing serves gRPC on 50051"
       echo "  gRPC health on 50051: nothing listening (REQUIRE_GRPC=0)" ;;
    *) fail "gRPC health check on 50051 failed (status $grpc_status)" ;;
esac

step "KLUE-STS dev over HTTP"
"$PYTHON" scripts/score_dev.py "$URL" || fail "dev scores fall short of the model card"
took

step "SIGTERM (podman stop, grace $STOP_GRACE s) with a request in flight"
work=$(mktemp -d)
"$PYTHON" -c '
import json, sys
rows = [json.loads(line) for line in open("data/klue-sts/klue_sts_dev.jsonl", encoding="utf-8")][:64]
json.dump({"pairs": [{"sentence1": r["sentence1"], "sentence2": r["sentence2"]} for r in rows]}, sys.stdout)' >"$work/body.json"
curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' --data-binary @"$work/body.json" \
    "$URL/score" >"$work/code" &
request=$!
sleep 1
kill -0 "$request" 2>/dev/null && in_flight=yes || in_flight="no (it finished within 1 s)"
podman stop --time "$STOP_GRACE" "$NAME" >/dev/null
stopped_after=$((SECONDS - step_started))
wait "$request" || true
answer=$(cat "$work/code")
rm -rf "$work"
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$answer" = 200 ] || fail "the request in flight at SIGTERM got HTTP $answer, not 200"
check "request in flight at SIGTERM ($in_flight) answered 200"
[ "$code" = 0 ] || fail "exit code $code after SIGTERM (137: killed after the grace period)"
((stopped_after < STOP_GRACE)) || fail "stopping took $stopped_after s, the whole grace period"
podman logs --tail 3 "$NAME" 2>&1 | sed 's/^/  | /'
check "stopped after $stopped_after s, exit code 0"
echo
echo "PASS $IMAGE"
