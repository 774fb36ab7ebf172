#!/usr/bin/env bash
# Runs every test of kubeadm-etcd, on a fresh machine too: installs what the suite needs
# (idempotent), checks formatting and lints, runs the whole suite against real etcd (the
# matrix 3.4.23, 3.5.30, 3.6.14, 3.7.1, plus 3.5.1 and 3.5.16 where a test is about one
# release), refuses pending snapshots, and runs a one-iteration smoke of the benchmarks so
# they cannot rot. A test whose etcd binary is missing fails, with or without CI=true:
# nothing is skipped, and a run that reports a skip is a failure.
#
# FAULT_RUNS=<n> raises the runs of each fault scenario per etcd version (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each stage says how long it took: CI's budget is 25 minutes from a fresh clone.
started=$SECONDS
stage() {
  echo "==> $1 (at $((SECONDS - started)) s)"
}

stage "install dependencies"
hack/install-deps.sh

stage "cargo fmt --check"
cargo fmt --all -- --check

stage "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

mkdir -p _output
stage "cargo test"
# insta never writes snapshots here: a changed rendering must be reviewed and committed.
INSTA_UPDATE=no cargo test --workspace --locked --no-fail-fast 2>&1 | tee _output/test.log
status=${PIPESTATUS[0]}

# No test may pass by not running: the harness has no skip, and this catches one added later.
if grep -n -E '^(SKIPPED|skipped):' _output/test.log >&2; then
  echo "tests were skipped (above); every real-etcd test must run: run hack/install-deps.sh" >&2
  status=1
fi

pending=$(find . -path ./target -prune -o \( -name '*.snap.new' -o -name '*.pending-snap' \) -print)
if [ -n "$pending" ]; then
  echo "pending insta snapshots (review them with cargo insta review, then commit):" >&2
  echo "$pending" >&2
  status=1
fi
[ "$status" -eq 0 ] || exit "$status"

stage "benchmark smoke (one iteration of hack/bench.sh, on the debug build)"
# With the test build's targets and features, so that nothing is compiled again: a build
# of the binary alone leaves out the dev-dependencies' features and rebuilds the tree.
cargo build --quiet --locked --workspace --all-targets
BENCH_PROFILE=debug python3 hack/bench.py --smoke

# Last: it relinks target/debug/kubeadm-etcd with zig, which nothing after it uses.
stage "packaging: glibc 2.17 floor of the zig-linked debug build; its .deb installs, runs and purges in a scratch root"
hack/test-deb.sh

# The closing line: the totals of every cargo test binary above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' _output/test.log
echo "hack/test.sh took $((SECONDS - started)) s"
