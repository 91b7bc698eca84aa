#!/usr/bin/env bash
# Install Kubeflow Pipelines standalone (version KFP_VERSION, pinned in common.sh) into the kind
# cluster with the documented kustomize manifests, add the shared volume, wait until every KFP
# deployment is available, and port-forward the UI to localhost:KFP_PORT. Safe to run again.
set -euo pipefail
case "${BASH_SOURCE[0]}" in */*) KIND_DIR="${BASH_SOURCE[0]%/*}" ;; *) KIND_DIR="." ;; esac
KIND_DIR="$(cd "$KIND_DIR" && pwd)"
# shellcheck source=infra/kind/common.sh
source "$KIND_DIR/common.sh"

require kind kubectl git curl grep
cluster_exists || die "no kind cluster '$CLUSTER_NAME': run make kind-up"

echo "installing Kubeflow Pipelines ${KFP_VERSION} (standalone, platform-agnostic) into kind-${CLUSTER_NAME}"
kctl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=${KFP_VERSION}"
kctl wait --for condition=established --timeout=60s crd/applications.app.k8s.io
kctl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=${KFP_VERSION}"
kctl apply -f "$KIND_DIR/shared-volume.yaml"

echo "waiting up to ${KFP_WAIT_TIMEOUT} for the Kubeflow Pipelines deployments (first install: images are pulled)"
kctl -n "$KFP_NAMESPACE" wait --for=condition=Available --timeout="$KFP_WAIT_TIMEOUT" deployment --all

start_port_forward
