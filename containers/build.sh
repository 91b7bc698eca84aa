#!/usr/bin/env bash
# `make images`: build propensity-pipeline and propensity-serving from the repository root.
#
# Base image: $BASE_IMAGE when set; else the Dockerfiles' own default (the official Python image) when
# it is present or can be pulled; else a stand-in made from Debian packages (containers/base/standin.sh),
# since these machines reach no container registry. Each image is labelled with the base it was built
# on (org.propensity.base), the script says which, and build/images.json records it with sizes and times.
# Host networking only (no container bridge here), for the build and everything after it.
#
# Usage: containers/build.sh [pipeline] [serving]        (default: both)
#        NO_CACHE=1 containers/build.sh                  a cold build: no layer cache, a new stand-in
set -euo pipefail
cd "$(dirname "$0")/.."

PIPELINE_IMAGE=${PIPELINE_IMAGE:-propensity-pipeline:local}
SERVING_IMAGE=${SERVING_IMAGE:-propensity-serving:local}
STANDIN_IMAGE=${STANDIN_IMAGE:-propensity-base:bookworm-standin}
RECORD=${IMAGES_RECORD:-build/images.json}
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(pipeline serving)

command -v docker >/dev/null || { echo "error: docker not found (make images needs a Docker engine)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "error: no Docker engine answers (start dockerd; see README, Containers)" >&2; exit 1; }

official=$(sed -n 's/^ARG BASE_IMAGE=//p' containers/pipeline/Dockerfile)
if [[ -n "${BASE_IMAGE:-}" ]]; then
  base=$BASE_IMAGE kind=given
elif docker image inspect "$official" >/dev/null 2>&1 || docker pull --quiet "$official" >/dev/null 2>&1; then
  base=$official kind=official
else
  echo "the official base $official cannot be pulled (no registry reachable): using the stand-in $STANDIN_IMAGE"
  standin_start=$(date +%s.%N)
  force=()
  [[ "${NO_CACHE:-0}" == 0 ]] || force=(--force)
  STANDIN_IMAGE=$STANDIN_IMAGE bash containers/base/standin.sh ${force[@]+"${force[@]}"}
  standin_seconds=$(awk -v s="$standin_start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
  base=$STANDIN_IMAGE kind=standin
fi

options=()
[[ -z "${DOCKER_PLATFORM:-}" ]] || options+=(--platform "$DOCKER_PLATFORM")
[[ "${NO_CACHE:-0}" == 0 ]] || options+=(--no-cache)
mkdir -p build "$(dirname "$RECORD")"
entries=()
for target in "${targets[@]}"; do
  case $target in
    pipeline) tag=$PIPELINE_IMAGE ;;
    serving) tag=$SERVING_IMAGE ;;
    *) echo "error: unknown image $target (pipeline, serving)" >&2; exit 2 ;;
  esac
  log=build/image-$target.log
  echo "building $tag on $kind base $base (log: $log) ..."
  start=$(date +%s.%N)
  if ! docker build --network host ${options[@]+"${options[@]}"} --build-arg "BASE_IMAGE=$base" \
      --label "org.propensity.base=$base" --label "org.propensity.base.kind=$kind" \
      --file "containers/$target/Dockerfile" --tag "$tag" . >"$log" 2>&1; then
    tail -25 "$log" >&2
    echo "error: building $tag failed (full log: $log)" >&2
    exit 1
  fi
  seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
  size=$(docker image inspect --format '{{.Size}}' "$tag")
  echo "built $tag on $kind base $base: $(awk -v b="$size" 'BEGIN {printf "%.0f MB", b / 1e6}') in ${seconds} s"
  entries+=("\"$target\": {\"tag\": \"$tag\", \"size_bytes\": $size, \"build_seconds\": $seconds}")
done
joined=$(IFS=,; echo "${entries[*]}")
printf '{"base": "%s", "base_kind": "%s", "standin_seconds": %s, "no_cache": %s, "images": {%s}}\n' \
  "$base" "$kind" "${standin_seconds:-null}" "$([[ "${NO_CACHE:-0}" != 0 ]] && echo true || echo false)" "$joined" >"$RECORD"
