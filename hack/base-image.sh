#!/usr/bin/env bash
# Make the base image for Dockerfile.operator and Dockerfile.serving locally, because no public
# registry can be reached here: debootstrap a minimal Debian bookworm with python3 + python3-venv
# (CPython 3.11, so the host's cp311 wheels from hack/wheelhouse.sh install as they are), then
# `docker import` it. Cached twice: the image (skip everything if it exists) and the rootfs
# tarball outside the repo (re-import without debootstrap after `docker system prune`).
#
#   hack/base-image.sh                  -> prints the image name (modelapp/base:bookworm)
#   BASE_IMAGE=name:tag DEBIAN_MIRROR=http://... hack/base-image.sh
#
# Use it as: docker build --build-arg BASE_IMAGE=modelapp/base:bookworm -f Dockerfile.serving .
set -euo pipefail

BASE_IMAGE=${BASE_IMAGE:-modelapp/base:bookworm}
SUITE=bookworm
# The mirror apt uses on this machine (deb822 or one-line sources), else Debian's CDN.
mirror_from_apt() {
  grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v -- '-security' | grep -oE 'https?://[^ ]+/debian/?' | head -1
}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-$(mirror_from_apt || true)}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-${DEBIAN_MIRROR%/debian*}/debian-security}
# Bump when the recipe below changes, so that caches made by an older recipe are not reused.
RECIPE=1
cache=${MODELAPP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelapp}/base-image
tarball=$cache/$SUITE-r$RECIPE.tar

say() { echo "base-image: $*" >&2; }

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
   && [ "$(docker image inspect -f '{{index .Config.Labels "io.modelapp.base.recipe"}}' "$BASE_IMAGE")" = "$RECIPE" ]; then
  say "$BASE_IMAGE exists"
  echo "$BASE_IMAGE"
  exit 0
fi

if [ ! -s "$tarball" ]; then
  [ "$(id -u)" = 0 ] || { say "debootstrap needs root"; exit 1; }
  command -v debootstrap >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap >/dev/null; }
  mkdir -p "$cache"
  root=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  start=$(date +%s)
  say "debootstrap $SUITE from $DEBIAN_MIRROR (a few minutes)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$root" "$DEBIAN_MIRROR" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }

  say "applying $SUITE-security and $SUITE-updates"
  cat >"$root/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR $SUITE main
deb $DEBIAN_MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    'apt-get update -qq && apt-get upgrade -y -qq && apt-get clean' >>"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }

  # Slim it: nothing below is needed at run time, and apt lists go stale anyway.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* \
         "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
         "$root"/usr/share/locale/* "$root"/tmp/* "$root"/root/.cache
  : >"$root/etc/resolv.conf"
  tar --numeric-owner -C "$root" -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  say "rootfs ready in $(( $(date +%s) - start ))s: $tarball ($(du -h "$tarball" | cut -f1))"
fi

docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL io.modelapp.base.recipe=$RECIPE io.modelapp.base.suite=$SUITE" \
  --change 'CMD ["python3"]' \
  "$tarball" "$BASE_IMAGE" >/dev/null
say "imported $BASE_IMAGE ($(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | numfmt --to=iec))"
echo "$BASE_IMAGE"
