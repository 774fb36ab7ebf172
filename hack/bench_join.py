"""Join time, from member add to voter, measured three ways on fresh clusters of the same
shape and data, runs alternated (called by hack/bench.py):

  kubeadm-etcd   `phase etcd join-learner`, then `phase etcd promote` (a pipeline's view:
                 from launching join-learner until promote has exited successfully)
  etcdctl 500ms  kubeadm's way by hand: `member add --learner`, write the manifest, retry
                 `member promote` every 500 ms (kubeadm's EtcdAPICallRetryInterval)
  etcdctl 10ms   the same with a 10 ms retry: the practical floor

Every cluster is one voter started from a copy of the same seed data directory (made once
per database size and etcd release, TLS everywhere, certificates from our phases), plus the
joining member, started by hack/kubelet-standin.rs from the manifest as soon as it appears,
exactly as in hack/local-cluster.sh. The seed takes a raft snapshot every 100 entries while
it is filled, and the copy restarts from its last one, so the learner is fed the whole
database as a snapshot, as a learner joining any real cluster (history beyond etcd's
snapshot catch-up entries) is. The tool's peak RSS is measured by GNU time (see run_tool) for join-learner
and promote. Loopback addresses 127.251.0.0/24 (reserved for this benchmark in
phases/tests/common/mod.rs), kubeadm's standard ports.

Modes: `idle` (nothing else happens), and `writer`: a writer puts small keys on the voter
at a steady rate (500/s by default) through etcd's JSON gateway, from before the join
starts until the member is a voter; its achieved rate, failures and worst latency are
reported with the join times.

Results are written as a table (`join-<etcd>.md`, all modes and sizes), JSON and an SVG
chart per etcd release and mode (`join-<etcd>-<mode>.svg`: join time against database
size, one line per method) into the output directory (hack/bench-results by default).
"""
import base64
import datetime
import http.client
import json
import ssl
import statistics
import threading
import xml.dom.minidom
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
# JOIN_TRACE_DIR=DIR: keep, per run of ours, its output with arrival times and the etcd logs.
TRACE_DIR = os.environ.get("JOIN_TRACE_DIR")
if TRACE_DIR:
    os.makedirs(TRACE_DIR, exist_ok=True)
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

# Only while the seed is filled (see the module documentation); removed from its copies.
SEED_SNAPSHOT_COUNT = "    - name: snapshot-count\n      value: \"100\"\n"

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
{extra}"""


def write_config(dir_, name, ip, join, extra=""):
    os.makedirs(dir_, exist_ok=True)
    endpoint = (f"controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: {ip}" if join
                else f"localAPIEndpoint:\n  advertiseAddress: {ip}")
    path = os.path.join(dir_, "kubeadm.yaml")
    with open(path, "w") as f:
        f.write(CONFIG.format(kind="JoinConfiguration" if join else "InitConfiguration", name=name,
                              endpoint=endpoint, dir=dir_, kubernetes=KUBERNETES_FOR_ETCD[ETCD_VERSION],
                              etcd=ETCD_VERSION, extra=extra))
    return path


class Node:
    def __init__(self, bin_, root, name, ip, join, extra=""):
        self.bin, self.dir, self.name, self.ip = bin_, os.path.join(root, name), name, ip
        self.config = write_config(self.dir, name, ip, join, extra)
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

    def gateway(self, timeout=10):
        """An HTTPS connection to etcd's JSON gateway with the healthcheck-client certificate."""
        pki = os.path.join(self.dir, "pki", "etcd")
        ctx = ssl.create_default_context(cafile=f"{pki}/ca.crt")
        ctx.load_cert_chain(f"{pki}/healthcheck-client.crt", f"{pki}/healthcheck-client.key")
        return http.client.HTTPSConnection(self.ip, 2379, context=ctx, timeout=timeout)


def gateway_put(conn, key, value):
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "value": base64.b64encode(value.encode()).decode()})
    conn.request("POST", "/v3/kv/put", body=body, headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    data = answer.read()
    if answer.status != 200:
        raise RuntimeError(f"put {key}: HTTP {answer.status}: {data[:200]!r}")


class Writer:
    """Puts small keys on `node` at `rate` per second, spread over a few connections (one
    put waits for etcd's fsync, so one connection alone may not keep up), until stopped."""

    THREADS = 4

    def __init__(self, node, rate):
        self.node, self.rate = node, rate
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ok = self.failed = 0
        self.latencies = []
        self.errors = []
        self.threads = []
        self.started = self.stopped = None

    def _loop(self, index):
        conn = self.node.gateway()
        interval = self.THREADS / self.rate
        next_at = time.perf_counter()
        i = 0
        while not self.stopping.is_set():
            now = time.perf_counter()
            if now < next_at:
                time.sleep(min(next_at - now, 0.05))
                continue
            next_at += interval
            start = time.perf_counter()
            try:
                gateway_put(conn, f"/writer/{index}/{i:08d}", "v" * 64)
                with self.lock:
                    self.ok += 1
                    self.latencies.append(time.perf_counter() - start)
            except Exception as e:  # noqa: BLE001 - counted and reported, the join goes on
                with self.lock:
                    self.failed += 1
                    self.errors.append(str(e))
                conn.close()
                conn = self.node.gateway()
            i += 1
        conn.close()

    def start(self):
        self.started = time.perf_counter()
        for index in range(self.THREADS):
            t = threading.Thread(target=self._loop, args=(index,), daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=30)
        self.stopped = time.perf_counter()
        lat = sorted(self.latencies)
        return {
            "puts": self.ok,
            "failed": self.failed,
            "rate": self.ok / (self.stopped - self.started),
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else None,
            "max_ms": lat[-1] * 1000 if lat else None,
            "first_error": self.errors[0] if self.errors else None,
        }


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


# The launcher that measures the tool's memory (package `time`, hack/install-deps.sh).
GNU_TIME = "/usr/bin/time"


def run_tool(args, timeout=900, marker=None, trace=None, clock0=None):
    """Runs kubeadm-etcd, returning (seconds, peak RSS in KiB, when `marker` appeared on
    its standard output). Reading the output as it comes lets the clock stop at the
    moment the tool reports the promotion, not after its post-promotion health check.
    With `trace` (a list), each output line is appended with its arrival time, in
    seconds since `clock0`, as wall-clock time too (to line up with etcd's logs).

    The peak RSS is GNU time's `%M`, the wait4() ru_maxrss of a child that GNU time
    forked. Not our own wait4(): the child would be forked from this Python process, and
    Linux keeps the address space's high-water mark from before the exec in ru_maxrss
    (`exec_mmap` in fs/exec.c), so it would report this benchmark's own RSS (25-28 MiB in
    the join benchmark; 14 MiB for `true` from a bare interpreter), whatever the tool
    uses. From GNU time the floor is its own ~1 MiB (see `rss_floor_kib`)."""
    start = time.perf_counter()
    clock0 = clock0 or start
    with tempfile.NamedTemporaryFile(mode="r", prefix="rss-") as rss_file:
        # Traced, its standard error (warnings, `KUBEADM_ETCD_LOG` events) is in the trace
        # too, in order with the rest.
        proc = subprocess.Popen([GNU_TIME, "-f", "%M", "-o", rss_file.name, *args],
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if trace is not None else subprocess.PIPE,
                                bufsize=0, start_new_session=True)
        marked = None
        for line in iter(proc.stdout.readline, b""):
            if trace is not None:
                now = time.time()
                stamp = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
                trace.append(f"{time.perf_counter() - clock0:8.3f}s {stamp} {line.decode(errors='replace').rstrip()}")
            if marker and marked is None and marker in line:
                marked = time.perf_counter()
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise RuntimeError(f"{args[1:4]} timed out")
            time.sleep(0.002)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            said = "\n".join(trace[-20:]) if trace is not None else proc.stderr.read().decode()[-2000:]
            raise RuntimeError(f"{' '.join(args[1:4])} failed: {said}")
        # On a non-zero exit GNU time writes a line before the figure: the figure is last.
        peak_kib = int(rss_file.read().split()[-1])
    return elapsed, peak_kib, marked


def rss_floor_kib():
    """What run_tool reports for `true`: the launcher's share of every figure."""
    return run_tool(["true"])[1]


def make_seed(bin_, work, size_mib):
    """One voter with `size_mib` MiB of values, stopped: its directory is copied for
    every run so that every cluster starts from the same data. It takes a raft snapshot
    every 100 entries, and 150 small keys make sure there is at least one."""
    seed = Node(bin_, work, "seed", SEED_IP, join=False, extra=SEED_SNAPSHOT_COUNT)
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
        conn = seed.gateway()
        for i in range(150):
            gateway_put(conn, f"/small/{i:03d}", "x")
        conn.close()
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
    text = text.replace(seed.dir, first)
    # The copy runs with etcd's default snapshot count; it restarts from the seed's last
    # snapshot, which is what feeds the learner a snapshot.
    text = re.sub(r"\n\s*- --snapshot-count=100(?=\n)", "", text)
    with open(path, "w") as f:
        f.write(text)
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
    trace = [] if TRACE_DIR else None
    start = time.perf_counter()
    _, rss_join, _ = run_tool([bin_, "phase", "etcd", "join-learner", *node.flags(), *endpoints],
                              trace=trace, clock0=start)
    # The clock stops at the promotion (the line promote prints when etcd accepted it), as
    # the etcdctl loops' does: not after promote's health wait that follows, which waits
    # for the new voter to serve clients (seconds after a snapshot: etcd's first publish
    # of a member fed a snapshot times out, server.go "failed to publish local member",
    # and it serves only after the second, 7 s later on 3.7.1).
    _, rss_promote, promoted = run_tool([bin_, "phase", "etcd", "promote", "--config", node.config,
                                         "--manifest-dir", node.manifests, *endpoints, "--timeout", "15m"],
                                        marker=b"ms after it was seen ready", trace=trace, clock0=start)
    if promoted is None:
        raise RuntimeError("promote exited 0 without reporting the promotion")
    if TRACE_DIR:
        trace.append(f"peak RSS: join-learner {rss_join} KiB, promote {rss_promote} KiB")
        save_trace(trace, first, node)
    return promoted - start, max(rss_join, rss_promote)


def save_trace(lines, first, node):
    """JOIN_TRACE_DIR: our output with arrival times and both members' etcd logs, one
    directory per run, to see where a join's time goes."""
    run_dir = tempfile.mkdtemp(dir=TRACE_DIR, prefix=f"{ETCD_VERSION}-{time.strftime('%H%M%S')}-")
    with open(os.path.join(run_dir, "ours.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for member in (first, node):
        log = os.path.join(member.dir, "etcd.log")
        if os.path.exists(log):
            shutil.copy(log, os.path.join(run_dir, f"{member.name}.log"))


def log_times(path, message):
    """When etcd logged `message` (zap JSON lines, `ts` in RFC 3339), as POSIX seconds."""
    times = []
    if not os.path.exists(path):
        return times
    with open(path, errors="replace") as f:
        for line in f:
            if f'"msg":"{message}"' not in line:
                continue
            try:
                ts = json.loads(line)["ts"]
            except (ValueError, KeyError):
                continue
            times.append(datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())
    return times


def landed_to_promoted(first, node):
    """Seconds from the learner's last "received and saved database snapshot" before the
    promotion to the voter applying it ("promote member"), both from etcd's own logs on one
    clock: what a promote loop adds once etcd could accept the promotion, without the
    transfer, which varies by seconds from run to run at 2 GiB (the same message in 3.5.1
    to 3.7.1: rafthttp/http.go, membership/cluster.go). None when no snapshot was sent."""
    promoted = log_times(os.path.join(first.dir, "etcd.log"), "promote member")
    if not promoted:
        return None
    landed = [t for t in log_times(os.path.join(node.dir, "etcd.log"),
                                   "received and saved database snapshot") if t <= promoted[0]]
    return promoted[0] - landed[-1] if landed else None


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
    for path, what in ((ETCD, f"etcd {ETCD_VERSION}"), (ETCDCTL, f"etcdctl {ETCD_VERSION}"),
                       (GNU_TIME, "GNU time (the package `time`)")):
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


# The join benchmark's database sizes (MiB) and runs: the largest ones take minutes each.
def join_sizes(runs, smoke):
    if smoke:
        return [(0, 1)]
    return [(0, runs), (64, runs), (512, max(3, runs // 3)), (2048, max(3, runs // 5))]


OURS = "kubeadm-etcd join-learner + promote"
LOOP_500 = "etcdctl, promote retried every 500 ms"
LOOP_10 = "etcdctl, promote retried every 10 ms"


def run(bin_, runs, smoke, report, modes=("idle",), write_rate=500, out_dir=None):
    """The join benchmark on the current etcd release: for each database size (one seed,
    copied for every run) and mode, the three methods alternated. Writes the table, the
    JSON and one SVG chart per mode into `out_dir`."""
    sizes = prepare(join_sizes(runs, smoke), "JOIN_SIZES_MIB")
    results = {}
    for size_mib, n in sizes:
        with tempfile.TemporaryDirectory(prefix="kubeadm-etcd-bench-") as work:
            seed = make_seed(bin_, work, size_mib)
            for mode in modes:
                results[f"{ETCD_VERSION}/{mode}/{size_mib}MiB"] = run_size(
                    bin_, work, seed, size_mib, n, mode, write_rate, report)
    if out_dir:
        write_outputs(out_dir, results, write_rate)
    return results


def run_size(bin_, work, seed, size_mib, n, mode, write_rate, report):
    contenders = [
        (OURS, lambda f, j: join_ours(bin_, f, j)),
        (LOOP_500, lambda f, j: join_etcdctl(bin_, f, j, 0.5)),
        (LOOP_10, lambda f, j: join_etcdctl(bin_, f, j, 0.01)),
    ]
    samples = {name: [] for name, _ in contenders}
    after_landing = {name: [] for name, _ in contenders}
    peak = []
    writes = {name: [] for name, _ in contenders}
    for round_ in range(n):
        order = contenders[round_ % 3:] + contenders[:round_ % 3]
        for name, fn in order:
            root = tempfile.mkdtemp(dir=work)
            first = node = writer = None
            try:
                first = fresh_cluster(bin_, seed, root)
                node = joiner(bin_, first, root)
                if mode == "writer":
                    writer = Writer(first, write_rate)
                    writer.start()
                    time.sleep(1.0)  # the steady state before the join starts
                elapsed, rss = fn(first, node)
                samples[name].append(elapsed)
                landed = landed_to_promoted(first, node)
                if landed is not None:
                    after_landing[name].append(landed)
                if rss:
                    peak.append(rss)
            finally:
                if writer:
                    writes[name].append(writer.stop())
                for member in (node, first):
                    if member:
                        member.stop()
                shutil.rmtree(root, ignore_errors=True)
    load = f", a writer putting {write_rate} keys/s" if mode == "writer" else ""
    title = f"join time, member add to voter, {size_mib} MiB database, etcd {ETCD_VERSION}{load}"
    out = report(title, samples, LOOP_10, unit="s", scale=1.0)
    for name, values in samples.items():
        out[name]["samples"] = values
        landed = after_landing[name]
        out[name]["landed_to_promoted"] = landed
        out[name]["landed_to_promoted_median"] = statistics.median(landed) if landed else None
        if landed:
            print(f"{name}: promoted {statistics.median(landed) * 1000:.0f} ms (median of {len(landed)}) "
                  f"after the snapshot landed")
    out["size_mib"] = size_mib
    out["mode"] = mode
    out["peak_rss_kib"] = max(peak) if peak else None
    out["rss_floor_kib"] = rss_floor_kib()
    if peak:
        print(f"peak RSS of kubeadm-etcd during the join: {max(peak) / 1024:.1f} MiB "
              f"(`true` measured the same way: {out['rss_floor_kib'] / 1024:.1f} MiB)")
    if mode == "writer":
        out["writer"] = writes
        for name, w in writes.items():
            failed = sum(x["failed"] for x in w)
            worst = max((x["max_ms"] or 0) for x in w) if w else 0
            rate = statistics.median([x["rate"] for x in w]) if w else 0
            print(f"writer during {name}: {rate:.0f} puts/s (median), {failed} failed, worst latency {worst:.0f} ms")
    return out


def write_outputs(out_dir, results, write_rate):
    """The table (markdown), the JSON and the SVG charts of one etcd release."""
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, f"join-{ETCD_VERSION}")
    with open(base + ".json", "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    rows = ["| mode | database | kubeadm-etcd | etcdctl 500 ms | etcdctl 10 ms | ours / 10 ms | ours / 500 ms | peak RSS |",
            "|---|---|---|---|---|---|---|---|"]
    for key in sorted(results, key=lambda k: (results[k]["mode"], results[k]["size_mib"])):
        r = results[key]
        ours, slow, fast = (r[name]["median"] for name in (OURS, LOOP_500, LOOP_10))
        mode = "idle" if r["mode"] == "idle" else f"{write_rate} puts/s"
        rss = f"{r['peak_rss_kib'] / 1024:.1f} MiB" if r["peak_rss_kib"] else "-"
        rows.append(f"| {mode} | {r['size_mib']} MiB ({r[OURS]['runs']} runs) | {ours:.3f} s | {slow:.3f} s | "
                    f"{fast:.3f} s | {ours / fast:.2f}x | {ours / slow:.2f}x | {rss} |")
    landed_rows = ["| mode | database | kubeadm-etcd | etcdctl 500 ms | etcdctl 10 ms |", "|---|---|---|---|---|"]
    for key in sorted(results, key=lambda k: (results[k]["mode"], results[k]["size_mib"])):
        r = results[key]
        cells = [r[name].get("landed_to_promoted_median") for name in (OURS, LOOP_500, LOOP_10)]
        mode = "idle" if r["mode"] == "idle" else f"{write_rate} puts/s"
        landed_rows.append(f"| {mode} | {r['size_mib']} MiB | "
                           + " | ".join("-" if c is None else f"{c * 1000:.0f} ms" for c in cells) + " |")
    with open(base + ".md", "w") as f:
        f.write(f"Join time, member add to voter, etcd {ETCD_VERSION} (medians)\n\n" + "\n".join(rows) + "\n\n"
                "From the snapshot landing to the promotion: the learner's \"received and saved database "
                "snapshot\" to the voter's \"promote member\", from etcd's logs (medians)\n\n"
                + "\n".join(landed_rows) + "\n")
    for mode in sorted({r["mode"] for r in results.values()}):
        series = {name: [] for name in (OURS, LOOP_500, LOOP_10)}
        for r in results.values():
            if r["mode"] == mode:
                for name in series:
                    series[name].append((r["size_mib"], r[name]["median"]))
        load = "idle cluster" if mode == "idle" else f"a writer putting {write_rate} keys/s"
        svg = chart_svg(f"Join time against database size, etcd {ETCD_VERSION}, {load}", series)
        # A chart that is not well-formed XML fails here, in the smoke too.
        xml.dom.minidom.parseString(svg)
        with open(f"{base}-{mode}.svg", "w") as f:
            f.write(svg)
        print(f"wrote {base}-{mode}.svg")
    print(f"wrote {base}.md and {base}.json")


COLOURS = {OURS: "#1f77b4", LOOP_500: "#d62728", LOOP_10: "#2ca02c"}


def nice_step(top, ticks=5):
    """A round tick step (1, 2 or 5 times a power of ten) covering `top` in about `ticks`."""
    raw = top / ticks if top > 0 else 1
    power = 10 ** int(f"{raw:e}".split("e")[1])
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def chart_svg(title, series, width=720, height=420):
    """A line chart, written by hand (no plotting package): x the database size in MiB
    (linear), y the median join time in seconds, one line and legend entry per method.
    Deterministic: the same results give the same bytes."""
    left, right, top, bottom = 70, 20, 40, 110
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = sorted({x for points in series.values() for x, _ in points}) or [0]
    ys = [y for points in series.values() for _, y in points] or [1]
    x_max = max(xs) or 1
    y_step = nice_step(max(ys) * 1.05)
    y_max = y_step * (int(max(ys) * 1.05 / y_step) + 1)

    def px(x):
        return left + plot_w * x / x_max if len(xs) > 1 else left + plot_w / 2

    def py(y):
        return top + plot_h * (1 - y / y_max)

    esc = lambda t: t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2:.1f}" y="22" text-anchor="middle" font-size="14">{esc(title)}</text>']
    tick = 0.0
    while tick <= y_max + 1e-9:
        y = py(tick)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g} s</text>')
        tick += y_step
    for x in xs:
        out.append(f'<line x1="{px(x):.1f}" y1="{top + plot_h}" x2="{px(x):.1f}" y2="{top + plot_h + 5}" stroke="#333"/>')
        out.append(f'<text x="{px(x):.1f}" y="{top + plot_h + 18}" text-anchor="middle">{x} MiB</text>')
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 36}" text-anchor="middle">database size</text>')
    out.append(f'<text transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
               'join time, member add to voter (median)</text>')
    for i, (name, points) in enumerate(series.items()):
        colour = COLOURS.get(name, "#555")
        points = sorted(points)
        if len(points) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in points:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{colour}">'
                       f'<title>{esc(name)}: {y:.3f} s at {x} MiB</title></circle>')
        ly = top + plot_h + 56 + 16 * i
        out.append(f'<line x1="{left}" y1="{ly - 4}" x2="{left + 24}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{left + 30}" y="{ly}">{esc(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


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
    the peak RSS of each (GNU time, see run_tool): ours must stay flat in the database size."""
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
