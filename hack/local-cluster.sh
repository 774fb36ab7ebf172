#!/usr/bin/env bash
# Brings up a local three-member etcd cluster with full TLS on loopback, entirely through
# kubeadm-etcd's phases, the way three control-plane nodes would:
#   node1: `kubeadm-etcd init` (certificates, first-member manifest), started from it;
#   node2, node3: one after the other, `kubeadm-etcd join` (certificates from the shared
#          CA, join-learner, promote), each started from the manifest join-learner wrote;
#   then `phase etcd status` and `phase etcd check-health`.
# Every member is a real etcd process started from the manifest we rendered, by
# hack/kubelet-standin.rs (a stand-in for the kubelet: it starts the member when etcd.yaml
# appears and runs the probes the manifest declares; see phases/tests/common/kubelet.rs
# for what it does and the one thing it changes).
#
# Usage:
#   hack/local-cluster.sh [--keep] [--etcd-version V]   bring it up (default: etcd 3.6.14,
#                                                        what kubeadm 1.34-1.36 deploy)
#   hack/local-cluster.sh --stop                        stop members left by --keep
# V is any etcd of the test matrix: 3.4.23, 3.5.30, 3.6.14, 3.7.1 (also 3.5.1, 3.5.16);
# hack/install-deps.sh installs them all.
#
# By default the members are stopped when the script ends, so a run leaves nothing behind
# (and is safe in CI). With --keep they stay up and the script prints how to reach and
# stop them. Everything lives in _output/local-cluster/ (git-ignored): per node its
# kubeadm configuration, certificates, data, manifest and etcd log.
#
# Addresses: 127.250.0.11-13 with kubeadm's standard ports 2379/2380 (and metrics on
# 2381); test id 250 is reserved for this script in phases/tests/common/mod.rs, so it can
# run while the tests do. Every wait is bounded; on failure the members are stopped and
# the end of each log is shown.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${repo_root}/_output/local-cluster"
ips=(127.250.0.11 127.250.0.12 127.250.0.13)
keep=false
stop_only=false
etcd_version=3.6.14

while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=true ;;
    --stop) stop_only=true ;;
    --etcd-version|--etcd) etcd_version="${2:?$1 needs a version, e.g. 3.7.1}"; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "==> $*" >&2; }

# Stops the members: SIGTERM to the kubelet stand-ins whose PIDs this script recorded
# (each kills its member), and only if the PID still belongs to a process started for
# this work directory (a recycled PID is left alone).
stop_members() {
  local pidfile pid
  for pidfile in "${work}"/node*/etcd.pid; do
    [ -f "${pidfile}" ] || continue
    pid="$(cat "${pidfile}")"
    if [ -r "/proc/${pid}/cmdline" ] && tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -q -- "${work}/"; then
      kill "${pid}" 2>/dev/null || true
      for _ in $(seq 50); do
        [ -e "/proc/${pid}" ] || break
        sleep 0.1
      done
      kill -9 "${pid}" 2>/dev/null || true
    fi
    rm -f "${pidfile}"
  done
}

if ${stop_only}; then
  stop_members
  log "stopped the local cluster's members (data kept in ${work})"
  exit 0
fi

case "${etcd_version}" in
  3.4.23) etcd_bin=/usr/bin/etcd ;;
  3.5.1|3.5.16|3.5.30|3.6.14|3.7.1) etcd_bin="${repo_root}/_output/etcd-${etcd_version}/etcd" ;;
  *) echo "--etcd-version takes 3.4.23, 3.5.30, 3.6.14 or 3.7.1 (or 3.5.1, 3.5.16), not ${etcd_version}" >&2; exit 2 ;;
esac
image_tag="${etcd_version}-0"
# A kubeadm release that renders what this etcd serves: 1.30 probes /health (etcd before
# 3.5.11 has no /livez or /readyz), 1.33 deploys 3.5, 1.36 deploys 3.6, 1.37 deploys 3.7.
case "${etcd_version}" in
  3.4.*|3.5.1) kubernetes_version=v1.30.4 ;;
  3.5.*) kubernetes_version=v1.33.4 ;;
  3.6.*) kubernetes_version=v1.36.2 ;;
  *) kubernetes_version=v1.37.1 ;;
esac

log "installing dependencies (hack/install-deps.sh)"
"${repo_root}/hack/install-deps.sh" >&2
etcd_says="$("${etcd_bin}" --version 2>/dev/null || true)"
if ! grep -q "Version: ${etcd_version}\$" <<<"${etcd_says}"; then
  echo "etcd ${etcd_version} is not installed at ${etcd_bin} (hack/install-deps.sh said why above)" >&2
  exit 1
fi
log "etcd ${etcd_version} (${etcd_bin})"

log "building kubeadm-etcd and the kubelet stand-in"
(cd "${repo_root}" && cargo build --quiet --bin kubeadm-etcd --example kubelet-standin)
kubeadm_etcd="${repo_root}/target/debug/kubeadm-etcd"
standin="${repo_root}/target/debug/examples/kubelet-standin"

# A previous --keep run may still be up: stop it before reusing the addresses.
if [ -d "${work}" ]; then
  stop_members
  rm -rf "${work}"
fi
mkdir -p "${work}"

succeeded=false
on_exit() {
  local status=$?
  if ! ${succeeded}; then
    log "failed (exit ${status}); the end of each member's log:"
    for f in "${work}"/node*/etcd.log; do
      [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
    done
  fi
  if ! ${succeeded} || ! ${keep}; then
    stop_members
  fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# One kubeadm configuration per node; the same ClusterConfiguration shape everywhere but
# each node with its own certificate and data directories (they share this machine).
write_config() {
  local n="$1" kind="$2" ip="$3" dir="${work}/node$1"
  mkdir -p "${dir}"
  {
    echo "apiVersion: kubeadm.k8s.io/v1beta4"
    echo "kind: ${kind}"
    echo "nodeRegistration:"
    echo "  name: node${n}"
    if [ "${kind}" = InitConfiguration ]; then
      echo "localAPIEndpoint:"
      echo "  advertiseAddress: ${ip}"
    else
      echo "controlPlane:"
      echo "  localAPIEndpoint:"
      echo "    advertiseAddress: ${ip}"
    fi
    echo "timeouts:"
    echo "  etcdAPICall: 1m0s"
    echo "---"
    echo "apiVersion: kubeadm.k8s.io/v1beta4"
    echo "kind: ClusterConfiguration"
    echo "kubernetesVersion: ${kubernetes_version}"
    echo "certificatesDir: ${dir}/pki"
    echo "etcd:"
    echo "  local:"
    echo "    dataDir: ${dir}/data"
    echo "    imageTag: ${image_tag}"
  } >"${dir}/kubeadm.yaml"
}

# The kubelet stand-in for node N, in the background: it waits (bounded) for the manifest,
# then runs the member until it gets SIGTERM (stop_members), and kills it then.
start_kubelet() {
  local n="$1" dir="${work}/node$1"
  "${standin}" --manifest "${dir}/manifests/etcd.yaml" --etcd-bin "${etcd_bin}" --wait 120 \
    >>"${dir}/etcd.log" 2>&1 </dev/null &
  echo $! >"${dir}/etcd.pid"
}

node_flags() {
  local dir="${work}/node$1"
  echo --config "${dir}/kubeadm.yaml" --manifest-dir "${dir}/manifests" --backup-dir "${dir}/tmp"
}

wait_healthy() {
  local n="$1" dir="${work}/node$1"
  for _ in $(seq 60); do
    if "${kubeadm_etcd}" phase etcd check-health --endpoints "https://${ips[0]}:2379" --cert-dir "${dir}/pki" >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$(cat "${dir}/etcd.pid")" 2>/dev/null; then
      log "node${n}'s etcd exited"
      return 1
    fi
    sleep 0.5
  done
  log "node${n} did not become healthy within 30s"
  return 1
}

log "node1 (${ips[0]}): kubeadm-etcd init"
write_config 1 InitConfiguration "${ips[0]}"
start_kubelet 1
# shellcheck disable=SC2046
"${kubeadm_etcd}" init $(node_flags 1)
wait_healthy 1

for n in 2 3; do
  ip="${ips[$((n - 1))]}"
  log "node${n} (${ip}): the shared etcd CA, then kubeadm-etcd join"
  write_config "${n}" JoinConfiguration "${ip}"
  # Like copying the CA to a new control-plane node (kubeadm's certificate sharing).
  mkdir -p "${work}/node${n}/pki/etcd"
  cp "${work}/node1/pki/etcd/ca.crt" "${work}/node1/pki/etcd/ca.key" "${work}/node${n}/pki/etcd/"
  start_kubelet "${n}"
  # shellcheck disable=SC2046
  "${kubeadm_etcd}" join $(node_flags "${n}") --endpoints "https://${ips[0]}:2379" --timeout 2m
done

log "status"
"${kubeadm_etcd}" phase etcd status --endpoints "https://${ips[0]}:2379" --cert-dir "${work}/node1/pki"
"${kubeadm_etcd}" phase etcd check-health --endpoints "https://${ips[0]}:2379" --cert-dir "${work}/node1/pki"
succeeded=true

if ${keep}; then
  endpoints="https://${ips[0]}:2379,https://${ips[1]}:2379,https://${ips[2]}:2379"
  cat <<EOF

The cluster is running (logs: ${work}/node*/etcd.log). Try:
  ${kubeadm_etcd} phase etcd status --endpoints ${endpoints} --cert-dir ${work}/node1/pki
  etcdctl --endpoints ${endpoints} --cacert ${work}/node1/pki/etcd/ca.crt \\
    --cert ${work}/node1/pki/etcd/healthcheck-client.crt --key ${work}/node1/pki/etcd/healthcheck-client.key member list -w table
Stop it with:
  ${repo_root}/hack/local-cluster.sh --stop
EOF
else
  log "done; stopping the members (run with --keep to leave them running)"
fi
