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
#
# Versions are pinned to what the development environment (.venv) runs and was tested with: its
# installed versions (`pip list --format=freeze`) are the constraints of both `pip wheel` here and `pip install` in the
# image (it is copied into the wheelhouse as constraints.txt). The wheels are cp311 manylinux wheels,
# which is why the base image must carry CPython 3.11 (Debian bookworm's python3, or
# python:3.11-slim-bookworm). The folder sits inside the build context (see .dockerignore).
set -euo pipefail
cd "$(dirname "$0")/.."

image=${1:?usage: hack/wheelhouse.sh operator|serving}
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
# Pins for everything but the project itself (it is built from this tree). The image installs
# with the same file, so a wheel left over from an older pin is never chosen. `pip list --format=freeze`
# rather than `pip freeze`: a package installed from a local file would be pinned as `name @ file:///...`,
# a path that does not exist inside `docker build`; this way it is `name==version` like every other.
"$python" -m pip list --format=freeze --exclude-editable | grep -viE '^(modelapp|-e |pip==|setuptools==|wheel==)' >"$constraints"

# The project's own wheel is always rebuilt: the code changes between builds, its version does not.
rm -f "$out"/modelapp-*.whl
src=.
if [ -n "${WHEELHOUSE_REF:-}" ]; then
  src=$(mktemp -d)
  trap 'rm -rf "$src"' EXIT
  git archive "$WHEELHOUSE_REF" | tar -x -C "$src"
  say "project source: git $WHEELHOUSE_REF ($(git rev-parse --short "$WHEELHOUSE_REF"))"
fi
start=$(date +%s)
# A fixed timestamp makes the project wheel byte-identical when the code is, so Docker's layer cache
# skips the install step of an unchanged image.
export SOURCE_DATE_EPOCH=315532800
say "building wheels for modelapp[$extras] into $out"
"$python" -m pip wheel --quiet --wheel-dir "$out" --constraint "$constraints" \
  --find-links "$out" "${src}[${extras}]"
say "$(find "$out" -name '*.whl' | wc -l) wheels, $(du -sh "$out" | cut -f1), in $(( $(date +%s) - start ))s"
echo "$out"
