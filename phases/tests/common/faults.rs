//! What the fault scenarios (issue 6) share: repeated runs with a summary line for CI,
//! seeded randomness, clusters of several voters, data written before a fault and read
//! back after it, the invariants checked after every scenario, and two observers that run
//! during a scenario: a writer that proves quorum holds and a monitor of the member list.
//!
//! Every run is bounded in time; a run that panics or overruns is a failure that is
//! counted, and its cluster is dropped (members killed) before the next run starts.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Txn, TxnOp};
use phases::manifest::{self, ManifestOptions, Member};
use phases::membership::{EtcdClient, MemberId, DEFAULT_RPC_TIMEOUT};

use super::cluster::TestCluster;
use super::{ClientTls, EtcdVersion};

/// Runs per scenario and version unless `FAULT_RUNS` says otherwise: enough to catch a
/// fault that strikes often, few enough for CI's budget.
pub const DEFAULT_RUNS: usize = 2;

/// `FAULT_RUNS=<n>` for longer campaigns.
pub fn runs() -> usize {
    std::env::var("FAULT_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_RUNS)
}

/// `FAULT_SEED=<n>` replays the random choices of a run; otherwise one is drawn from the
/// clock. The seed is printed in the summary line.
pub fn seed() -> u64 {
    std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

pub use super::rng::Rng;

/// One run of a scenario.
#[derive(Debug, Clone)]
pub struct Run {
    pub version: EtcdVersion,
    pub test_id: u8,
    pub index: usize,
    pub rng: Rng,
}

/// Runs `scenario` [`runs()`] times for `version`, each run in its own task bounded by
/// `per_run`, then prints `fault-suite: <name> etcd-<version> runs=<n> failures=<f>
/// seed=<s>` and fails if any run failed.
///
/// The line is written to the process's standard error directly, past the test harness's
/// capture, so that CI logs carry the figures of passing tests too.
pub async fn run_scenario<F, Fut>(
    name: &str,
    version: EtcdVersion,
    test_id: u8,
    per_run: Duration,
    scenario: F,
) where
    F: Fn(Run) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    super::require_etcd(version);
    super::require_etcdctl(super::cluster::ETCDCTL);
    let runs = runs();
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut failures = Vec::new();
    let started = Instant::now();
    for index in 0..runs {
        let run = Run {
            version,
            test_id,
            index,
            rng: Rng::new(rng.next()),
        };
        let failed_before = failures.len();
        let mut task = tokio::spawn(scenario(run));
        match tokio::time::timeout(per_run, &mut task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("run {index}: {}", panic_message(e))),
            Err(_) => {
                task.abort();
                // Wait for the task to be dropped: its members die with it and free the
                // addresses the next run uses.
                let _ = task.await;
                failures.push(format!("run {index}: did not finish within {per_run:?}"));
            }
        }
        if failures.len() > failed_before {
            // Tasks a failed run spawned (joins, observers) are aborted with it but
            // dropped by the runtime a moment later, and with them the last handles on
            // its members; the next run reuses the addresses.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let line = format!(
        "fault-suite: {name} etcd-{} runs={runs} failures={} seed={seed} ({:.0?})\n",
        version.version(),
        failures.len(),
        started.elapsed()
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    assert!(
        failures.is_empty(),
        "{name} on {version}: {} of {runs} runs failed (FAULT_SEED={seed} replays them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Starts nodes `0..n` as the voters of a new cluster and waits until each is healthy.
///
/// Their manifests are our phase's, rendered for joining members (every member in
/// `--initial-cluster`), with `--initial-cluster-state=new` since they form the cluster
/// together; that is the only change.
pub fn start_voters(c: &TestCluster, n: usize) {
    if n == 1 {
        c.bootstrap();
        return;
    }
    let members: Vec<Member> = (0..n)
        .map(|i| Member {
            name: c.node(i).name.clone(),
            peer_url: c.node(i).peer_url(),
        })
        .collect();
    for i in 0..n {
        let node = c.node(i);
        let pod = manifest::etcd_pod(
            &node.config,
            &ManifestOptions::joining(node.cert_dir.clone(), members.clone()),
        )
        .expect("manifest");
        let yaml = manifest::render_yaml(&pod).expect("yaml");
        let state = "--initial-cluster-state=existing";
        assert!(yaml.contains(state), "{yaml}");
        let yaml = yaml.replace(state, "--initial-cluster-state=new");
        manifest::write_manifest(&node.manifest_dir, &node.backup_dir, &yaml)
            .expect("write manifest");
        c.start(i);
    }
    for i in 0..n {
        c.wait_healthy(i);
    }
}

/// The client URLs of `nodes`.
pub fn endpoints(c: &TestCluster, nodes: &[usize]) -> Vec<String> {
    nodes.iter().map(|&n| c.node(n).client_url()).collect()
}

/// Our client, reaching the cluster through `nodes`, with node `creds`'s certificates.
pub fn client_via(c: &TestCluster, nodes: &[usize], creds: usize) -> EtcdClient {
    EtcdClient::new(
        &endpoints(c, nodes),
        &c.node(creds).tls(),
        DEFAULT_RPC_TIMEOUT,
    )
    .expect("a client")
}

/// A plain etcd client (not ours) for data: puts, gets, member lists for observers.
pub async fn kv_client(c: &TestCluster, nodes: &[usize]) -> Client {
    let tls = ClientTls::healthcheck(&c.node(nodes[0]).cert_dir);
    Client::connect(
        endpoints(c, nodes),
        Some(tls.connect_options().expect("client TLS")),
    )
    .await
    .expect("connect")
}

/// Keys written before a fault, with their values.
#[derive(Debug, Default, Clone)]
pub struct Keys(pub BTreeMap<String, Vec<u8>>);

impl Keys {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn bytes(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }

    pub fn extend(&mut self, other: Keys) {
        self.0.extend(other.0);
    }
}

/// `count` small keys under `prefix`, in transactions of 100 puts.
pub async fn write_keys(kv: &Client, prefix: &str, count: usize) -> Keys {
    let mut keys = Keys::default();
    let all: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| {
            (
                format!("{prefix}/{i:05}"),
                format!("value-{i}-{prefix}").into_bytes(),
            )
        })
        .collect();
    for chunk in all.chunks(100) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|(k, v)| TxnOp::put(k.as_str(), v.clone(), None))
            .collect();
        with_retries("write the keys before the fault", || {
            let (mut kv, ops) = (kv.clone(), ops.clone());
            async move { kv.txn(Txn::new().and_then(ops)).await }
        })
        .await;
        keys.0.extend(chunk.iter().cloned());
    }
    keys
}

/// About `total` bytes in values of 128 KiB under `prefix`: something for a learner to
/// catch up on (a few MB take it a noticeable while on loopback with TLS).
pub async fn write_bulk(kv: &Client, prefix: &str, total: usize) -> Keys {
    const VALUE: usize = 128 * 1024;
    let mut keys = Keys::default();
    for i in 0..total.div_ceil(VALUE) {
        let key = format!("{prefix}/{i:05}");
        // Distinct, not compressible by chance: a key's index and position mixed.
        let value: Vec<u8> = (0..VALUE)
            .map(|j| (j.wrapping_mul(31) ^ i.wrapping_mul(131)) as u8)
            .collect();
        with_retries("write the bulk data before the fault", || {
            let (mut kv, key, value) = (kv.clone(), key.clone(), value.clone());
            async move { kv.put(key, value, None).await }
        })
        .await;
        keys.0.insert(key, value);
    }
    keys
}

/// Retries `f` for up to 10 s (a few seconds of re-election is not a failure of what is
/// being tested); panics with `what` and the last error after that.
async fn with_retries<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let error = match tokio::time::timeout(Duration::from_secs(3), f()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 3s".to_string(),
        };
        assert!(Instant::now() < deadline, "{what}: {error}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The member the voters among `nodes` agree is the leader: (node index, ID, raft term).
/// Waits up to 15 s for one.
pub async fn leader(c: &TestCluster, nodes: &[usize]) -> (usize, MemberId, u64) {
    let client = client_via(c, nodes, nodes[0]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut seen = Vec::new();
        for &n in nodes {
            match client.status(&c.node(n).client_url()).await {
                Ok(s) if s.healthy() && !s.is_learner => seen.push((n, s)),
                Ok(s) => last = format!("node{n}: {:?}", s.errors),
                Err(e) => last = format!("node{n}: {e}"),
            }
        }
        let leader = seen.iter().find(|(_, s)| s.member_id == s.leader);
        if let Some((n, s)) = leader {
            if seen.iter().all(|(_, o)| o.leader == s.member_id) {
                return (*n, s.member_id, s.raft_term);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no leader among {nodes:?} within 15s: {last}");
}

/// SIGSTOP for node `n`'s member.
pub fn pause(c: &TestCluster, n: usize) {
    c.node(n)
        .process
        .lock()
        .unwrap()
        .as_mut()
        .expect("started")
        .pause();
}

/// What the member list must hold after a scenario: exactly these voters and learners
/// (node indices), nothing else.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub voters: &'a [usize],
    pub learners: &'a [usize],
}

/// The invariants every scenario ends with:
/// - membership: exactly the members somebody asked for, each once, in the role asked for
///   (a linearizable member list, through any of `via`);
/// - quorum: a write commits;
/// - no data lost: every key written before the fault reads back with its value.
pub async fn assert_invariants(
    c: &TestCluster,
    via: &[usize],
    expected: Expected<'_>,
    keys: &Keys,
) {
    let client = client_via(c, via, via[0]);
    let list = client
        .member_list()
        .await
        .unwrap_or_else(|e| panic!("invariants: member list through {via:?}: {e}"));
    let mut got: Vec<(String, bool)> = list
        .members
        .iter()
        .flat_map(|m| m.peer_urls.iter().map(move |u| (u.clone(), m.is_learner)))
        .collect();
    got.sort();
    let mut want: Vec<(String, bool)> = expected
        .voters
        .iter()
        .map(|&n| (c.node(n).peer_url(), false))
        .chain(
            expected
                .learners
                .iter()
                .map(|&n| (c.node(n).peer_url(), true)),
        )
        .collect();
    want.sort();
    assert_eq!(
        got, want,
        "invariants: the member list is not what was asked for (peer URL, is learner): {:#?}",
        list.members
    );

    let mut kv = kv_client(c, via).await;
    with_retries("invariants: a write after the scenario", || {
        let mut kv = kv.clone();
        async move { kv.put("invariants/write", "after-the-fault", None).await }
    })
    .await;

    for (key, value) in &keys.0 {
        let response = with_retries("invariants: read back a key", || {
            let (mut kv, key) = (kv.clone(), key.clone());
            async move { kv.get(key, None).await }
        })
        .await;
        let found = response.kvs().first().map(|kv| kv.value().to_vec());
        assert!(
            found.as_deref() == Some(value.as_slice()),
            "invariants: {key} was written before the fault and is {} now",
            match found {
                None => "gone".to_string(),
                Some(v) => format!("{} bytes that differ", v.len()),
            }
        );
    }
    kv.delete("invariants/write", None).await.ok();
}

/// A failed put attempt is tolerated only when etcd's answer is about an election.
fn is_election_error(message: &str) -> bool {
    [
        "leader changed",
        "no leader",
        // etcd's ErrProposalDropped: raft drops proposals while leadership is being
        // transferred (MoveLeader before an upgrade) or no leader is known; the new
        // leader's term is higher.
        "raft proposal dropped",
        "no answer within",
        "timed out",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// One put of the background writer.
#[derive(Debug, Clone)]
pub struct Put {
    pub key: String,
    /// The errors of the attempts that failed before it committed (or gave up).
    pub failed_attempts: Vec<String>,
    /// The raft term it committed in; `None` if it never committed.
    pub term: Option<u64>,
    pub committed_at: Option<Instant>,
}

/// A writer that puts one key after another while a scenario runs. Dropping it (a failed
/// run) stops it.
pub struct Writer {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<Vec<Put>>>,
    initial_term: u64,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// How many attempts a put gets: three elections in a row would be a failure anyway.
const PUT_ATTEMPTS: usize = 4;
/// One attempt's bound: a put on a healthy cluster takes milliseconds, and etcd itself
/// gives up on a proposal after about 7 s.
const PUT_TIMEOUT: Duration = Duration::from_secs(3);

impl Writer {
    /// Starts writing `writer/<n>` keys through `nodes`, one at a time, a few dozen per
    /// second.
    pub async fn start(c: &TestCluster, nodes: &[usize]) -> Self {
        let mut kv = kv_client(c, nodes).await;
        let (_, _, initial_term) = leader(c, nodes).await;
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut puts = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("writer/{:06}", puts.len());
                    let mut put = Put {
                        key: key.clone(),
                        failed_attempts: Vec::new(),
                        term: None,
                        committed_at: None,
                    };
                    while put.failed_attempts.len() < PUT_ATTEMPTS {
                        let attempt = kv.put(key.as_str(), "w", None);
                        match tokio::time::timeout(PUT_TIMEOUT, attempt).await {
                            Ok(Ok(r)) => {
                                put.term = Some(r.header().map_or(0, |h| h.raft_term()));
                                put.committed_at = Some(Instant::now());
                                break;
                            }
                            Ok(Err(e)) => put.failed_attempts.push(e.to_string()),
                            Err(_) => put
                                .failed_attempts
                                .push(format!("no answer within {PUT_TIMEOUT:?}")),
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    puts.push(put);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                puts
            })
        };
        Self {
            stop,
            task: Some(task),
            initial_term,
        }
    }

    /// Stops the writer and returns what it did.
    pub async fn stop(mut self) -> WriterReport {
        self.stop.store(true, Ordering::Relaxed);
        let task = self.task.take().expect("running");
        let puts = task.await.expect("the writer does not panic");
        WriterReport {
            puts,
            initial_term: self.initial_term,
        }
    }
}

/// What the background writer saw.
#[derive(Debug)]
pub struct WriterReport {
    pub puts: Vec<Put>,
    pub initial_term: u64,
}

impl WriterReport {
    /// "Quorum never lost", precisely: every put committed, and a put that needed more
    /// than one attempt failed only with election errors (leader changed, no leader, no
    /// answer in time) and committed in a later raft term than the put before it, i.e. an
    /// election really happened in between. At most [`PUT_ATTEMPTS`] attempts per put.
    pub fn assert_quorum_never_lost(&self) {
        assert!(!self.puts.is_empty(), "the writer made no put");
        let mut term = self.initial_term;
        for put in &self.puts {
            let Some(committed) = put.term else {
                panic!(
                    "quorum lost: {} did not commit in {PUT_ATTEMPTS} attempts: {:?}",
                    put.key, put.failed_attempts
                );
            };
            if !put.failed_attempts.is_empty() {
                assert!(
                    put.failed_attempts.iter().all(|e| is_election_error(e)),
                    "{} failed with something other than an election: {:?}",
                    put.key,
                    put.failed_attempts
                );
                assert!(
                    committed > term,
                    "{} needed retries ({:?}) but no election happened (term {term} before, {committed} after)",
                    put.key,
                    put.failed_attempts
                );
            }
            term = committed;
        }
    }

    /// [`Self::assert_quorum_never_lost`] while members are restarted one at a time (an
    /// upgrade): an attempt may also fail because the member the client picked is the one
    /// being restarted (connection refused; reset or closed mid-request, or no answer
    /// before the client's deadline; the put is then retried with the same value). Such a failure is about that member, not quorum, and
    /// needs no election. Every put must still commit within its attempts, and one that
    /// failed with an election error must commit in a later term.
    pub fn assert_quorum_never_lost_while_members_restart(&self) {
        let unreachable = |e: &str| {
            [
                "tcp connect error",
                "Connection refused",
                "ConnectionReset",
                "Connection reset",
                "peer closed connection",
                "connection closed",
                "broken pipe",
                // The client's own deadline on a member that stopped answering because it
                // is being stopped for its restart (tonic's TimeoutExpired).
                "Timeout expired",
            ]
            .iter()
            .any(|m| e.contains(m))
        };
        assert!(!self.puts.is_empty(), "the writer made no put");
        let mut term = self.initial_term;
        for put in &self.puts {
            let Some(committed) = put.term else {
                panic!(
                    "quorum lost: {} did not commit in {PUT_ATTEMPTS} attempts: {:?}",
                    put.key, put.failed_attempts
                );
            };
            let elections: Vec<&String> = put
                .failed_attempts
                .iter()
                .filter(|e| !unreachable(e))
                .collect();
            assert!(
                elections.iter().all(|e| is_election_error(e)),
                "{} failed with something other than an election or a restarting member: {:?}",
                put.key,
                put.failed_attempts
            );
            assert!(
                elections.is_empty() || committed > term,
                "{} needed retries ({:?}) but no election happened (term {term} before, {committed} after)",
                put.key,
                put.failed_attempts
            );
            term = committed;
        }
    }

    /// The longest time between two commits: for the log, never asserted.
    pub fn longest_gap(&self) -> Duration {
        let times: Vec<Instant> = self.puts.iter().filter_map(|p| p.committed_at).collect();
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    pub fn retried(&self) -> usize {
        self.puts
            .iter()
            .filter(|p| !p.failed_attempts.is_empty())
            .count()
    }

    /// Every committed key, to read back after the scenario.
    pub fn keys(&self) -> Keys {
        Keys(
            self.puts
                .iter()
                .filter(|p| p.term.is_some())
                .map(|p| (p.key.clone(), b"w".to_vec()))
                .collect(),
        )
    }
}

/// Polls the member list while a scenario runs. Dropping it (a failed run) stops it.
pub struct MemberMonitor {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<MonitorReport>>,
}

impl Drop for MemberMonitor {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What the member list showed over a scenario.
#[derive(Debug, Default)]
pub struct MonitorReport {
    /// Member lists read.
    pub polls: usize,
    /// The most learners in one list.
    pub max_learners: usize,
    /// Every peer URL that appeared in any list.
    pub peer_urls: BTreeSet<String>,
}

impl MemberMonitor {
    /// Reads the member list through `nodes` every 50 ms.
    pub async fn start(c: &TestCluster, nodes: &[usize]) -> Self {
        let mut kv = kv_client(c, nodes).await;
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut report = MonitorReport::default();
                while !stop.load(Ordering::Relaxed) {
                    let list = tokio::time::timeout(Duration::from_secs(2), kv.member_list()).await;
                    if let Ok(Ok(list)) = list {
                        report.polls += 1;
                        let learners = list.members().iter().filter(|m| m.is_learner()).count();
                        report.max_learners = report.max_learners.max(learners);
                        for m in list.members() {
                            report.peer_urls.extend(m.peer_urls().iter().cloned());
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                report
            })
        };
        Self {
            stop,
            task: Some(task),
        }
    }

    pub async fn stop(mut self) -> MonitorReport {
        self.stop.store(true, Ordering::Relaxed);
        let task = self.task.take().expect("running");
        task.await.expect("the monitor does not panic")
    }
}
