#!/usr/bin/env bash
# Packaging test (run by hack/test.sh): the debug build, linked by zig for glibc 2.17,
# needs nothing newer than glibc 2.17 (objdump -T); the .deb that hack/package-deb.sh
# makes of it (the same script and metadata hack/release.sh uses for the release build)
# installs into a scratch root with dpkg, puts every file where Debian wants it, runs
# from there, and purges without leaving a file behind. Sizes are reported, not asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }

# The glibc floor, on the debug build: its last step, the link, is redone by zig against
# glibc 2.17's symbols, exactly as hack/release.sh's cargo-zigbuild links (only the
# kubeadm-etcd crate is rebuilt, ~30 s; every dependency, C code included, is reused).
# A dependency or a change that calls a glibc function newer than 2.17 fails here. The
# release build itself takes ~30 minutes on 2 cores, too long for CI.
# (It leaves target/debug/kubeadm-etcd zig-linked; the next cargo build relinks it.)
# shellcheck source=hack/release-tools.sh
source hack/release-tools.sh
linker="$(zig_linker_for_glibc 2.17)"
# --no-build: the zig-linked debug binary is already built (by the caller, who copied it
# out of a target directory shared with other builds).
[ "${1:-}" = --no-build ] || cargo rustc --quiet --locked --bin kubeadm-etcd -- -C "linker=${linker}"
target_dir="${CARGO_TARGET_DIR:-target}"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
hack/glibc-floor.sh "${target_dir}/debug/kubeadm-etcd" 2.17

deb="$(hack/package-deb.sh --profile dev --out "${work}/out")"
echo "test-deb: built $(basename "${deb}") ($(stat -c %s "${deb}") bytes) from ${target_dir}/debug/kubeadm-etcd ($(stat -c %s "${target_dir}/debug/kubeadm-etcd") bytes)"

fields="$(dpkg-deb --field "${deb}" Package Architecture Depends Section Description)"
grep -q '^Package: kubeadm-etcd$' <<<"${fields}" || fail "Package field: ${fields}"
grep -q '^Architecture: amd64$' <<<"${fields}" || fail "Architecture field: ${fields}"
grep -q '^Depends: libc6 (>= 2.17)$' <<<"${fields}" || fail "Depends is not libc6 (>= 2.17): ${fields}"

# A scratch root with an empty dpkg database, plus the host's libc6 entry so that the
# package's libc6 dependency is checked against a real version instead of forced.
root="${work}/root"
mkdir -p "${root}/var/lib/dpkg/info" "${root}/var/lib/dpkg/updates" "${root}/var/lib/dpkg/triggers"
dpkg-query --status libc6 >"${root}/var/lib/dpkg/status"
touch "${root}/var/lib/dpkg/info/libc6:amd64.list"
touch "${root}/var/lib/dpkg/available"
dpkg_root=(dpkg --root="${root}" --force-not-root --force-script-chrootless --log=/dev/null)

"${dpkg_root[@]}" --install "${deb}" || fail "dpkg --install"
"${dpkg_root[@]}" --status kubeadm-etcd | grep -q '^Status: install ok installed$' || fail "not installed"
for f in usr/bin/kubeadm-etcd \
  usr/share/bash-completion/completions/kubeadm-etcd \
  usr/share/zsh/vendor-completions/_kubeadm-etcd \
  usr/share/fish/vendor_completions.d/kubeadm-etcd.fish \
  usr/share/man/man1/kubeadm-etcd.1.gz \
  usr/share/man/man1/kubeadm-etcd-phase-etcd-join-learner.1.gz \
  usr/share/doc/kubeadm-etcd/copyright; do
  [ -f "${root}/${f}" ] || fail "${f} not installed; the package has: $(dpkg-deb --contents "${deb}" | awk '{ print $NF }' | tr '\n' ' ')"
done
[ "$(stat -c %a "${root}/usr/bin/kubeadm-etcd")" = 755 ] || fail "/usr/bin/kubeadm-etcd mode $(stat -c %a "${root}/usr/bin/kubeadm-etcd")"
grep -q 'Apache License' "${root}/usr/share/doc/kubeadm-etcd/copyright" || fail "copyright has no licence text"
pages="$(find "${root}/usr/share/man/man1" -name '*.1.gz' | wc -l)"
[ "${pages}" -ge 20 ] || fail "only ${pages} man pages"
zcat "${root}/usr/share/man/man1/kubeadm-etcd-phase-etcd-join-learner.1.gz" | grep -q 'kubeadm\\-etcd phase etcd join\\-learner' ||
  fail "the join-learner page does not name its command"

help="$("${root}/usr/bin/kubeadm-etcd" --help)" || fail "the installed binary's --help failed"
grep -q 'Usage: kubeadm-etcd' <<<"${help}" || fail "--help: ${help}"
"${root}/usr/bin/kubeadm-etcd" version -o short >/dev/null || fail "the installed binary's version failed"
# The installed completion script loads in bash and registers the function.
bash --norc --noprofile -c "source '${root}/usr/share/bash-completion/completions/kubeadm-etcd' && complete -p kubeadm-etcd" >/dev/null ||
  fail "the installed bash completion does not load"

# The package has no conffiles, so --purge removes it in one step.
"${dpkg_root[@]}" --purge kubeadm-etcd || fail "dpkg --purge"
left="$(find "${root}" -path "${root}/var/lib/dpkg" -prune -o -type f -print)"
[ -z "${left}" ] || fail "files left after purge: ${left}"
if "${dpkg_root[@]}" --status kubeadm-etcd 2>/dev/null | grep -q '^Status: install'; then
  fail "still registered after purge"
fi
echo "test-deb: ok: installed, files in place, --help runs, purged cleanly in a scratch root"
