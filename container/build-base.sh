#!/usr/bin/env bash
# Builds a local Debian bookworm + Python 3.11 base image without any container registry:
# debootstrap --variant=minbase, then `podman import`. About 3 minutes (mostly the download).
#
#   container/build-base.sh [IMAGE]      # default localhost/ko-sts-base:bookworm-py3.11
#
# The image is what the public python:3.11-slim image gives BentoML's generated Dockerfile: a
# Python whose `pip install` works. Debian's /usr/bin/python3 refuses pip installs into the
# system (PEP 668, "externally-managed-environment"), so the base puts a virtual environment,
# /opt/python, first on PATH; BentoML installs uv into it and builds the app's own venv
# (/app/.venv) from Debian's python3.11. Nothing is installed into Debian's Python, and
# PIP_BREAK_SYSTEM_PACKAGES is not needed.
#
# Settings (environment): DEBIAN_MIRROR (default http://deb.debian.org/debian; a
# snapshot.debian.org URL makes the base reproducible), DEBIAN_SUITE
# (bookworm: its python3.11 is the project's Python), CA_BUNDLE: a PEM bundle that replaces the
# image's trust store (default: this host's /etc/ssl/certs/ca-certificates.crt, so builds behind
# a TLS-inspecting proxy reach PyPI; set CA_BUNDLE= to keep Debian's own), OCI_RUNTIME and
# RUN_ULIMITS for the final smoke run (as in scripts/check-image.sh).
set -euo pipefail

IMAGE=${1:-localhost/ko-sts-base:bookworm-py3.11}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${DEBIAN_SUITE:-bookworm}
CA_BUNDLE=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
RUN_ULIMITS=${RUN_ULIMITS-nofile=1024:1024 nproc=1024:1024}
# passwd: BentoML's Dockerfile runs useradd. python3-distutils: python3.11-venv depends on it
# through a virtual package, which debootstrap does not resolve.
PACKAGES=python3.11,python3.11-venv,python3-distutils,ca-certificates,passwd

[ "$(id -u)" = 0 ] || { echo "$0: debootstrap needs root" >&2; exit 1; }
for tool in debootstrap podman; do
    command -v "$tool" >/dev/null || { echo "$0: $tool not found: apt-get install $tool" >&2; exit 1; }
done

rootfs=$(mktemp -d /var/tmp/ko-sts-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.out" 2>&1; then
    tail -20 "$rootfs.out" >&2
    tail -40 "$rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    rm -f "$rootfs.out"
    echo "$0: debootstrap failed" >&2
    exit 1
fi
rm -f "$rootfs.out"

# Keep later apt installs in derived images small, as Debian's own container images do.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/excludes" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
rm -rf "$rootfs"/usr/share/{man,info,locale}/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log

if [ -n "$CA_BUNDLE" ]; then
    cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi

# The usable Python: a venv on PATH (pip works in it; Debian's system Python stays untouched).
chroot "$rootfs" /usr/bin/python3.11 -m venv /opt/python
rm -rf "$rootfs"/root/.cache
find "$rootfs/opt/python" -name __pycache__ -prune -exec rm -rf {} +

tar --numeric-owner -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase $SUITE + python3.11 venv at /opt/python" \
    --quiet - "$IMAGE" >/dev/null

ulimits=()
for limit in $RUN_ULIMITS; do ulimits+=(--ulimit "$limit"); done
podman ${OCI_RUNTIME:+--runtime "$OCI_RUNTIME"} run --rm --network none "${ulimits[@]}" "$IMAGE" python3 -c \
    'import sys, ssl; assert sys.version_info[:2] == (3, 11), sys.version; print(sys.prefix, sys.version.split()[0])'
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE"
