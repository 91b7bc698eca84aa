#!/usr/bin/env bash
# Stop the port-forward this project started and delete the kind cluster. The shared folder (data and
# the registry the runs wrote) is kept. `make kind-down`.
set -euo pipefail
case "${BASH_SOURCE[0]}" in */*) KIND_DIR="${BASH_SOURCE[0]%/*}" ;; *) KIND_DIR="." ;; esac
KIND_DIR="$(cd "$KIND_DIR" && pwd)"
# shellcheck source=infra/kind/common.sh
source "$KIND_DIR/common.sh"

require kind ps grep

stop_port_forward
if cluster_exists; then
  kind delete cluster --name "$CLUSTER_NAME"
else
  echo "no kind cluster '$CLUSTER_NAME'"
fi
if [ -d "$SHARED_DIR" ]; then
  echo "kept $SHARED_DIR (data and registry); files the pods wrote belong to uid 10001: sudo rm -rf it to remove"
fi
