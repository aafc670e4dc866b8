#!/usr/bin/env bash
# Build a container image for the real node with buildah (no Docker Engine, no registry) into a
# docker-archive under the cache, keyed by its inputs, and print the archive's path; its image
# name is in $cache/images/<archive>.name.
#   hack/build-image.sh base      Debian bookworm (debootstrap minbase) + python3 + pip: a local
#                                 stand-in for the public python:3.11-slim, which needs a registry
#   hack/build-image.sh pause     the Pod sandbox image: Kubernetes' pause binary (build-tool.sh)
#   hack/build-image.sh coredns   cluster DNS: the CoreDNS binary (build-tool.sh)
#   hack/build-image.sh operator  the project's Dockerfile, built FROM the stand-in base
# Reuses a cached archive when its inputs are unchanged. On failure prints the log tail.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# shellcheck source=versions.env
source "$here/versions.env"
cache=${PINSYNC_CACHE:-$HOME/.cache/pinsync}
what=${1:?usage: build-image.sh <base|pause|coredns|operator>}
# Bookworm's python3 is 3.11, the public base's minor version.
suite=bookworm
mirror=${PINSYNC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
base_packages=python3,python3-pip

hash_of() { sha256sum | cut -c1-12; }
case "$what" in
  base) key=$(printf '%s\n' "$suite" "$mirror" "$base_packages" | hash_of)
    name=pinsync.local/python:3.11-$suite-$key ;;
  pause) key=$KUBERNETES_VERSION; name=pinsync.local/pause:$KUBERNETES_VERSION ;;
  coredns) key=$COREDNS_VERSION; name=pinsync.local/coredns:$COREDNS_VERSION ;;
  operator)
    base_archive=$("$0" base)
    # What the Dockerfile copies, less pinsync.devenv (deleted in the image), plus the base.
    key=$( (cd "$root" && cat Dockerfile pyproject.toml README.md "$base_archive.name" &&
      find operator -path operator/pinsync/devenv -prune -o -name __pycache__ -prune -o \
        -type f -not -name '*.pyc' -print | LC_ALL=C sort | xargs sha256sum) | hash_of)
    name=pinsync.local/pinsync:dev-$key ;;
  *) echo "unknown image: $what" >&2; exit 2 ;;
esac

out="$cache/images/$what-$key.tar"
if [ -f "$out" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache/images" "$cache/logs"
log="$cache/logs/image-$what-$key.log"
work=$(mktemp -d "$cache/build-image-$what.XXXXXX")
# buildah's storage is a cache of its own (layers reused by warm builds); vfs needs no mounts
# that an interrupted build could leave behind.
bh=(buildah --root "$cache/containers/storage" --runroot "$work/run" --storage-driver vfs)
cleanup() {
  # debootstrap mounts /proc and /sys in the target; an interrupted run leaves them mounted.
  grep -o " $work/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
start=$(date +%s)

# An image of one static binary from build-tool.sh, run as a non-root user.
one_binary() {  # $1 = tool
  local ctr
  ctr=$("${bh[@]}" from scratch)
  "${bh[@]}" copy --chmod 0755 "$ctr" "$("$here/build-tool.sh" "$1")" "/$1"
  "${bh[@]}" config --entrypoint "[\"/$1\"]" --user 65532:65532 "$ctr"
  "${bh[@]}" commit --rm "$ctr" "$name"
}

build() {
  local ctr
  case "$what" in
    base)
      debootstrap --variant=minbase --include="$base_packages" "$suite" "$work/rootfs" "$mirror"
      # pip installs into the system Python, as in the public image.
      rm -f "$work"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED
      rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/* \
        "$work"/rootfs/var/log/* "$work"/rootfs/debootstrap
      tar --sort=name --mtime=@0 --numeric-owner -C "$work/rootfs" -cf "$work/rootfs.tar" .
      rm -rf "$work/rootfs"
      ctr=$("${bh[@]}" from scratch)
      "${bh[@]}" add "$ctr" "$work/rootfs.tar" /
      "${bh[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd python3 "$ctr"
      "${bh[@]}" commit --rm "$ctr" "$name" ;;
    pause|coredns) one_binary "$what" ;;
    operator)
      # Load the base into this storage under its name (a no-op when it is there already).
      "${bh[@]}" pull --quiet "docker-archive:$base_archive" >/dev/null
      # pip in the build trusts what this host trusts (a TLS-intercepting proxy's CA, say);
      # mounted for the RUN steps only, so the image does not keep it.
      local trust=()
      [ -f /etc/ssl/certs/ca-certificates.crt ] &&
        trust=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
      "${bh[@]}" bud --pull=never --network host --isolation chroot --layers "${trust[@]}" \
        --build-arg "BASE=$(cat "$base_archive.name")" -t "$name" -f "$root/Dockerfile" "$root" ;;
  esac
  "${bh[@]}" push --quiet "$name" "docker-archive:$work/image.tar:$name"
}

echo "building image $what $key (log: $log)" >&2
if ! build >"$log" 2>&1; then
  echo "FAILED to build image $what ($name); last lines of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
mv "$work/image.tar" "$out"
echo "$name" >"$out.name"
# Each source change makes a new operator image (~550 MB archived, as much again in buildah's
# storage): keep the newest only, or the cache grows by a gigabyte per commit until the disk
# fills (kubelet then evicts Pods for disk pressure).
if [ "$what" = operator ]; then
  for old in "$cache"/images/operator-*.tar; do
    [ "$old" = "$out" ] && continue
    [ -f "$old.name" ] && "${bh[@]}" rmi --force "$(cat "$old.name")" >/dev/null 2>&1 || true
    rm -f "$old" "$old.name"
  done
  "${bh[@]}" rmi --prune >/dev/null 2>&1 || true
fi
echo "image $what $name built in $(($(date +%s) - start))s, $(du -h "$out" | cut -f1)" |
  tee -a "$cache/build-times.txt" >&2
echo "$out"
