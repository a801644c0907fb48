#!/usr/bin/env bash
# Builds the control-plane tools the tests and the demo need, from Go modules,
# into a cache folder keyed by version. Idempotent: a warm run only checks files.
#
#   hack/tools.sh            build what is missing, print the bin folder
#   hack/tools.sh bindir     print the bin folder only
#   hack/tools.sh node       also build the node binaries (kubelet, kube-scheduler,
#                            kube-proxy) the in-cluster tests need (make test-node)
#
# Versions live here and in the tools modules under hack/tools/.
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
HELM_VERSION=v3.22.0
# The Gateway API standard CRDs the e2e tests apply (test/e2e/gateway_test.go),
# read from this version of the Go module sigs.k8s.io/gateway-api.
GATEWAY_API_VERSION=v1.6.3
# cert-manager's controllers and cainjector are programs of this project
# (hack/tools/certmanager) that import cert-manager's library module; its
# version is pinned in that module's go.mod.

root=$(cd "$(dirname "$0")/.." && pwd)
# Outside the clone by default, so a fresh clone (CI) reuses the binaries.
cache=${PORTREEVE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portreeve/tools}
bindir=$cache/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION/bin

if [[ ${1:-} == bindir ]]; then
  echo "$bindir"
  exit 0
fi
mkdir -p "$bindir"

log() { printf 'tools: %s\n' "$*" >&2; }

k8s_ldflags() {
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local f=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    f+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "-s -w$f"
}

build() { # name dir pkg ldflags
  local name=$1 dir=$2 pkg=$3 ldflags=$4
  if [[ -x $bindir/$name ]]; then
    return 0
  fi
  log "building $name (cold builds take minutes)"
  local start=$SECONDS
  (cd "$root/hack/tools/$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$bindir/$name.tmp" "$pkg")
  mv "$bindir/$name.tmp" "$bindir/$name"
  log "built $name in $((SECONDS - start))s"
}

k8s_tools=${PORTREEVE_K8S_TOOLS:-kube-apiserver kubectl kube-controller-manager}
if [[ ${1:-} == node ]]; then
  k8s_tools+=" kubelet kube-scheduler kube-proxy"
fi
for t in $k8s_tools; do
  build "$t" kubernetes "k8s.io/kubernetes/cmd/$t" "$(k8s_ldflags)"
done
build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"
build helm helm helm.sh/helm/v3/cmd/helm "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"

# The cert-manager programs are the project's own source: rebuild them when
# their module (go.mod, go.sum, *.go) changes, not only when they are missing.
certmanager_stamp() {
  (cd "$root/hack/tools/certmanager" && find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort |
    xargs sha256sum | sha256sum | cut -d' ' -f1)
}
stamp=$bindir/.cert-manager.stamp
want=$(certmanager_stamp)
crds=$bindir/cert-manager-crds.yaml
if [[ $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
  rm -f "$bindir/cert-manager-controller" "$bindir/cert-manager-cainjector" "$crds"
fi
build cert-manager-controller certmanager ./controller "-s -w"
build cert-manager-cainjector certmanager ./cainjector "-s -w"
if [[ ! -f $crds ]]; then
  # cert-manager's CRDs, from the very module version the programs import.
  moddir=$(cd "$root/hack/tools/certmanager" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)
  for f in "$moddir"/deploy/crds/*.yaml; do printf -- '---\n'; cat "$f"; done >"$crds.tmp"
  mv "$crds.tmp" "$crds"
  log "wrote $(basename "$crds")"
fi
echo "$want" >"$stamp"

gateway_crds=$bindir/gateway-api-$GATEWAY_API_VERSION-crds.yaml
if [[ ! -f $gateway_crds ]]; then
  # From the module proxy, as the other tools' modules: no main-module requirement.
  moddir=$(cd / && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  for f in "$moddir"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do printf -- '---\n'; cat "$f"; done >"$gateway_crds.tmp"
  mv "$gateway_crds.tmp" "$gateway_crds"
  log "wrote $(basename "$gateway_crds")"
fi

echo "$bindir"
