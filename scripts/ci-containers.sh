#!/usr/bin/env bash
# CI stage "containers" (.ci/run, after the tests): build the CPU image and run it end to end.
#
#   scripts/ci-containers.sh            # as root, on Debian, after make install
#
# 1. installs podman, buildah, runc and debootstrap from Debian's packages (if missing);
# 2. builds the local Debian + Python 3.11 base image (no container registry is needed);
# 3. builds ko-sts:cpu with models/default (scripts/build-image.sh);
# 4. runs and checks it (scripts/check-image.sh): readiness, KLUE-STS dev Pearson against the
#    model card, non-root, read-only, no torch, graceful SIGTERM.
# Prints each step's duration; any failure stops the stage with a non-zero status.
# The GPU image is not built here (it needs a few GB of CUDA wheels and no GPU can run it):
# make image-gpu builds it.
set -euo pipefail
cd "$(dirname "$0")/.."

export OCI_RUNTIME=${OCI_RUNTIME:-runc}  # crun fails on some hosts' cgroups; runc works everywhere here
BASE_IMAGE=${BASE_IMAGE:-localhost/ko-sts-base:bookworm-py3.11}
IMAGE=${IMAGE:-ko-sts:cpu}
timings=()
started=$SECONDS

run_step() {  # run_step NAME COMMAND...
    local name=$1 t0=$SECONDS
    shift
    printf '\n######## %s\n' "$name"
    if ! "$@"; then
        printf '\n######## FAILED: %s (after %d s)\n' "$name" $((SECONDS - t0)) >&2
        exit 1
    fi
    timings+=("$(printf '%-42s %4d s' "$name" $((SECONDS - t0)))")
}

install_tools() {
    local missing=()
    for tool in podman buildah runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    [ ${#missing[@]} -eq 0 ] && { echo "already installed: podman buildah runc debootstrap"; return; }
    [ "$(id -u)" = 0 ] || { echo "installing ${missing[*]} needs root" >&2; return 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc debootstrap >/dev/null
    podman --version
}

run_step "install podman, buildah, runc" install_tools
run_step "base image (debootstrap)" container/build-base.sh "$BASE_IMAGE"
run_step "CPU image (bentoml build+containerize)" env BASE_IMAGE="$BASE_IMAGE" IMAGE="$IMAGE" scripts/build-image.sh cpu
run_step "run and check the CPU image" scripts/check-image.sh "$IMAGE"

printf '\n######## containers stage passed in %d s\n' $((SECONDS - started))
printf '  %s\n' "${timings[@]}"
