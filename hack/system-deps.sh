#!/usr/bin/env bash
# Install the system programs the demo and the tests run (kubectl; OpenSSH's sshd for the SFTP
# backend's server; git and lighttpd for the github backend's git smart-HTTP server; Node.js and
# npm for the Node servers under operator/pinsync/devenv/node; for the real node
# (operator/pinsync/devenv/realnode.py): containerd, runc, the CNI plugins, iptables, buildah (the
# image without a Docker Engine), debootstrap (a stand-in for the public base image) and gcc (the
# static pause binary)) when they are missing. A no-op on a machine that has them; on one without,
# it needs apt-get and root, and otherwise says what to install.
set -euo pipefail
need=()
command -v kubectl >/dev/null || need+=(kubectl)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v git >/dev/null || need+=(git)
command -v lighttpd >/dev/null || [ -x /usr/sbin/lighttpd ] || need+=(lighttpd)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || need+=(iptables)
command -v buildah >/dev/null || need+=(buildah)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
command -v gcc >/dev/null && [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(gcc libc6-dev)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null || [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: please install: ${need[*]}" >&2
  exit 1
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# The tests start their own servers on free ports: keep the packages' system services (lighttpd
# on port 80) from being started by the install (Debian's policy-rc.d convention).
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
fi
trap '[ -n "$made_policy" ] && rm -f "$policy"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
