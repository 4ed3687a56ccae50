#!/usr/bin/env bash
# The main job, on a fresh machine: bring up the embedded local cluster on 127.0.0.1, install the
# ModelApp CRD, run the operator, apply the examples and show them reconciled.
#   hack/demo.sh          run it (leaves the cluster and the operator running; see the last lines)
#   hack/demo.sh down     stop the operator and the cluster
set -euo pipefail
cd "$(dirname "$0")/.."
state=${MODELAPP_DEMO_DIR:-$HOME/.local/state/modelapp/demo}
mkdir -p "$state"

if [ "${1:-}" = "down" ]; then
  if [ -f "$state/operator.pid" ]; then kill "$(cat "$state/operator.pid")" 2>/dev/null || true; rm -f "$state/operator.pid"; fi
  .venv/bin/modelapp cluster down
  exit 0
fi

hack/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate

modelapp cluster up
KUBECONFIG=$(modelapp cluster kubeconfig)
export KUBECONFIG

kubectl apply --server-side -f crds/
kubectl wait --for=condition=Established crd/modelapps.modelapp.io --timeout=60s
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f -

if [ -f "$state/operator.pid" ] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
  echo "operator already running (pid $(cat "$state/operator.pid"))"
else
  nohup modelapp run --namespace demo --standalone >"$state/operator.log" 2>&1 &
  echo $! >"$state/operator.pid"
  echo "operator started (pid $!, log $state/operator.log)"
fi

kubectl -n demo apply -f examples/iris.yaml
echo "waiting for the ModelApp to become Ready…"
kubectl -n demo wait --for=condition=Ready modelapp/iris --timeout=180s
kubectl -n demo get modelapps
kubectl -n demo get deployments,services,pods -l app.kubernetes.io/managed-by=modelapp-operator
cat <<MSG

The cluster and the operator keep running:
  export KUBECONFIG=$KUBECONFIG
  kubectl -n demo get modelapps
  hack/demo.sh down      # stop everything
MSG
