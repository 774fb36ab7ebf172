#!/usr/bin/env bash
# Long fuzzing campaigns of the parsers (phases/tests/fuzz.rs): the kubeadm configuration,
# the kubeadm-config migration, Go durations, PEM certificates and certificate directories.
# `cargo test` runs a few thousand cases per property; this runs as many as asked.
#
# Usage: hack/fuzz.sh [CASES] [FILTER]
#   CASES    cases per property (default 100000)
#   FILTER   only the properties whose name contains FILTER (e.g. config_parser, migration,
#            configmap_file, go_duration, describe_certificate, ensure_certificates)
# Environment:
#   FUZZ_PROFILE=release  optimized build, in its own target directory; overflow checks and
#                         debug assertions stay on, or an arithmetic overflow would wrap
#                         silently instead of failing the property (the default dev profile
#                         already builds the dependencies optimized)
#   FUZZ_THREADS=<n>      properties run in parallel (default: the number of CPUs)
#   FUZZ_TIMEOUT=<d>      give up after this long, a timeout(1) duration (default 12h)
#
# A failure is shrunk, printed with the input that fails, and its seed appended to
# testdata/fuzz/regressions/<property>.txt, which every later run replays first: commit
# that file, and put the printed input into testdata/fuzz/crashers/<target>/ (replayed byte
# for byte by known_crashers_do_not_panic, whatever the corpus becomes).
set -euo pipefail
cd "$(dirname "$0")/.."

cases=${1:-100000}
filter=${2:-}
args=(-p kubeadm-etcd-phases --test fuzz --locked)
if [ "${FUZZ_PROFILE:-dev}" = release ]; then
  export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
  export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
  # Other profile settings than the usual release build: keep them apart.
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/fuzz-release"
  args+=(--release)
fi

echo "==> fuzzing: ${cases} cases per property, ${FUZZ_PROFILE:-dev} profile${filter:+, properties matching ${filter}}"
start=$(date +%s)
status=0
PROPTEST_CASES="$cases" timeout "${FUZZ_TIMEOUT:-12h}" \
  cargo test "${args[@]}" -- --nocapture --test-threads "${FUZZ_THREADS:-$(nproc)}" ${filter:+"$filter"} || status=$?
echo "==> finished in $(( $(date +%s) - start ))s with status ${status}"
if [ "$status" -ne 0 ]; then
  echo "failures are persisted in testdata/fuzz/regressions/; add each printed input to testdata/fuzz/crashers/<target>/" >&2
fi
exit "$status"
