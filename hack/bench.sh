#!/usr/bin/env bash
# The benchmarks' one entry point: builds the release binary, then measures every
# benchmark side by side with its baseline (hack/bench.py). Run on demand:
#   hack/bench.sh                 # everything, 15 alternated runs each
#   hack/bench.sh --runs 5 certs  # one benchmark
#   hack/bench.sh --smoke         # one iteration of everything (what the test run does)
set -euo pipefail
cd "$(dirname "$0")/.."
hack/install-deps.sh >/dev/null 2>&1 || hack/install-deps.sh
cargo build --release --locked --quiet --bin kubeadm-etcd --example kubelet-standin
exec python3 hack/bench.py "$@"
