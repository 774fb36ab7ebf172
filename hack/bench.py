#!/usr/bin/env python3
"""Benchmarks for kubeadm-etcd, each measured side by side with a baseline in the same
run, runs alternated, reported as medians and ratios. Never part of the test run: the
test suite only runs `--smoke` (one iteration of everything) so the script cannot rot.

  certs      `phase certs all` against the same five certificates made with the openssl
             CLI (RSA-2048 and ECDSA-P256). Target: at most 0.4x openssl's time for RSA-2048.
  coldstart  `phase etcd local --dry-run` from process start to exit, against `true`
             (the floor of starting any process).
  join       add-to-voter time of our join-learner + promote against kubeadm's way done
             with etcdctl (retry `member promote` every 500 ms) and the same with a 10 ms
             retry, on fresh clusters of the same shape and data, 0, 64, 512 and 2048 MiB
             databases, on an idle cluster and (--modes writer) under a steady writer;
             writes a table, JSON and an SVG chart per etcd release and mode into --out
             (see bench_join.py).
  snapshot   `phase etcd snapshot save` against `etcdctl snapshot save` from the same
             member, 64 and 512 MiB databases, with each one's peak RSS.

Usage: hack/bench.py [--smoke] [--runs N] [--etcd-version V ...] [--modes idle,writer]
                    [--write-rate N] [--out DIR] [certs|coldstart|join|snapshot ...]
       (JOIN_SIZES_MIB=0,64 and SNAPSHOT_SIZES_MIB=512 limit those benchmarks to some
       database sizes)
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Figures come from release builds; the test run's smoke only proves the script works and
# uses the debug build it already has (BENCH_PROFILE=debug).
PROFILE = os.environ.get("BENCH_PROFILE", "release")
# Where cargo put them: $CARGO_TARGET_DIR, as cargo itself reads it.
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
BIN = os.path.join(TARGET_DIR, PROFILE, "kubeadm-etcd")

CONFIG = """apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration: {{name: bench-1}}
localAPIEndpoint: {{advertiseAddress: 127.0.0.1}}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.32.0
encryptionAlgorithm: {alg}
etcd:
  local:
    imageTag: 3.5.1-0
"""

# The openssl side makes what `phase certs all` makes: the etcd CA and four leaves with
# kubeadm's subjects, usages and SANs. One openssl process per key and per signature,
# which is how operators script it.
LEAVES = [
    ("etcd/server", "bench-1", "serverAuth,clientAuth", "DNS:bench-1,DNS:localhost,IP:127.0.0.1,IP:::1"),
    ("etcd/peer", "bench-1", "serverAuth,clientAuth", "DNS:bench-1,DNS:localhost,IP:127.0.0.1,IP:::1"),
    ("etcd/healthcheck-client", "kube-etcd-healthcheck-client", "clientAuth", None),
    ("apiserver-etcd-client", "kube-apiserver-etcd-client", "clientAuth", None),
]


def openssl_newkey(alg):
    return ["-newkey", "rsa:2048"] if alg == "RSA-2048" else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]


def run_openssl_set(alg, out):
    os.makedirs(os.path.join(out, "etcd"), exist_ok=True)
    ca_key, ca_crt = os.path.join(out, "etcd/ca.key"), os.path.join(out, "etcd/ca.crt")
    quiet = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["openssl", "req", "-x509", "-nodes", *openssl_newkey(alg), "-keyout", ca_key, "-out", ca_crt,
                    "-subj", "/CN=etcd-ca", "-days", "3650",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
                    "-addext", "subjectAltName=DNS:etcd-ca"], **quiet)
    for base, cn, eku, san in LEAVES:
        key, csr, crt = (os.path.join(out, base + ext) for ext in (".key", ".csr", ".crt"))
        subprocess.run(["openssl", "req", "-new", "-nodes", *openssl_newkey(alg), "-keyout", key, "-out", csr,
                        "-subj", "/CN=" + cn], **quiet)
        ext = os.path.join(out, base + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n")
            f.write("extendedKeyUsage=%s\n" % eku)
            if san:
                f.write("subjectAltName=%s\n" % san)
        subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
                        "-days", "365", "-extfile", ext, "-out", crt], **quiet)


def run_ours(alg, out):
    cfg = os.path.join(out, "kubeadm.yaml")
    os.makedirs(out, exist_ok=True)
    with open(cfg, "w") as f:
        f.write(CONFIG.format(alg=alg))
    subprocess.run([BIN, "phase", "certs", "all", "--config", cfg, "--cert-dir", os.path.join(out, "pki")],
                   check=True, stdout=subprocess.DEVNULL)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def alternate(runs, contenders):
    """Runs every contender once per round, in an order that rotates each round, so that
    drift in the machine's load hits all of them alike."""
    samples = {name: [] for name, _ in contenders}
    for round_ in range(runs):
        order = contenders[round_ % len(contenders):] + contenders[:round_ % len(contenders)]
        for name, fn in order:
            with tempfile.TemporaryDirectory() as tmp:
                samples[name].append(fn(tmp))
    return samples


def report(title, samples, baseline, unit="ms", scale=1000.0):
    base = statistics.median(samples[baseline])
    print(f"\n## {title}")
    print(f"| {'what':<44} | median {unit:<3} | runs | ratio to {baseline} |")
    print(f"|{'-' * 46}|{'-' * 12}|{'-' * 6}|{'-' * (12 + len(baseline))}|")
    out = {}
    for name, values in samples.items():
        med = statistics.median(values)
        out[name] = {"median": med, "runs": len(values), "ratio": med / base if base else None}
        digits = 3 if unit == "s" else 1
        print(f"| {name:<44} | {med * scale:>10.{digits}f} | {len(values):>4} | {med / base:>{11 + len(baseline)}.2f}x |")
    return out


def bench_certs(runs):
    results = {}
    for alg in ("RSA-2048", "ECDSA-P256"):
        samples = alternate(runs, [
            (f"openssl CLI ({alg})", lambda tmp, a=alg: timed(run_openssl_set, a, tmp)),
            (f"kubeadm-etcd phase certs all ({alg})", lambda tmp, a=alg: timed(run_ours, a, tmp)),
        ])
        results[alg] = report(f"phase certs all vs openssl, {alg}", samples, f"openssl CLI ({alg})")
    return results


def bench_coldstart(runs):
    def ours(tmp):
        cfg = os.path.join(tmp, "kubeadm.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(alg="ECDSA-P256"))
        return timed(subprocess.run, [BIN, "phase", "etcd", "local", "--dry-run", "--config", cfg,
                                       "--cert-dir", os.path.join(tmp, "pki"), "--manifest-dir", tmp],
                     check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    samples = alternate(runs, [
        ("true (process start floor)", lambda tmp: timed(subprocess.run, ["true"], check=True)),
        ("phase etcd local --dry-run", ours),
    ])
    return report("cold start of phase etcd local --dry-run", samples, "true (process start floor)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="one iteration of everything, small databases")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--etcd-version", action="append", dest="etcd_versions",
                        help="the etcd release(s) the join and snapshot benchmarks run on (repeatable): "
                             "3.5.1, 3.5.30, 3.6.14, 3.7.1 [default: all four]")
    parser.add_argument("--modes",
                        help="join benchmark modes, comma-separated: idle, writer [default: idle; "
                             "with --smoke both]")
    parser.add_argument("--write-rate", type=int, default=500,
                        help="keys per second the writer puts on the voter in the writer mode [default: 500]")
    parser.add_argument("--out", help="where the join benchmark writes its tables, JSON and SVG charts "
                                      "[default: hack/bench-results; with --smoke, _output/bench-smoke]")
    parser.add_argument("which", nargs="*", default=["certs", "coldstart", "join", "snapshot"])
    args = parser.parse_args()
    runs = 1 if args.smoke else args.runs
    # The smoke proves the scripts work, on the newest etcd only (CI time).
    etcd_versions = args.etcd_versions or (["3.7.1"] if args.smoke else ["3.5.1", "3.5.30", "3.6.14", "3.7.1"])
    modes_arg = args.modes or ("idle,writer" if args.smoke else "idle")
    modes = [m.strip() for m in modes_arg.split(",") if m.strip()]
    for m in modes:
        if m not in ("idle", "writer"):
            sys.exit(f"--modes {modes_arg}: each mode is idle or writer")
    # The smoke's charts prove the writer works; they are not results to commit.
    out_dir = args.out or (os.path.join(REPO, "_output", "bench-smoke") if args.smoke
                           else os.path.join(REPO, "hack", "bench-results"))
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} is missing: run hack/bench.sh, which builds it")
    if shutil.which("openssl") is None:
        sys.exit("openssl is missing: run hack/install-deps.sh")
    print(f"# kubeadm-etcd benchmarks ({'smoke, ' if args.smoke else ''}{runs} runs, {os.cpu_count()} cores)")
    results = {}
    if "certs" in args.which:
        results["certs"] = bench_certs(runs)
    if "coldstart" in args.which:
        results["coldstart"] = bench_coldstart(max(runs, 1) * (1 if args.smoke else 2))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_join  # noqa: E402
    if "join" in args.which:
        results["join"] = {}
        for version in etcd_versions:
            bench_join.use_etcd(version)
            results["join"].update(bench_join.run(BIN, runs=runs, smoke=args.smoke, report=report, modes=modes,
                                                  write_rate=args.write_rate, out_dir=out_dir))
    if "snapshot" in args.which:
        results["snapshot"] = {}
        for version in etcd_versions:
            bench_join.use_etcd(version)
            results["snapshot"].update(bench_join.run_snapshot(BIN, runs=runs, smoke=args.smoke, report=report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
