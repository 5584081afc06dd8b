#!/usr/bin/env bash
# Regenerates the locked requirement sets from requirements/*.in: `make lock`.
#
#   dev.txt      training, export, tests, benchmarks (what `make install` puts in .venv)
#   gpu.txt      GPU serving: serving (less OpenVINO) + torch (CUDA wheels from PyPI) + transformers
#   serving.txt  CPU serving on OpenVINO or ONNX Runtime: no torch, no transformers
#
# Resolved by `uv pip compile` for CPython 3.11 on x86_64 Linux (manylinux_2_28) against PyPI,
# whatever machine runs it. dev.txt is resolved first; gpu.txt and serving.txt are constrained
# by it, so a package has one version in every set. dev.txt leaves out the CUDA libraries that
# PyPI's torch wheel pulls (torch pins them exactly itself): on a CPU machine pip installs a CPU
# torch wheel where one is on its find-links, and no CUDA libraries.
set -euo pipefail
cd "$(dirname "$0")/.."

UV=${UV:-uv}
command -v "$UV" >/dev/null || { echo "uv not found: run make install (dev.txt has it) or set UV=/path/to/uv" >&2; exit 1; }
CUDA_ONLY=(cuda-bindings cuda-pathfinder cuda-toolkit triton
    nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
    nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-nccl-cu13
    nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx)

compile() {  # compile IN OUT [extra uv args]
    local in=$1 out=$2
    shift 2
    "$UV" pip compile "$in" --output-file "$out" --quiet \
        --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
        --index-url https://pypi.org/simple --native-tls \
        --annotation-style line --custom-compile-command "make lock" "$@"
}

no_emit=()
for package in "${CUDA_ONLY[@]}"; do no_emit+=(--no-emit-package "$package"); done
compile requirements/dev.in requirements/dev.txt "${no_emit[@]}"
# OpenVINO is the CPU runtime: the GPU set (and the GPU machine's carried wheels) leave it out
compile requirements/gpu.in requirements/gpu.txt --constraint requirements/dev.txt \
    --no-emit-package openvino --no-emit-package openvino-telemetry
compile requirements/serving.in requirements/serving.txt --constraint requirements/dev.txt

# The CPU serving set must stay free of PyTorch and transformers.
if grep -E -i '^(torch|transformers|triton|nvidia-cu)' requirements/serving.txt; then
    echo "requirements/serving.txt pulls the packages above; the ONNX serving image must not" >&2
    exit 1
fi
wc -l requirements/*.txt
