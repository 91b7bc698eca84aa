#!/usr/bin/env bash
# Run the training pipeline on the kind KFP cluster: build the pipeline image and load it into the
# cluster, write the default data to the shared volume, compile the pipeline with that image and the
# shared volume, and submit it to the KFP API. Extra arguments go to `submit`. `make kind-run`.
set -euo pipefail
case "${BASH_SOURCE[0]}" in */*) KIND_DIR="${BASH_SOURCE[0]%/*}" ;; *) KIND_DIR="." ;; esac
KIND_DIR="$(cd "$KIND_DIR" && pwd)"
# shellcheck source=infra/kind/common.sh
source "$KIND_DIR/common.sh"

require kind kubectl docker curl grep
[ -x "$PY" ] || die "$PY not found: run make install first"
require_docker_engine
cluster_exists || die "no kind cluster '$CLUSTER_NAME': run make kind-up first"
compile_help="$("$PY" -m pipelines.cli compile --help)"
case "$compile_help" in
  *--pvc*) ;;
  *) die "this checkout's compile command has no --pvc option, so pods cannot mount the shared volume (see infra/kind/README.md, 'Data and registry on kind')" ;;
esac

cd "$REPO_ROOT"

if [ "${SKIP_BUILD:-0}" != "1" ]; then
  PIPELINE_IMAGE="$PIPELINE_IMAGE" bash containers/build.sh pipeline
fi
kind load docker-image "$PIPELINE_IMAGE" --name "$CLUSTER_NAME"

data_dir="$SHARED_DIR/data/marketing"
if [ ! -d "$data_dir" ]; then
  "$PY" -m pipelines.cli data --out "$data_dir" --parts 4
fi

build_dir="$REPO_ROOT/build/kind"
"$PY" -m pipelines.cli compile --out "$build_dir" --image "$PIPELINE_IMAGE" --pvc "${SHARED_PVC}:${SHARED_MOUNT}"

start_port_forward
"$PY" -m pipelines.cli submit --target kfp \
  --host "http://localhost:${KFP_PORT}" \
  --template "$build_dir/training_pipeline.yaml" \
  --data "$SHARED_MOUNT/data/marketing" \
  --registry "$SHARED_MOUNT/registry" \
  --wait "$@"

echo "registry on the host: $SHARED_DIR/registry"
echo "  $PY -m pipelines.cli registry list --registry $SHARED_DIR/registry"
