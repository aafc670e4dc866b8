#!/usr/bin/env bash
# Build one real server or tool from the Go module proxy into the version-keyed cache and print
# its path.
#   hack/build-tool.sh <kube-apiserver|etcd|ipfs|minio|ipfs-cluster-service|helm|kstatus
#                       |servicemonitor-crd|kubelet|kube-controller-manager|kube-scheduler
#                       |kube-proxy|coredns|pause>
# Reuses a cached binary when present. On failure prints the tool, the version and the log tail.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${PINSYNC_CACHE:-$HOME/.cache/pinsync}
tool=${1:?usage: build-tool.sh <tool>}

case "$tool" in
  kube-apiserver|kubelet|kube-controller-manager|kube-scheduler|kube-proxy|pause)
    version=$KUBERNETES_VERSION ;;
  coredns) version=$COREDNS_VERSION ;;
  etcd) version=$ETCD_VERSION ;;
  ipfs) version=$KUBO_VERSION ;;
  minio) version=$MINIO_VERSION ;;
  ipfs-cluster-service) version=$IPFS_CLUSTER_VERSION ;;
  helm) version=$HELM_VERSION ;;
  servicemonitor-crd) version=$PROMETHEUS_OPERATOR_VERSION ;;
  kstatus)
    # Our own program (hack/kstatus): the cache key is the library version plus a hash of the
    # source, so an edit to main.go or go.sum rebuilds it.
    grep -q "sigs.k8s.io/cli-utils $CLI_UTILS_VERSION\$" "$here/kstatus/go.mod" || {
      echo "hack/kstatus/go.mod does not require sigs.k8s.io/cli-utils $CLI_UTILS_VERSION" >&2; exit 2; }
    version="$CLI_UTILS_VERSION-$(cat "$here"/kstatus/go.mod "$here"/kstatus/go.sum "$here"/kstatus/*.go | sha256sum | cut -c1-10)" ;;
  *) echo "unknown tool: $tool" >&2; exit 2 ;;
esac

out="$cache/bin/$tool-$version"
if [ -f "$out" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache/bin" "$cache/logs"
log="$cache/logs/$tool-$version.log"
work=$(mktemp -d "$cache/build-$tool.XXXXXX")
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
start=$(date +%s)

# The proxy answers 403 to @v/list for some modules (kubo, ipfs-cluster), which `go install pkg@v`
# needs for its deprecation check; building the command from a wrapper module avoids that call.
dep_build() {  # $1 = module, $2 = package of the command, $3.. = extra "module version" pins
  printf 'module pinsync.local/%s\ngo 1.24\nrequire %s %s\n' "$tool" "$1" "$version" >"$work/go.mod"
  local pin; for pin in "${@:3}"; do printf 'require %s\n' "$pin" >>"$work/go.mod"; done
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$2" >"$work/tools.go"
  (cd "$work" && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$work/tool.bin" "$2")
}

wrapper_build() {  # $1 = go.mod body, $2 = main.go body, $3 = extra ldflags
  printf '%s\n' "$1" >"$work/go.mod"
  printf '%s\n' "$2" >"$work/main.go"
  (cd "$work" && go mod tidy && go build -trimpath -ldflags "-s -w $3" -o "$work/tool.bin" .)
}

# kubernetes' go.mod replaces its staging modules with ./staging paths, so `go install` fails; a
# wrapper module replaces each with the published k8s.io/<name> v0.<minor>.<patch>.
kube_build() {  # $1 = the cobra command constructor in cmd/$tool/app, $2.. = extra import lines
  local staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
    cloud-provider cluster-bootstrap code-generator component-base component-helpers
    controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation
    endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy
    kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission sample-apiserver"
  local sv="v0.${version#v1.}" replaces="" imports="" m
  for m in $staging; do replaces+="replace k8s.io/$m => k8s.io/$m $sv"$'\n'; done
  for m in "${@:2}"; do imports+=$'\t'"$m"$'\n'; done
  local cv=k8s.io/component-base/version
  wrapper_build "module pinsync.local/$tool
go 1.24
require k8s.io/kubernetes $version
$replaces" "package main

import (
	\"os\"
$imports
	_ \"k8s.io/component-base/logs/json/register\"
	\"k8s.io/component-base/cli\"
	_ \"k8s.io/component-base/metrics/prometheus/clientgo\"
	_ \"k8s.io/component-base/metrics/prometheus/version\"
	\"k8s.io/kubernetes/cmd/$tool/app\"
)

func main() { os.Exit(cli.Run($1)) }" \
    "-X $cv.gitVersion=$version -X $cv.gitMajor=1 -X $cv.gitMinor=$(echo "$version" | cut -d. -f2) -X $cv.gitTreeState=clean -X $cv.buildDate=1970-01-01T00:00:00Z"
}

build() {
  case "$tool" in
    # Kubernetes' own commands, each from upstream's two-line main (cmd/<name>/<name>.go).
    kube-apiserver) kube_build "app.NewAPIServerCommand()" ;;
    kubelet) kube_build "app.NewKubeletCommand(context.Background())" '"context"' ;;
    kube-controller-manager) kube_build "app.NewControllerManagerCommand()" '_ "time/tzdata"' ;;
    kube-scheduler) kube_build "app.NewSchedulerCommand()" ;;
    kube-proxy) kube_build "app.NewProxyCommand()" ;;
    # The Pod sandbox's process: Kubernetes' own pause.c (from the same module), static, so the
    # node needs no registry for its sandbox image.
    pause)
      local dir
      dir=$(cd "$work" && printf 'module pinsync.local/pause\ngo 1.24\n' >go.mod &&
        go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
      gcc -Os -static -Wall -Werror -DVERSION="$version" -o "$work/tool.bin" \
        "$dir/build/pause/linux/pause.c" && strip "$work/tool.bin" ;;
    # Cluster DNS with only the plugins realnode's Corefile uses (upstream's main imports all
    # of them, cloud DNS SDKs included: several times the build). Its go.mod replaces nothing.
    coredns)
      local plugin imports=""
      for plugin in cache errors forward kubernetes loop ready; do
        imports+=$'\t'"_ \"github.com/coredns/coredns/plugin/$plugin\""$'\n'
      done
      wrapper_build "module pinsync.local/coredns
go 1.26
require github.com/coredns/coredns $version" "package main

import (
$imports
	\"github.com/coredns/coredns/coremain\"
)

func main() { coremain.Run() }" "" ;;
    etcd)
      wrapper_build "module pinsync.local/etcd
go 1.24
require go.etcd.io/etcd/server/v3 $version" 'package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }' ""
      ;;
    # kubo v0.39.0 pins cockroachdb/swiss at a commit whose runtime hooks stop at Go 1.25.
    ipfs) dep_build github.com/ipfs/kubo github.com/ipfs/kubo/cmd/ipfs \
      "github.com/cockroachdb/swiss v0.0.0-20251224182025-b0f6560f979b" ;;
    minio) GOBIN="$work/bin" go install -trimpath -ldflags "-s -w" "github.com/minio/minio@$version" && mv "$work/bin/minio" "$work/tool.bin" ;;
    ipfs-cluster-service)
      dep_build github.com/ipfs-cluster/ipfs-cluster github.com/ipfs-cluster/ipfs-cluster/cmd/ipfs-cluster-service ;;
    # helm's go.mod has no replace directives; its version string is a linker variable.
    helm) GOBIN="$work/bin" go install -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
        "helm.sh/helm/v3/cmd/helm@$version" && mv "$work/bin/helm" "$work/tool.bin" ;;
    # Not a program: the Prometheus Operator's ServiceMonitor CRD, read from its Go module, so
    # that the chart's optional ServiceMonitor is checked by a real API server too.
    servicemonitor-crd)
      local dir
      dir=$(cd "$work" && go mod download -json "github.com/prometheus-operator/prometheus-operator@$version" |
        sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
      cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" "$work/tool.bin" ;;
    # go.sum is committed: -mod=readonly builds exactly what was reviewed.
    kstatus) cp "$here"/kstatus/go.mod "$here"/kstatus/go.sum "$here"/kstatus/*.go "$work/" &&
      (cd "$work" && go build -mod=readonly -trimpath -ldflags "-s -w" -o "$work/tool.bin" .) ;;
  esac
}

echo "building $tool $version (log: $log)" >&2
if ! build >"$log" 2>&1; then
  echo "FAILED to build $tool $version; last lines of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
mv "$work/tool.bin" "$out"
end=$(date +%s)
echo "$tool $version built in $((end - start))s, $(du -h "$out" | cut -f1)" | tee -a "$cache/build-times.txt" >&2
echo "$out"
