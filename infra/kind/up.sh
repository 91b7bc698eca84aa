#!/usr/bin/env bash
# Create the kind cluster (if missing) with the shared host folder mounted, then install Kubeflow
# Pipelines standalone into it, wait for it and port-forward its UI. Idempotent. `make kind-up`.
set -euo pipefail
case "${BASH_SOURCE[0]}" in */*) KIND_DIR="${BASH_SOURCE[0]%/*}" ;; *) KIND_DIR="." ;; esac
KIND_DIR="$(cd "$KIND_DIR" && pwd)"
# shellcheck source=infra/kind/common.sh
source "$KIND_DIR/common.sh"

require kind kubectl docker git curl sed grep
require_docker_engine

mkdir -p "$SHARED_DIR"
# The pipeline pods run as uid 10001 (containers/pipeline/Dockerfile) and write the registry here.
chmod 1777 "$SHARED_DIR"

if cluster_exists; then
  echo "kind cluster '$CLUSTER_NAME' exists: reusing it"
else
  echo "creating kind cluster '$CLUSTER_NAME' (shared folder: $SHARED_DIR)"
  node_image=()
  if [ -n "${KIND_NODE_IMAGE:-}" ]; then node_image=(--image "$KIND_NODE_IMAGE"); fi
  sed "s#__PROPENSITY_SHARED_DIR__#${SHARED_DIR}#" "$KIND_DIR/cluster.yaml" |
    kind create cluster --name "$CLUSTER_NAME" --config - --wait 180s ${node_image[@]+"${node_image[@]}"}
fi

bash "$KIND_DIR/install-kfp.sh"
