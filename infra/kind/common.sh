# shellcheck shell=bash
# Sourced by up.sh, install-kfp.sh, run.sh and down.sh: names, the pinned KFP version, and checks.
# Only bash builtins run before a script's `require`, so a missing tool gets its own clear message.

# The one place the Kubeflow Pipelines version is pinned (override: KFP_VERSION=x.y.z make kind-up).
KFP_VERSION="${KFP_VERSION:-2.14.3}"

CLUSTER_NAME="${KIND_CLUSTER_NAME:-propensity}"
KFP_NAMESPACE="kubeflow"
KFP_PORT="${KFP_PORT:-8080}"
KFP_WAIT_TIMEOUT="${KFP_WAIT_TIMEOUT:-900s}"
PIPELINE_IMAGE="${PIPELINE_IMAGE:-propensity-pipeline:local}"

KIND_DIR="${KIND_DIR:?KIND_DIR must be set by the sourcing script}"
REPO_ROOT="$(cd "$KIND_DIR/../.." && pwd)"
PY="${PY:-$REPO_ROOT/.venv/bin/python}"
STATE_DIR="$REPO_ROOT/.propensity/kind"
PF_PID_FILE="$STATE_DIR/port-forward.pid"
PF_LOG="$STATE_DIR/port-forward.log"

# The shared volume: host folder -> kind node (cluster.yaml) -> PersistentVolume (shared-volume.yaml)
# -> mounted by the pipeline pods that read data or the registry.
SHARED_DIR="$STATE_DIR/shared"
SHARED_PVC="propensity-shared"
SHARED_MOUNT="/mnt/propensity"

die() {
  echo "error: $*" >&2
  exit 1
}

hint_for() {
  case "$1" in
    kind) echo "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)" ;;
    kubectl) echo "install kubectl (https://kubernetes.io/docs/tasks/tools/)" ;;
    docker) echo "install Docker (Docker Desktop, or Docker Engine on Linux)" ;;
    git) echo "install git (kubectl apply -k fetches the KFP manifests from GitHub with it)" ;;
    curl) echo "install curl" ;;
    *) echo "install it" ;;
  esac
}

# require TOOL...: stop with a clear message naming the first missing tool.
require() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found: $(hint_for "$tool")"
  done
}

require_docker_engine() {
  docker info >/dev/null 2>&1 || die "docker is installed but no Docker engine answers: start Docker (Desktop or the docker service)"
}

cluster_exists() {
  local clusters
  clusters="$(kind get clusters 2>/dev/null)" || return 1
  grep -qx -- "$CLUSTER_NAME" <<<"$clusters"
}

kctl() {
  kubectl --context "kind-${CLUSTER_NAME}" "$@"
}

kfp_healthy() {
  curl --silent --fail --max-time 5 "http://localhost:${KFP_PORT}/apis/v2beta1/healthz" >/dev/null 2>&1
}

# Stop the port-forward this project started (by the PID it recorded), never any other process.
stop_port_forward() {
  local pid="" command=""
  [ -f "$PF_PID_FILE" ] || return 0
  read -r pid <"$PF_PID_FILE" || true
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    command="$(ps -p "$pid" -o args=)" || true
    case "$command" in
      *port-forward*) kill "$pid" ;;
      *) echo "not stopping PID $pid: it is no longer the port-forward ($command)" >&2 ;;
    esac
  fi
  rm -f "$PF_PID_FILE"
}

# Port-forward the KFP UI (which also proxies the API the SDK calls) to localhost:KFP_PORT.
start_port_forward() {
  local _
  if kfp_healthy; then
    echo "Kubeflow Pipelines answers on http://localhost:${KFP_PORT}"
    return 0
  fi
  stop_port_forward
  mkdir -p "$STATE_DIR"
  nohup kubectl --context "kind-${CLUSTER_NAME}" -n "$KFP_NAMESPACE" \
    port-forward svc/ml-pipeline-ui "${KFP_PORT}:80" >"$PF_LOG" 2>&1 &
  echo "$!" >"$PF_PID_FILE"
  for _ in $(seq 1 60); do
    if kfp_healthy; then
      echo "Kubeflow Pipelines UI and API: http://localhost:${KFP_PORT} (port-forward PID $(<"$PF_PID_FILE"))"
      return 0
    fi
    sleep 2
  done
  die "the port-forward to svc/ml-pipeline-ui did not answer within 120 s: see $PF_LOG"
}
