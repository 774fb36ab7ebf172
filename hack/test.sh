#!/usr/bin/env bash
# Runs every test of kubeadm-etcd, on a fresh machine too: installs what the suite needs
# (idempotent), checks formatting and lints, runs the whole suite against real etcd
# 3.4.23 and 3.5.1, refuses pending snapshots, and runs a one-iteration smoke of the
# benchmarks so they cannot rot. Under CI=true a missing etcd binary fails the suite.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-deps.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

mkdir -p _output
echo "==> cargo test"
# insta never writes snapshots here: a changed rendering must be reviewed and committed.
INSTA_UPDATE=no cargo test --workspace --locked --no-fail-fast 2>&1 | tee _output/test.log
status=${PIPESTATUS[0]}

pending=$(find . -path ./target -prune -o \( -name '*.snap.new' -o -name '*.pending-snap' \) -print)
if [ -n "$pending" ]; then
  echo "pending insta snapshots (review them with cargo insta review, then commit):" >&2
  echo "$pending" >&2
  status=1
fi
[ "$status" -eq 0 ] || exit "$status"

echo "==> benchmark smoke (one iteration of hack/bench.sh, on the debug build)"
cargo build --quiet --locked --bin kubeadm-etcd --example kubelet-standin
BENCH_PROFILE=debug python3 hack/bench.py --smoke

# The closing line: the totals of every cargo test binary above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' _output/test.log
