#!/usr/bin/env bash
# A stand-in for the official Python base image, made only from Debian packages.
#
# The Dockerfiles build FROM python:3.11.7-slim-bookworm. Where no container registry is reachable
# (these machines reach only PyPI, Debian and npm), that image cannot be pulled; this script makes a
# Debian bookworm root filesystem with debootstrap (minbase + Debian's python3, python3-venv and
# python-is-python3, so `python -m venv` works as in the official image) and imports it as
# $STANDIN_IMAGE. `make images` then builds the same Dockerfiles with --build-arg BASE_IMAGE=<it>.
#
# TLS: pip inside a build needs the CA bundle this machine trusts (pip config's `cert`; the package
# index is reached through an intercepting proxy here). It is copied into the stand-in only, and pip
# is pointed at it with PIP_CERT; images built on the official base never carry it.
#
# Usage: containers/base/standin.sh [--force]     (needs root, debootstrap and a Docker engine)
set -euo pipefail

STANDIN_IMAGE=${STANDIN_IMAGE:-propensity-base:bookworm-standin}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
CA_IN_IMAGE=/usr/local/share/propensity-standin/ca-certificates.crt

if [[ "${1:-}" != "--force" ]] && docker image inspect "$STANDIN_IMAGE" >/dev/null 2>&1; then
  echo "stand-in base $STANDIN_IMAGE exists (--force rebuilds it)"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap not found (apt-get install debootstrap)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "error: debootstrap needs root" >&2; exit 1; }

# The CA bundle pip is configured with on this machine (pip config's cert, or PIP_CERT), if any.
host_ca=${PIP_CERT:-}
if [[ -z "$host_ca" ]]; then
  host_ca=$(python3 -m pip config list 2>/dev/null | sed -n "s/^[a-z:.]*cert='\(.*\)'$/\1/p" | head -1 || true)
fi

rootfs=$(mktemp -d /var/tmp/propensity-standin.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap $SUITE (minbase + $PACKAGES) from $DEBIAN_MIRROR ..."
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$rootfs.log" 2>&1 \
  || { tail -20 "$rootfs.log" >&2; echo "error: debootstrap failed (log: $rootfs.log)" >&2; exit 1; }
rm -f "$rootfs.log"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*

changes=(--change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]'
  --change "LABEL org.propensity.base=standin org.propensity.base.source=debootstrap-$SUITE-minbase")
if [[ -n "$host_ca" && -f "$host_ca" ]]; then
  install -D -m 0644 "$host_ca" "$rootfs$CA_IN_IMAGE"
  changes+=(--change "ENV PIP_CERT=$CA_IN_IMAGE")
  echo "pip in the stand-in trusts $host_ca (copied to $CA_IN_IMAGE)"
fi
tar --numeric-owner -C "$rootfs" -c . | docker import "${changes[@]}" - "$STANDIN_IMAGE" >/dev/null
echo "stand-in base: $STANDIN_IMAGE ($(docker image inspect --format '{{.Size}}' "$STANDIN_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
