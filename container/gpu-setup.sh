#!/bin/sh
# The GPU image's system packages (bentofile-gpu.yaml's setup_script; BentoML ignores system_packages over a
# custom base image): a C compiler, with which Triton builds the kernel launchers of torch.compile.
set -eu
apt-get update -q
apt-get install -y -q --no-install-recommends gcc libc6-dev
rm -rf /var/lib/apt/lists/*
