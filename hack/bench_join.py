"""Join time, from member add to voter, measured three ways on fresh clusters of the same
shape and data, runs alternated (called by hack/bench.py):

  kubeadm-etcd   `phase etcd join-learner`, then `phase etcd promote` (a pipeline's view:
                 from launching join-learner until promote has exited successfully)
  etcdctl 500ms  kubeadm's way by hand: `member add --learner`, write the manifest, retry
                 `member promote` every 500 ms (kubeadm's EtcdAPICallRetryInterval)
  etcdctl 10ms   the same with a 10 ms retry: the practical floor

Every cluster is one voter started from a copy of the same seed data directory (made once
per database size, TLS everywhere, certificates from our phases), plus the joining member,
started by hack/kubelet-standin.rs from the manifest as soon as it appears, exactly as in
hack/local-cluster.sh. The tool's peak RSS is read from wait4() for join-learner and
promote. Loopback addresses 127.251.0.0/24 (reserved for this benchmark in
phases/tests/common/mod.rs), kubeadm's standard ports.
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The etcd releases the benchmark runs on (hack/install-deps.sh puts them under _output/),
# each rendered as a kubeadm release that deploys it (as phases/tests/common/versions.rs
# does): 3.5.1 with kubeadm 1.30, whose probes ask /health (/livez and /readyz came in
# 3.5.11); the others with the kubeadm that ships them.
KUBERNETES_FOR_ETCD = {"3.5.1": "v1.30.4", "3.5.30": "v1.33.4", "3.6.14": "v1.36.2", "3.7.1": "v1.37.1"}
ETCD_VERSION = "3.5.1"
ETCD = ETCDCTL = None


def use_etcd(version):
    """Selects the etcd release every later run uses."""
    global ETCD_VERSION, ETCD, ETCDCTL
    if version not in KUBERNETES_FOR_ETCD:
        raise SystemExit(f"--etcd-version {version}: the benchmark runs on {', '.join(KUBERNETES_FOR_ETCD)}")
    ETCD_VERSION = version
    ETCD = os.path.join(REPO, "_output", f"etcd-{version}", "etcd")
    ETCDCTL = os.path.join(REPO, "_output", f"etcd-{version}", "etcdctl")


use_etcd(ETCD_VERSION)
PROFILE = os.environ.get("BENCH_PROFILE", "release")
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
STANDIN = os.path.join(TARGET_DIR, PROFILE, "examples", "kubelet-standin")
SEED_IP, JOIN_IP = "127.251.0.11", "127.251.0.12"
MIB = 1024 * 1024

CONFIG = """apiVersion: kubeadm.k8s.io/v1beta4
kind: {kind}
nodeRegistration:
  name: {name}
{endpoint}
timeouts:
  etcdAPICall: 10m0s
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: {kubernetes}
certificatesDir: {dir}/pki
etcd:
  local:
    dataDir: {dir}/data
    imageTag: {etcd}-0
    extraArgs:
    - name: quota-backend-bytes
      value: "4294967296"
"""


def write_config(dir_, name, ip, join):
    os.makedirs(dir_, exist_ok=True)
    endpoint = (f"controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: {ip}" if join
                else f"localAPIEndpoint:\n  advertiseAddress: {ip}")
    path = os.path.join(dir_, "kubeadm.yaml")
    with open(path, "w") as f:
        f.write(CONFIG.format(kind="JoinConfiguration" if join else "InitConfiguration", name=name,
                              endpoint=endpoint, dir=dir_, kubernetes=KUBERNETES_FOR_ETCD[ETCD_VERSION],
                              etcd=ETCD_VERSION))
    return path


class Node:
    def __init__(self, bin_, root, name, ip, join):
        self.bin, self.dir, self.name, self.ip = bin_, os.path.join(root, name), name, ip
        self.config = write_config(self.dir, name, ip, join)
        self.manifests = os.path.join(self.dir, "manifests")
        self.proc = None

    def flags(self):
        return ["--config", self.config, "--manifest-dir", self.manifests, "--backup-dir", os.path.join(self.dir, "tmp")]

    def start_kubelet(self):
        log = open(os.path.join(self.dir, "etcd.log"), "ab")
        self.proc = subprocess.Popen([STANDIN, "--manifest", os.path.join(self.manifests, "etcd.yaml"),
                                      "--etcd-bin", ETCD, "--wait", "600"], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)

    def stop(self):
        # SIGTERM: the stand-in then kills its member, as the kubelet does with a removed
        # static Pod; a SIGKILLed stand-in would leave the member serving on this address.
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None

    def tls(self):
        pki = os.path.join(self.dir, "pki")
        return ["--cacert", f"{pki}/etcd/ca.crt", "--cert", f"{pki}/etcd/healthcheck-client.crt",
                "--key", f"{pki}/etcd/healthcheck-client.key"]


def etcdctl(node, endpoint, *args, check=True, timeout=60):
    done = subprocess.run([ETCDCTL, "--endpoints", endpoint, *node.tls(), *args],
                          capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"etcdctl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def wait_healthy(node, endpoint, limit=120):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if node.proc.poll() is not None:
            raise RuntimeError(f"{node.name}'s etcd exited; see {node.dir}/etcd.log")
        if etcdctl(node, endpoint, "endpoint", "health", check=False, timeout=10).returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{node.name} not healthy within {limit}s")


def run_tool(args, timeout=900, marker=None):
    """Runs kubeadm-etcd, returning (seconds, peak RSS in KiB, when `marker` appeared on
    its standard output). Reading the output as it comes lets the clock stop at the
    moment the tool reports the promotion, not after its post-promotion health check."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    marked = None
    if marker:
        for line in iter(proc.stdout.readline, b""):
            if marked is None and marker in line:
                marked = time.perf_counter()
    else:
        proc.stdout.read()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{args[1:4]} timed out")
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args[1:4])} failed: {proc.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss, marked


def make_seed(bin_, work, size_mib):
    """One voter with `size_mib` MiB of values, stopped: its directory is copied for
    every run so that every cluster starts from the same data."""
    seed = Node(bin_, work, "seed", SEED_IP, join=False)
    subprocess.run([bin_, "init", *seed.flags()], check=True, stdout=subprocess.DEVNULL)
    seed.start_kubelet()
    try:
        endpoint = f"https://{SEED_IP}:2379"
        wait_healthy(seed, endpoint)
        value = os.urandom(MIB // 2).hex()  # 1 MiB of text per key, under etcd's 1.5 MiB request limit
        for i in range(size_mib):
            subprocess.run([ETCDCTL, "--endpoints", endpoint, *seed.tls(), "put", f"/bench/{i:05d}"],
                           input=value, text=True, check=True,
                           stdout=subprocess.DEVNULL, timeout=60)
    finally:
        seed.stop()
    return seed


def fresh_cluster(bin_, seed, root):
    """Copies the seed's directory (same member, same data) and starts it."""
    first = os.path.join(root, "seed")
    shutil.copytree(seed.dir, first, symlinks=True)
    node = Node.__new__(Node)
    node.bin, node.dir, node.name, node.ip = bin_, first, "seed", SEED_IP
    node.config = write_config(first, "seed", SEED_IP, join=False)
    node.manifests = os.path.join(first, "manifests")
    node.proc = None
    # The copied manifest still names the seed's paths; point it at the copy.
    path = os.path.join(node.manifests, "etcd.yaml")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace(seed.dir, first))
    node.start_kubelet()
    wait_healthy(node, f"https://{SEED_IP}:2379")
    return node


def joiner(bin_, first, root):
    node = Node(bin_, root, "joiner", JOIN_IP, join=True)
    os.makedirs(os.path.join(node.dir, "pki", "etcd"), exist_ok=True)
    for f in ("ca.crt", "ca.key"):
        shutil.copy(os.path.join(first.dir, "pki", "etcd", f), os.path.join(node.dir, "pki", "etcd", f))
    subprocess.run([bin_, "phase", "certs", "all", "--config", node.config], check=True, stdout=subprocess.DEVNULL)
    return node


def join_ours(bin_, first, node):
    node.start_kubelet()
    endpoints = ["--endpoints", f"https://{SEED_IP}:2379"]
    start = time.perf_counter()
    _, rss_join, _ = run_tool([bin_, "phase", "etcd", "join-learner", *node.flags(), *endpoints])
    _, rss_promote, promoted = run_tool([bin_, "phase", "etcd", "promote", "--config", node.config, *endpoints,
                                         "--timeout", "15m"], marker=b"to a voting member")
    if promoted is None:
        raise RuntimeError("promote exited 0 without reporting the promotion")
    return promoted - start, max(rss_join, rss_promote)


def join_etcdctl(bin_, first, node, retry):
    """kubeadm's sequence done by hand: add as learner, write the manifest (our renderer,
    with the member list etcdctl printed), the kubelet starts it, retry promote."""
    node.start_kubelet()
    endpoint = f"https://{SEED_IP}:2379"
    # Rendered before the clock starts: kubeadm renders in-process, so this is not its cost.
    rendered = subprocess.run([bin_, "phase", "etcd", "local", "--dry-run", "--config", node.config,
                               "--manifest-dir", node.manifests], check=True, capture_output=True, text=True).stdout
    start = time.perf_counter()
    added = etcdctl(node, endpoint, "member", "add", node.name, "--learner", f"--peer-urls=https://{JOIN_IP}:2380")
    member_id = re.search(r"Member\s+([0-9a-f]+)\s+added", added.stdout).group(1)
    initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]+)"', added.stdout).group(1)
    manifest = re.sub(r"--initial-cluster=\S+", f"--initial-cluster={initial}\n    - --initial-cluster-state=existing", rendered)
    os.makedirs(node.manifests, exist_ok=True)
    tmp = os.path.join(node.manifests, ".etcd.yaml.tmp")
    with open(tmp, "w") as f:
        f.write(manifest)
    os.rename(tmp, os.path.join(node.manifests, "etcd.yaml"))
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if etcdctl(node, endpoint, "member", "promote", member_id, check=False, timeout=30).returncode == 0:
            return time.perf_counter() - start, None
        time.sleep(retry)
    raise RuntimeError("promote did not succeed within 15 minutes")


def prepare(sizes, env):
    """Checks the binaries a benchmark starts, and returns the (database MiB, runs) pairs
    to measure: `sizes`, limited to those listed in `env` (e.g. JOIN_SIZES_MIB=0,64)."""
    for path, what in ((ETCD, f"etcd {ETCD_VERSION}"), (ETCDCTL, f"etcdctl {ETCD_VERSION}")):
        if not os.path.exists(path):
            raise SystemExit(f"{what} is missing at {path}: run hack/install-deps.sh")
    require_standin()
    if os.environ.get(env):
        wanted = {int(x) for x in os.environ[env].split(",")}
        sizes = [(size, n) for size, n in sizes if size in wanted]
    return sizes


def require_standin():
    """The kubelet stand-in is built by the caller with the binary (hack/bench.sh: release;
    hack/test.sh: the test build's debug artefacts), not here: a `cargo build` of one
    example resolves the dependencies' features without the test build's dev-dependencies
    and would compile the whole tree a second time."""
    if not os.path.exists(STANDIN):
        raise SystemExit(f"{STANDIN} is missing: run hack/bench.sh, which builds it")


def run(bin_, runs, smoke, report):
    sizes = prepare([(0, 1)] if smoke else [(0, runs), (64, runs), (512, max(3, runs // 3))], "JOIN_SIZES_MIB")
    results = {}
    for size_mib, n in sizes:
        with tempfile.TemporaryDirectory(prefix="kubeadm-etcd-bench-") as work:
            seed = make_seed(bin_, work, size_mib)
            contenders = [
                ("kubeadm-etcd join-learner + promote", lambda f, j: join_ours(bin_, f, j)),
                ("etcdctl, promote retried every 500 ms", lambda f, j: join_etcdctl(bin_, f, j, 0.5)),
                ("etcdctl, promote retried every 10 ms", lambda f, j: join_etcdctl(bin_, f, j, 0.01)),
            ]
            samples = {name: [] for name, _ in contenders}
            peak = []
            for round_ in range(n):
                order = contenders[round_ % 3:] + contenders[:round_ % 3]
                for name, fn in order:
                    root = tempfile.mkdtemp(dir=work)
                    first = node = None
                    try:
                        first = fresh_cluster(bin_, seed, root)
                        node = joiner(bin_, first, root)
                        elapsed, rss = fn(first, node)
                        samples[name].append(elapsed)
                        if rss:
                            peak.append(rss)
                    finally:
                        for member in (node, first):
                            if member:
                                member.stop()
                        shutil.rmtree(root, ignore_errors=True)
            title = f"join time, member add to voter, {size_mib} MiB database, etcd {ETCD_VERSION}"
            out = report(title, samples, "etcdctl, promote retried every 10 ms", unit="s", scale=1.0)
            out["peak_rss_kib"] = max(peak) if peak else None
            print(f"peak RSS of kubeadm-etcd during the join: {max(peak) / 1024:.1f} MiB" if peak else "")
            results[f"{ETCD_VERSION}/{size_mib}MiB"] = out
    return results


def save_ours(bin_, node, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    elapsed, rss, _ = run_tool([bin_, "phase", "etcd", "snapshot", "save", "--config", node.config,
                                "--endpoints", f"https://{node.ip}:2379", "--dir", out_dir])
    return elapsed, rss


def save_etcdctl(node, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    elapsed, rss, _ = run_tool([ETCDCTL, "--endpoints", f"https://{node.ip}:2379", *node.tls(), "snapshot", "save",
                                os.path.join(out_dir, "etcdctl.db")])
    return elapsed, rss


def run_snapshot(bin_, runs, smoke, report):
    """`phase etcd snapshot save` against `etcdctl snapshot save` from the same member in
    the same run, alternated; both stream the Maintenance API's Snapshot to a file. Also
    the peak RSS of each (wait4): ours must stay flat in the database size."""
    sizes = prepare([(1, 1)] if smoke else [(64, runs), (512, runs)], "SNAPSHOT_SIZES_MIB")
    results = {}
    for size_mib, n in sizes:
        with tempfile.TemporaryDirectory(prefix="kubeadm-etcd-bench-") as work:
            seed = make_seed(bin_, work, size_mib)
            root = tempfile.mkdtemp(dir=work)
            node = fresh_cluster(bin_, seed, root)
            try:
                contenders = [
                    ("kubeadm-etcd phase etcd snapshot save", lambda d: save_ours(bin_, node, d)),
                    ("etcdctl snapshot save", lambda d: save_etcdctl(node, d)),
                ]
                samples = {name: [] for name, _ in contenders}
                rss = {name: [] for name, _ in contenders}
                for round_ in range(n):
                    order = contenders[round_ % 2:] + contenders[:round_ % 2]
                    for name, fn in order:
                        out_dir = tempfile.mkdtemp(dir=work)
                        try:
                            elapsed, peak = fn(out_dir)
                        finally:
                            shutil.rmtree(out_dir, ignore_errors=True)
                        samples[name].append(elapsed)
                        rss[name].append(peak)
                title = f"snapshot save, {size_mib} MiB database, etcd {ETCD_VERSION}"
                out = report(title, samples, "etcdctl snapshot save", unit="s", scale=1.0)
                out["peak_rss_kib"] = {name: max(v) for name, v in rss.items()}
                for name, v in rss.items():
                    print(f"peak RSS of {name}: {max(v) / 1024:.1f} MiB")
                results[f"{ETCD_VERSION}/{size_mib}MiB"] = out
            finally:
                node.stop()
    return results
