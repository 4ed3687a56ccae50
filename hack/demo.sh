#!/usr/bin/env bash
# The whole flow on one machine, from nothing to a prediction you can ask for yourself:
#   cluster with a real node -> serving + operator images built and pushed to its registry ->
#   Azurite on the cluster bridge -> the demo model (iris, scikit-learn -> ONNX, made now) published ->
#   the operator installed by its Helm chart -> a ModelApp applied -> Ready -> a `curl` line.
#
#   hack/demo.sh          run it (idempotent: a second run reuses what is up and re-applies)
#   hack/demo.sh down     stop everything it started (the node, the cluster, Azurite)
#   hack/demo.sh --kind [--public-image] [down]
#                         the same steps on a kind cluster (docs/kind.md): the node image built here, or
#                         with --public-image kind's own (pulled from the internet, nothing built)
#
# Needs root (the real node makes a bridge, iptables rules and containers); see docs/quickstart.md.
# Everything listens on 127.0.0.1 or the cluster's own bridge address 10.244.0.1 (with --kind: the
# kind Docker network's gateway), nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
kind=false public_image=false action=up
for arg in "$@"; do
  case $arg in
    --kind) kind=true ;;
    --public-image) public_image=true ;;
    down) action=down ;;
    *) echo "usage: hack/demo.sh [--kind [--public-image]] [down]" >&2; exit 2 ;;
  esac
done
state=${MODELAPP_DEMO_DIR:-$HOME/.local/state/modelapp/demo}
$kind && state=${MODELAPP_DEMO_DIR:-$HOME/.local/state/modelapp/demo-kind}
cluster_dir=$state/cluster
registry=127.0.0.1:5001
bridge_ip=10.244.0.1
kind_name=${MODELAPP_KIND_NAME:-modelapp}
kind_cluster() { .venv/bin/python -m modelapp_devcluster.kind_cluster "$@" --name "$kind_name"; }
azurite_port=${MODELAPP_DEMO_AZURITE_PORT:-10000}
tag=demo
ns=demo
mkdir -p "$state"

step() { printf '\n\033[1m=== %s\033[0m [%s]\n' "$1" "$(date +%H:%M:%S)"; }

azurite_running() { [ -f "$state/azurite.pid" ] && kill -0 "$(cat "$state/azurite.pid")" 2>/dev/null; }

if [ "$action" = down ]; then
  if azurite_running; then kill "$(cat "$state/azurite.pid")"; echo "Azurite stopped"; fi
  rm -f "$state/azurite.pid" "$state/model.sha256"
  if $kind; then
    [ -x .venv/bin/python ] && kind_cluster down
  elif [ -x .venv/bin/modelapp-cluster ]; then .venv/bin/modelapp-cluster down --state-dir "$cluster_dir"; fi
  exit 0
fi
if $kind; then
  [ "$(id -u)" = 0 ] || { echo "hack/demo.sh --kind needs root: it routes the LoadBalancer addresses to the kind node" >&2; exit 1; }
else
  [ "$(id -u)" = 0 ] || { echo "hack/demo.sh needs root: the real node makes a bridge, iptables rules and containers" >&2; exit 1; }
fi

step "1/7 setup: packages, toolchains, Python environment (cached after the first run)"
hack/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate

if $kind; then
  step "2/7 kind cluster $kind_name ($($public_image && echo "kind's public node image" || echo "node image built here"))"
  kind_flags=()
  $public_image && kind_flags+=(--public-image)
  kubeconfig=$(kind_cluster up "${kind_flags[@]}" | tail -1)
  registry=$(kind_cluster registry)
  # Azurite must be reachable from pods: bind it on the kind network's gateway (this host's side).
  bridge_ip=$(docker network inspect kind -f '{{range .IPAM.Config}}{{println .Gateway}}{{end}}' | grep -m1 -E '^[0-9.]+$')
else
  step "2/7 cluster with a real node (containerd, kubelet, kube-proxy; API server on $bridge_ip)"
  modelapp-cluster up --real-node --nodes 0 --state-dir "$cluster_dir" >/dev/null
  kubeconfig=$cluster_dir/kubeconfig
fi

step "3/7 images: serving and operator from the Dockerfiles, pushed to $registry"
base=$(hack/base-image.sh | tail -1)
for kind_of in serving operator; do
  # The build runs under the wheelhouse's lock (another build in this checkout cannot rewrite its wheels).
  PYTHON=$repo/.venv/bin/python DOCKER_BUILDKIT=0 hack/wheelhouse.sh "$kind_of" \
    docker build --quiet --build-arg "BASE_IMAGE=$base" -f "Dockerfile.$kind_of" -t "modelapp/$kind_of:dev" . >/dev/null
  docker tag "modelapp/$kind_of:dev" "$registry/modelapp/$kind_of:$tag"
  docker push --quiet "$registry/modelapp/$kind_of:$tag" >/dev/null
  echo "  $registry/modelapp/$kind_of:$tag"
done
operator_pull=Always
if $kind; then
  # The operator's image goes into the nodes the way kind users do it; the app image stays pulled from
  # the registry (the operator makes serving pods pull it on every start).
  kind_cluster load "$registry/modelapp/operator:$tag"
  echo "  kind load docker-image $registry/modelapp/operator:$tag"
  operator_pull=IfNotPresent
fi

step "4/7 Azurite (the Azure Storage emulator) on $bridge_ip:$azurite_port"
account_key="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # Azurite's public dev key
conn="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$account_key;BlobEndpoint=http://$bridge_ip:$azurite_port/devstoreaccount1;"
if azurite_running; then
  echo "  already running (pid $(cat "$state/azurite.pid"))"
else
  node_cache=${XDG_CACHE_HOME:-$HOME/.cache}/modelapp/node   # where the test fixtures install it too
  azurite=$node_cache/node_modules/.bin/azurite-blob
  [ -x "$azurite" ] || npm install --no-audit --no-fund --prefix "$node_cache" azurite@3.37.0 >/dev/null
  rm -f "$state/model.sha256"  # in-memory storage: a new Azurite has no model yet
  setsid "$azurite" --blobHost "$bridge_ip" --blobPort "$azurite_port" --skipApiVersionCheck --inMemoryPersistence \
    --silent --disableTelemetry >"$state/azurite.log" 2>&1 < /dev/null &
  echo $! >"$state/azurite.pid"
  for _ in $(seq 100); do curl -s -o /dev/null "http://$bridge_ip:$azurite_port/devstoreaccount1?comp=list" && break; sleep 0.2; done
  echo "  started (pid $(cat "$state/azurite.pid"), log $state/azurite.log)"
fi

step "5/7 demo model: iris LogisticRegression -> ONNX, published as version 1 of azureblob://models/iris"
if [ ! -s "$state/model.sha256" ]; then
  export AZURE_STORAGE_CONNECTION_STRING=$conn
  python -P -c 'import os; from azure.storage.blob import BlobServiceClient as B
c = B.from_connection_string(os.environ["AZURE_STORAGE_CONNECTION_STRING"]).get_container_client("models")
c.exists() or c.create_container()'
  # shellcheck disable=SC2046
  modelapp-serving publish --uri azureblob://models/iris --version 1 $(python hack/demo_model.py "$state/model") \
    2>/dev/null | tail -1 >"$state/model.sha256"
  unset AZURE_STORAGE_CONNECTION_STRING
fi
digest=$(cat "$state/model.sha256")
echo "  version 1, digest $digest"

step "6/7 operator: Helm chart into modelapp-system, running from $registry/modelapp/operator:$tag"
helm=$(hack/install-helm.sh | tail -1)
"$helm" upgrade --install ma charts/modelapp --namespace modelapp-system --create-namespace --kubeconfig "$kubeconfig" \
  --set image.repository=$registry/modelapp/operator --set image.tag=$tag --set image.pullPolicy=$operator_pull \
  --set servingImage.repository=$registry/modelapp/serving --set servingImage.tag=$tag --wait --timeout 5m >/dev/null
echo "  operator running"

step "7/7 ModelApp $ns/iris applied; waiting until it is Ready"
python hack/demo_app.py apply --kubeconfig "$kubeconfig" --namespace "$ns" --image "$registry/modelapp/serving:$tag" \
  --uri azureblob://models/iris --version 1 --sha256 "$digest" --connection-string "$conn"
url=$(python hack/demo_app.py wait --kubeconfig "$kubeconfig" --namespace "$ns" --timeout 300)
# kube-proxy adds the rules for a fresh LoadBalancer address within a sync: wait for the first answer.
for _ in $(seq 150); do curl -sf -o /dev/null "$url" && break; sleep 0.2; done

request="curl -s -X POST $url/infer -H 'Content-Type: application/json' -d '{\"inputs\":[{\"name\":\"input\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[5.1,3.5,1.4,0.2]}]}'"
echo
echo "Ready. Ask the model (an iris setosa flower's measurements; label 0 is setosa):"
echo
echo "  $request"
echo
echo "Its answer, just now:"
eval "$request"
echo
cat <<MSG

Also: curl -s ${url%%/v2/*}/version    (which model version answers)
      export KUBECONFIG=$kubeconfig   (kubectl -n $ns get modelapps)
      hack/demo.sh $($kind && echo "--kind ")down              (stop everything)
MSG
