#!/usr/bin/env bash
# Builds a container image of the service: `make image` (cpu) and `make image-gpu` (gpu).
#
#   scripts/build-image.sh cpu|gpu
#
# 1. stores the shipped model (models/default) in a throwaway BentoML store (cpu: ONNX only;
#    gpu: with PyTorch weights rebuilt from the int8 export), unless MODEL_TAG names an entry of
#    your store (BENTOML_HOME) to pack instead;
# 2. `bentoml build` with bentofile.yaml (cpu: ONNX Runtime, no torch) or bentofile-gpu.yaml
#    (gpu: PyTorch with CUDA): the service, that model, the serving requirements;
# 3. `bentoml containerize` with podman or buildah (BENTOML_CONTAINERIZE_BACKEND, default podman).
#
# Environment:
#   IMAGE          image name (default ko-sts:cpu / ko-sts:gpu)
#   BASE_IMAGE     base image (default: the bentofile's public python:3.11-slim, pinned by digest;
#                  without registry access build one with container/build-base.sh and pass
#                  BASE_IMAGE=localhost/ko-sts-base:bookworm-py3.11)
#   MODEL_TAG      store entry to pack, e.g. a model you trained (default: models/default)
#   OCI_RUNTIME    runtime for the build's RUN steps (e.g. runc; default: the engine's own)
#   BUILD_ULIMITS  ulimits for the build's RUN steps (default "nofile=1024:1024 nproc=1024:1024")
#   BENTOML_HOME   your BentoML store, where MODEL_TAG is looked up (default ~/bentoml)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

flavour=${1:-}
case "$flavour" in
    cpu) bentofile=bentofile.yaml ;;
    gpu) bentofile="bentofile-gpu.yaml" ;;
    *) echo "usage: $0 cpu|gpu" >&2; exit 2 ;;
esac
IMAGE=${IMAGE:-ko-sts:$flavour}
BACKEND=${BENTOML_CONTAINERIZE_BACKEND:-podman}
BUILD_ULIMITS=${BUILD_ULIMITS-nofile=1024:1024 nproc=1024:1024}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
BENTOML=$(dirname "$PYTHON")/bentoml

case "$BACKEND" in
    podman | buildah) ;;
    *) echo "$0: BENTOML_CONTAINERIZE_BACKEND=$BACKEND: use podman or buildah (the only engines set up here)" >&2; exit 2 ;;
esac
command -v "$BACKEND" >/dev/null || { echo "$0: $BACKEND not found (apt-get install podman buildah runc)" >&2; exit 1; }

step() { printf '\n== %s\n' "$*"; }
started=$SECONDS

context=$(mktemp -d "${TMPDIR:-/tmp}/ko-sts-image.XXXXXX")
trap 'rm -rf "$context"' EXIT
if [ -z "${MODEL_TAG:-}" ]; then
    # The shipped model, stored afresh in a throwaway store: the CPU image gets it as it ships
    # (ONNX only), the GPU image with PyTorch weights rebuilt from its int8 export. Both store
    # entries have the same tag, so a shared store would give both images whichever came first.
    export BENTOML_HOME=$context/bentoml
    weights=()
    [ "$flavour" = cpu ] && weights=(--no-torch-weights)
    step "storing models/default in a fresh BentoML store ${weights[*]}"
    MODEL_TAG=$("$PYTHON" -m models.store models/default "${weights[@]}" | tail -1)
fi
echo "model: $MODEL_TAG"

step "bentoml build -f $bentofile"
build_log=$(mktemp)
# The service names its model by KO_STS_MODEL_TAG: the bento records exactly that store entry.
if ! KO_STS_MODEL_TAG=$MODEL_TAG "$BENTOML" build -f "$bentofile" --output tag . >"$build_log" 2>&1; then
    cat "$build_log" >&2
    exit 1
fi
bento=$(grep -o '__tag__:[^ ]*' "$build_log" | tail -1 | cut -d: -f2-)
rm -f "$build_log"
[ -n "$bento" ] || { echo "$0: bentoml build printed no tag" >&2; exit 1; }
echo "bento: $bento"

opts=(--opt network=host --opt format=docker)  # docker format: OCI images drop HEALTHCHECK
[ -n "${OCI_RUNTIME:-}" ] && opts+=(--opt "runtime=$OCI_RUNTIME")
for limit in $BUILD_ULIMITS; do opts+=(--opt "ulimit=$limit"); done
[ -n "${BASE_IMAGE:-}" ] && opts+=(--opt "build-arg=BASE_IMAGE=$BASE_IMAGE")

step "bentoml containerize $bento --backend $BACKEND -t $IMAGE (base: ${BASE_IMAGE:-the bentofile default})"
# BentoML 1.4.36+ refuses a dockerfile_template outside the working directory, and containerize
# renders it from a temporary copy of the bento (bentoml/BentoML#5566): run it from there.
mkdir "$context/build"
(cd "$context/build" && TMPDIR=$context/build BUILDAH_FORMAT=docker \
    "$BENTOML" containerize "$bento" --backend "$BACKEND" --image-tag "$IMAGE" "${opts[@]}")

# podman and buildah share the local image store
if command -v podman >/dev/null; then
    size="$(($(podman image inspect --format '{{.Size}}' "$IMAGE") / 1000000)) MB"
else
    size=$(buildah images --format '{{.Size}}' "$IMAGE")
fi
step "built $IMAGE from $bento in $((SECONDS - started)) s: $size"
