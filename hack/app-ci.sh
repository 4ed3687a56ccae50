#!/usr/bin/env bash
# The build half of the recipe, for an app repository (examples/app is one; docs/app-repository.md):
# build the app image on the serving image -> run the app's tests inside it -> optionally bake the
# newest verified model version into a second image -> log in -> push -> print what was pushed.
# Nothing is pushed unless every step before the push passed. CI templates call this one script.
#
#   hack/app-ci.sh [--no-push]        inputs come from the environment (CI variables and secrets):
#
#   APP_DIR            the app repository (default .): a Dockerfile taking build arg SERVING_IMAGE
#   SERVING_IMAGE      the modelapp serving image to build on (pin it: ...serving:0.1.0@sha256:...)
#   IMAGE              where to push, without tag: registry.example.com/team/iris-app
#   TAG                the image tag, e.g. the release version 1.4.2
#   REGISTRY_USERNAME  REGISTRY_PASSWORD   credentials for IMAGE's registry (needed to push)
#   APP_TESTS          the tests folder, mounted into the image (default tests)
#   APP_TEST_COMMAND   run by sh in the image in /opt/app (default: python3 -m unittest discover -s tests -v)
#   APP_SIGNATURES     the model signatures the app accepts, JSON (default APP_DIR/signatures.json when it
#                      exists): written to the image label io.modelapp.signatures, so the bump never pairs
#                      the image with a model version whose signature does not fit (docs/app-repository.md)
#   PIP_INDEX_URL      a private package index for the app's dependencies (else wheels/ only)
#   MODEL_URI          bake a model: azureblob://container/prefix, s3://bucket/prefix
#   MODEL_VERSION      the version to bake (default latest: the newest complete version, as the
#                      operator's `latest` policy orders them)
#   MODEL_SHA256       optional pin of the version digest; the fetch fails closed on a mismatch
#   MODEL_BAKE_DIR     where versions live in the image (default /opt/models/<last segment of MODEL_URI>)
#   BAKED_TAG          the baked image's tag (default TAG-model.VERSION)
#   APP_CI_NETWORK     docker network for the model fetch (default host: the runner's own network)
#   Store credentials, passed by name to the fetch only: AZURE_STORAGE_CONNECTION_STRING,
#   AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_ACCOUNT_URL, AZURE_CLIENT_ID, AZURE_TENANT_ID,
#   AZURE_CLIENT_SECRET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
#   AWS_DEFAULT_REGION, AWS_ENDPOINT_URL.
#
# Standard output is only the result, as key=value lines (append it to $GITHUB_OUTPUT):
#   image=REGISTRY/REPO:TAG@sha256:...            the pushed app image, by digest
#   baked_image=REGISTRY/REPO:BAKED_TAG@sha256:...  when a model was baked
#   model_uri=file:///opt/models/NAME  model_version=V  model_sha256=HEX   (for the ModelApp)
# Progress and every error go to standard error; each error names its step and what to do.
# Secrets never reach a command line or the log: the password goes to `docker login
# --password-stdin`, into a Docker config folder of this run's own (deleted at exit; the runner's
# own config and credential helpers are never written), store credentials to `docker run -e NAME`.
set -euo pipefail

say() { echo "app-ci: $*" >&2; }
fail() { echo "app-ci: error: $*" >&2; exit 1; }

push=true
case "${1:-}" in
  "") ;;
  --no-push) push=false ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
  *) fail "unknown argument '$1' (usage: app-ci.sh [--no-push]; inputs are environment variables, see --help)" ;;
esac

# --- inputs ------------------------------------------------------------------------------------
app_dir=${APP_DIR:-.}
[ -f "$app_dir/Dockerfile" ] || fail "no Dockerfile in APP_DIR=$app_dir: point APP_DIR at the app repository"
[ -n "${SERVING_IMAGE:-}" ] || fail "SERVING_IMAGE is not set: the modelapp serving image to build on (pin it by digest)"
[ -n "${IMAGE:-}" ] || fail "IMAGE is not set: where to push, without tag (registry.example.com/team/app)"
[ -n "${TAG:-}" ] || fail "TAG is not set: the image tag to push (e.g. the release version)"
case "$IMAGE" in
  *@* | */*:* | *[A-Z]*) fail "IMAGE=$IMAGE must be a lower-case repository without tag or digest (the tag goes in TAG)" ;;
esac
registry=""
case "$IMAGE" in */*) registry=${IMAGE%%/*} ;; esac
case "$registry" in
  *.* | *:* | localhost) ;;
  *) fail "IMAGE=$IMAGE must start with its registry host (registry.example.com/team/app): no default registry is assumed" ;;
esac
tag_pattern='^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'
[[ "$TAG" =~ $tag_pattern ]] || fail "TAG=$TAG is not a valid image tag (letters, digits, _ . -; at most 128)"
tests=${APP_TESTS:-tests}
[ -d "$app_dir/$tests" ] || fail "no tests folder $app_dir/$tests: an app image is never pushed untested (set APP_TESTS)"
test_command=${APP_TEST_COMMAND:-python3 -m unittest discover -s tests -v}
if $push; then
  [ -n "${REGISTRY_USERNAME:-}" ] || fail "REGISTRY_USERNAME is not set: the account that pushes to $registry (or run with --no-push)"
  [ -n "${REGISTRY_PASSWORD:-}" ] || fail "REGISTRY_PASSWORD is not set: the password or token for $REGISTRY_USERNAME at $registry"
fi
model_uri=${MODEL_URI:-}
if [ -n "$model_uri" ]; then
  [[ "$model_uri" =~ ^(azureblob|s3)://[A-Za-z0-9._-]+/[A-Za-z0-9._/-]+$ ]] \
    || fail "MODEL_URI=$model_uri must be azureblob://container/prefix or s3://bucket/prefix (the store to bake from)"
  model_name=${model_uri%/}
  model_name=${model_name##*/}
  bake_dir=${MODEL_BAKE_DIR:-/opt/models/$model_name}
  [[ "$bake_dir" =~ ^/[A-Za-z0-9._/-]+$ ]] || fail "MODEL_BAKE_DIR=$bake_dir must be an absolute path of letters, digits and . _ - /"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Login and push use a Docker config of this run's own, so the push credentials never outlive the
# run; build and fetch use the runner's (its earlier logins pull SERVING_IMAGE).
push_config=$work/docker-config
mkdir -m 700 "$push_config"
# Debian's docker.io has no buildx; the Dockerfile needs nothing BuildKit-only.
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
# The legacy builder leaves a failed step's container behind unless told not to (BuildKit leaves none).
cleanup_flags=()
[ "${DOCKER_BUILDKIT:-}" = 0 ] && cleanup_flags+=(--force-rm)

# --- build ---------------------------------------------------------------------------------------
image_ref=$IMAGE:$TAG
say "build: $image_ref on $SERVING_IMAGE"
build_args=(--build-arg SERVING_IMAGE="$SERVING_IMAGE")
[ -n "${PIP_INDEX_URL:-}" ] && build_args+=(--build-arg PIP_INDEX_URL)  # value from the environment
signatures_file=${APP_SIGNATURES:-$app_dir/signatures.json}
if [ -f "$signatures_file" ]; then
  # One line of compact JSON, checked for shape here (the bump checks it again, strictly, and caps it at 16 KiB).
  command -v python3 >/dev/null || fail "signatures: python3 is needed to read $signatures_file"
  signatures_label=$(python3 - "$signatures_file" <<'PY'
import json, sys
try:
    raw = json.load(open(sys.argv[1]))
except ValueError as exc:
    sys.exit(f"not valid JSON: {exc}")
items = raw if isinstance(raw, list) else [raw]
datatypes = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
             "FP64", "BYTES"}
for i, item in enumerate(items):
    for side in ("inputs", "outputs"):
        tensors = item.get(side) if isinstance(item, dict) else None
        if not isinstance(tensors, list):
            sys.exit(f"signature {i}: {side} must be a list of {{name, datatype, shape}}")
        for t in tensors:
            ok = isinstance(t, dict) and isinstance(t.get("name"), str) and t.get("datatype") in datatypes \
                and isinstance(t.get("shape"), list) and all(isinstance(d, int) and d >= -1 for d in t["shape"])
            if not ok:
                sys.exit(f"signature {i}: {side}: {json.dumps(t)[:80]} is not {{name, datatype (FP32, INT64, ...), shape}}")
print(json.dumps(items, separators=(",", ":")))
PY
  ) || fail "signatures: $signatures_file is not a list of {inputs, outputs} signatures (reason above)"
  [ "${#signatures_label}" -le 16384 ] || fail "signatures: $signatures_file is over 16 KiB as one line; list fewer signatures"
  build_args+=(--label "io.modelapp.signatures=$signatures_label")
  say "build: label io.modelapp.signatures from $signatures_file"
elif [ -n "${APP_SIGNATURES:-}" ]; then
  fail "APP_SIGNATURES=$APP_SIGNATURES: no such file"
fi
revision=$(git -C "$app_dir" rev-parse HEAD 2>/dev/null || true)
[ -n "$revision" ] && build_args+=(--label "org.opencontainers.image.revision=$revision")
docker build "${cleanup_flags[@]}" "${build_args[@]}" --tag "$image_ref" "$app_dir" >&2 \
  || fail "build: docker build of $app_dir failed (its output is above): fix the Dockerfile or the app's dependencies"

# --- test ----------------------------------------------------------------------------------------
# The tests run inside the image about to be pushed, as its pod would run it: uid 1000, read-only
# root, /tmp a tmpfs, no network.
say "test: $test_command (in $image_ref)"
docker run --rm --network none --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
  --volume "$(cd "$app_dir/$tests" && pwd):/opt/app/tests:ro" --workdir /opt/app \
  --entrypoint sh "$image_ref" -c "$test_command" >&2 \
  || fail "test: the app's tests failed in $image_ref (output above); nothing was pushed"

# --- bake (optional) -----------------------------------------------------------------------------
store_env=()
for name in AZURE_STORAGE_CONNECTION_STRING AZURE_STORAGE_SAS_TOKEN AZURE_STORAGE_ACCOUNT_URL \
  AZURE_CLIENT_ID AZURE_TENANT_ID AZURE_CLIENT_SECRET AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY \
  AWS_SESSION_TOKEN AWS_REGION AWS_DEFAULT_REGION AWS_ENDPOINT_URL; do
  [ -n "${!name:-}" ] && store_env+=(--env "$name")
done
serving_run=(docker run --rm --network "${APP_CI_NETWORK:-host}" --user "$(id -u):$(id -g)" --read-only
  --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges "${store_env[@]}")

baked_ref=""
if [ -n "$model_uri" ]; then
  version=${MODEL_VERSION:-latest}
  if [ "$version" = latest ]; then
    say "bake: finding the newest complete version under $model_uri"
    version=$("${serving_run[@]}" "$SERVING_IMAGE" versions --uri "$model_uri" --limit 1) \
      || fail "bake: cannot list versions under $model_uri (reason above): check MODEL_URI and the store credentials"
  fi
  [[ "$version" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ ]] || fail "bake: MODEL_VERSION=$version is not a version name"
  pin=()
  [ -n "${MODEL_SHA256:-}" ] && pin=(--sha256 "$MODEL_SHA256")
  baked_tag=${BAKED_TAG:-$TAG-model.$version}
  [[ "$baked_tag" =~ $tag_pattern ]] || fail "bake: BAKED_TAG=$baked_tag is not a valid image tag (set BAKED_TAG)"
  mkdir -p "$work/context/model"
  say "bake: fetching $model_uri version $version (every file checked against its manifest digest)"
  digest=$("${serving_run[@]}" --volume "$work/context/model:/out" "$SERVING_IMAGE" \
    fetch --uri "$model_uri" --version "$version" --dest "/out/$version" "${pin[@]}") \
    || fail "bake: fetch of $model_uri version $version failed (reason above); nothing was pushed"
  cat >"$work/context/Dockerfile" <<EOF
ARG APP_IMAGE
FROM \${APP_IMAGE}
COPY model/ $bake_dir/
LABEL io.modelapp.model.source="$model_uri" io.modelapp.model.uri="file://$bake_dir" \\
      io.modelapp.model.version="$version" io.modelapp.model.sha256="$digest"
EOF
  baked_ref=$IMAGE:$baked_tag
  say "bake: $baked_ref = $image_ref + version $version at $bake_dir"
  docker build "${cleanup_flags[@]}" --build-arg APP_IMAGE="$image_ref" --tag "$baked_ref" "$work/context" >&2 \
    || fail "bake: docker build of the baked image failed (output above)"
  # What the pod's init container will do with a file:// model: fetch it from the image, verified.
  docker run --rm --network none --read-only --tmpfs /tmp "$baked_ref" \
    fetch --uri "file://$bake_dir" --version "$version" --sha256 "$digest" --dest /tmp/check/model >/dev/null \
    || fail "bake: the model in $baked_ref does not verify against digest $digest"
fi

if ! $push; then
  say "built and tested $image_ref${baked_ref:+ and $baked_ref}; not pushed (--no-push)"
  exit 0
fi

# --- push ----------------------------------------------------------------------------------------
say "login: $registry as $REGISTRY_USERNAME"
printf '%s' "$REGISTRY_PASSWORD" | docker --config "$push_config" login --username "$REGISTRY_USERNAME" --password-stdin "$registry" \
  >"$work/login.log" 2>&1 \
  || fail "login: docker login to $registry as $REGISTRY_USERNAME was refused ($(grep -v '^WARNING' "$work/login.log" | tail -n 1)): check REGISTRY_USERNAME and REGISTRY_PASSWORD (a token with push rights); nothing was pushed"

pushed_digest() {  # push $1; print its manifest digest, as the registry computed it
  local out
  out=$(docker --config "$push_config" push "$1" 2>&1) || { echo "$out" >&2; return 1; }
  echo "$out" >&2
  sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p' <<<"$out" | tail -n 1
}
say "push: $image_ref"
if ! image_digest=$(pushed_digest "$image_ref") || [ -z "$image_digest" ]; then
  fail "push: docker push $image_ref failed (output above): may $REGISTRY_USERNAME push to $IMAGE?"
fi
echo "image=$image_ref@$image_digest"
if [ -n "$baked_ref" ]; then
  say "push: $baked_ref"
  if ! baked_digest=$(pushed_digest "$baked_ref") || [ -z "$baked_digest" ]; then
    fail "push: docker push $baked_ref failed (output above); $image_ref was pushed"
  fi
  echo "baked_image=$baked_ref@$baked_digest"
  echo "model_uri=file://$bake_dir"
  echo "model_version=$version"
  echo "model_sha256=$digest"
fi
say "done"
