#!/usr/bin/env bash
# Runs a loopback Kubernetes control plane (etcd + kube-apiserver, optionally
# kube-controller-manager; no kubelet, so Pods stay Pending) for demos and
# scripts, using test/controlplane/cmd/cpstart and the binaries of hack/tools.sh.
#
#   hack/demo-cluster.sh [options]                  run until Ctrl-C, print KUBECONFIG
#   hack/demo-cluster.sh [options] -- CMD [ARGS]    run CMD against it, stop, exit with CMD's status
#
# Options:
#   --controller-manager   also run kube-controller-manager (Deployments get Pods,
#                          namespaces get their default ServiceAccount)
#   --log-dir DIR          keep the component logs in DIR
#
# CMD runs with KUBECONFIG set to an admin kubeconfig and the tools folder
# (kubectl, helm, ...) first on PATH, e.g.
#   hack/demo-cluster.sh -- kubectl get namespaces
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)

cpstart_args=()
while (($#)); do
  case $1 in
    --controller-manager) cpstart_args+=(--controller-manager); shift ;;
    --log-dir) cpstart_args+=(--log-dir "$(mkdir -p "$2" && cd "$2" && pwd)"); shift 2 ;;
    --) shift; break ;;
    -h | --help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "demo-cluster: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

bindir=$("$root/hack/tools.sh") # builds what is missing; prints the folder
cpstart=$root/.cache/cpstart/cpstart
(cd "$root" && go build -o "$cpstart" ./test/controlplane/cmd/cpstart)

work=$(mktemp -d "${TMPDIR:-/tmp}/portreeve-demo.XXXXXX")
kubeconfig_out=$work/kubeconfig-path
pid=

stop() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  pid=
  rm -rf "$work"
}
trap stop EXIT
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM

"$cpstart" --bin-dir "$bindir" --kubeconfig-out "$kubeconfig_out" "${cpstart_args[@]}" >"$work/cpstart.out" &
pid=$!

# Wait for the kubeconfig path (cpstart writes it once the apiserver is ready).
while [[ ! -s $kubeconfig_out ]]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" && status=0 || status=$?
    pid=
    echo "demo-cluster: control plane failed to start (exit $status)" >&2
    exit 1
  fi
  sleep 0.2
done
KUBECONFIG=$(<"$kubeconfig_out")
export KUBECONFIG
export PATH="$bindir:$PATH"

if (($#)); then
  status=0
  "$@" || status=$?
  exit "$status" # the EXIT trap stops the control plane
fi

echo "KUBECONFIG=$KUBECONFIG"
cat >&2 <<EOF
demo-cluster: control plane ready. In another shell:
  export KUBECONFIG=$KUBECONFIG PATH=$bindir:\$PATH
  kubectl get namespaces
Press Ctrl-C to stop it.
EOF
status=0
wait "$pid" || status=$?
pid=
echo "demo-cluster: control plane exited (status $status)" >&2
exit "$status"
