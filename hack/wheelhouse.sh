#!/usr/bin/env bash
# Build a wheelhouse for one image on the host, so that `docker build` installs offline
# (`pip install --no-index --find-links`): inside a build, pip cannot reach the package index
# through this network's TLS-intercepting proxy, while the host's pip is configured for it
# (PIP_CERT / pip.conf).
#
#   hack/wheelhouse.sh operator   -> .work/wheelhouse/operator  (modelapp[operator,stores])
#   hack/wheelhouse.sh serving    -> .work/wheelhouse/serving   (modelapp[serving,sklearn])
#   WHEELHOUSE_REF=HEAD hack/wheelhouse.sh serving
#                                 the project wheel from a commit (git archive) instead of the work
#                                 tree, e.g. to build what was committed while the tree is mid-edit
#   hack/wheelhouse.sh serving docker build -f Dockerfile.serving -t modelapp/serving:dev .
#                                 then run the command (the image build) while no other build may
#                                 rewrite the wheelhouse; its exit code is the script's
#
# Several builds at once in one checkout (engineers, test sessions, CI beside a demo): `docker build`
# sends the whole of .work/wheelhouse/ as its context, so a wheelhouse being rewritten, of either image,
# breaks a build that is reading it (a wheel removed or growing under the context's tar). One lock,
# .work/wheelhouse.lock (flock), orders them: writing the wheels holds it alone, the command holds it
# shared. A build waits while another writes, a write waits while any command runs: in effect builds in
# one checkout take turns (separate checkouts have separate locks and wheelhouses). The switch from alone
# to shared is not atomic (flock(2)): if another build rewrote this wheelhouse in that moment, the wheels
# are built again. Without a command the lock is released on exit: a `docker build` started afterwards
# may meet another build's rewrite, so scripts pass their build as the command.
#
# Versions are pinned to what the development environment (.venv) runs and was tested with: its
# installed versions (`pip list --format=freeze`) are the constraints of both `pip wheel` here and `pip install` in the
# image (it is copied into the wheelhouse as constraints.txt). The wheels are cp311 manylinux wheels,
# which is why the base image must carry CPython 3.11 (Debian bookworm's python3, or
# python:3.11-slim-bookworm). The folder sits inside the build context (see .dockerignore).
set -euo pipefail
cd "$(dirname "$0")/.."

image=${1:?usage: hack/wheelhouse.sh operator|serving [COMMAND [ARG...]]}
shift
case "$image" in
  operator) extras=operator,stores ;;
  serving) extras=serving,sklearn ;;
  *) echo "wheelhouse: unknown image '$image' (operator|serving)" >&2; exit 2 ;;
esac
python=${PYTHON:-.venv/bin/python}
out=.work/wheelhouse/$image

say() { echo "wheelhouse: $*" >&2; }

"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { say "$python is not CPython 3.11; the images' wheels must be cp311"; exit 1; }

mkdir -p "$out"
constraints=$out/constraints.txt
exec 9>.work/wheelhouse.lock
lock() {  # -x: alone (writing the wheels); -s: shared with other readers (an image build)
  flock -n "$1" 9 && return
  say "waiting for another image build in this checkout (.work/wheelhouse.lock)"
  flock "$1" 9
}
# What a build reads: the pins and the project wheel (the other wheels are pinned by the former).
stamp() { { cat "$constraints" "$out"/modelapp-*.whl 2>/dev/null || true; } | sha256sum | cut -d' ' -f1; }

build() {
  # Pins for everything but the project itself (it is built from this tree). The image installs
  # with the same file, so a wheel left over from an older pin is never chosen. `pip list --format=freeze`
  # rather than `pip freeze`: a package installed from a local file would be pinned as `name @ file:///...`,
  # a path that does not exist inside `docker build`; this way it is `name==version` like every other.
  "$python" -m pip list --format=freeze --exclude-editable | grep -viE '^(modelapp|-e |pip==|setuptools==|wheel==)' >"$constraints"

  # The project's own wheel is always rebuilt: the code changes between builds, its version does not.
  rm -f "$out"/modelapp-*.whl
  start=$(date +%s)
  # A fixed timestamp makes the project wheel byte-identical when the code is, so Docker's layer cache
  # skips the install step of an unchanged image.
  say "building wheels for modelapp[$extras] into $out"
  SOURCE_DATE_EPOCH=315532800 "$python" -m pip wheel --quiet --wheel-dir "$out" --constraint "$constraints" \
    --find-links "$out" "${src}[${extras}]"
  say "$(find "$out" -name '*.whl' | wc -l) wheels, $(du -sh "$out" | cut -f1), in $(( $(date +%s) - start ))s"
}

src=.
if [ -n "${WHEELHOUSE_REF:-}" ]; then
  src=$(mktemp -d)
  trap 'rm -rf "$src"' EXIT
  git archive "$WHEELHOUSE_REF" | tar -x -C "$src"
  say "project source: git $WHEELHOUSE_REF ($(git rev-parse --short "$WHEELHOUSE_REF"))"
fi
for _ in 1 2 3; do
  lock -x
  build
  if [ $# -eq 0 ]; then
    echo "$out"
    exit 0
  fi
  built=$(stamp)
  lock -s
  [ "$(stamp)" = "$built" ] && break
  say "another build rewrote $out between the wheels and the command; building them again"
done
[ "$(stamp)" = "$built" ] || { say "$out kept being rewritten by other builds; try again"; exit 1; }
"$@"
