//! The `kubeadm-etcd upgrade` workflow (preflight, snapshot, etcd; the kubeadm-config
//! phase skipped: no API server here) run as the binary against real three-member TLS
//! clusters, each member restarted from its changed manifest by the kubelet stand-in of
//! the phases harness (included with `#[path]`), which runs the etcd release the
//! manifest's image tag names.
//!
//! - `rolling_upgrade_3_5_30_to_3_6_14_to_3_7_1`: one node at a time, 3.5.30 → 3.6.14, with the
//!   faults suite's writer putting keys throughout: every put commits within its attempts
//!   (quorum never lost), `phase etcd check-health` passes between steps, every member
//!   ends on 3.6.14, and every acknowledged write reads back. On the way, on the same
//!   cluster, refusals that change nothing (manifest bytes, snapshots, backups, member
//!   versions): 3.5.30 → 3.7.1 (a minor skipped), a voter down, 3.6.14 → 3.5.30 (a
//!   downgrade). Then on to 3.7.1: refused at first, with nothing changed, because every
//!   member's WAL still holds 3.5's v2 requests after its last raft snapshot (etcd 3.7.1
//!   would crash replaying them); once the cluster has written the entries the refusal
//!   names, each member has taken a raft snapshot, and the cluster rolls to 3.7.1 under
//!   the same writer.
//! - `rolling_upgrade_3_6_14_to_3_7_1_killed_and_rerun`: a cluster bootstrapped on 3.6.14
//!   moved to 3.7.1 one node at a time under the writer, each node's binary SIGKILLed at
//!   random moments (seeded: `FAULT_SEED=<n>` replays; the seed and where the kills
//!   landed are printed as a `fault-suite: upgrade-killed` line) and rerun: every member
//!   ends on 3.7.1, healthy, with its old manifest backed up; a further rerun changes
//!   nothing.
//! - `refused_below_3_5_26`: a 3.5.16 member is refused 3.6.14, and nothing changes.
//! - `v2_content_refused_for_3_6_as_etcd_3_6_14_refuses_it`: a 3.5.30 member run with
//!   `--enable-v2` (kubeadm's extraArgs) that took a v2 write is refused 3.6.14, nothing
//!   changed, first while the write is in its WAL after the last raft snapshot, then once
//!   a raft snapshot holds it in the v2 store; each time etcd 3.6.14 itself, started on a
//!   copy of that data directory, refuses it too: the refusal is etcd's rule, not a guess.
//! - `rolling_upgrade_3_4_23_to_3_5_30_after_a_bad_image`: first a target whose image
//!   cannot be pulled (3.5.99-0): the member does not come back on it, the old manifest
//!   is put back, the member returns on 3.4.23 and the error says so; then 3.4.23 →
//!   3.5.30 one node at a time under the writer, and a rerun that changes nothing.
//!
//! Loopback ids 83 to 87 (registered in `phases/tests/common/mod.rs`).

#[allow(unused_imports)]
#[path = "../phases/tests/common/mod.rs"]
mod common;

#[path = "../phases/tests/common/output.rs"]
mod output;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{KubeletRun, TestCluster};
use common::faults::{assert_invariants, seed, Expected, Rng, Writer};
use common::kubelet::KubeletEvent;
use common::{ClientTls, EtcdVersion};

/// Bounds every wait for a member, and the binary's own `--timeout`.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Bounds every run of the binary.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
/// The kubelet stand-in's probes at a tenth of kubeadm's durations.
const SCALE: f64 = 0.1;
/// The workflow's phase that rewrites kube-system/kubeadm-config.
const SKIP: &str = "upgrade/migrate-feature-gates";
/// Kills per node in the 3.7.1 step, at most.
const MAX_KILLS: usize = 2;

fn snapshot_dir(c: &TestCluster, n: usize) -> PathBuf {
    c.node(n).dir.join("snapshots")
}

fn endpoints(c: &TestCluster) -> String {
    c.nodes
        .iter()
        .map(|n| n.client_url())
        .collect::<Vec<_>>()
        .join(",")
}

/// `kubeadm-etcd upgrade --etcd-version <tag>` as node `n` runs it.
fn upgrade(c: &TestCluster, n: usize, tag: &str) -> Command {
    upgrade_within(c, n, tag, TIMEOUT)
}

/// [`upgrade`] with `--timeout <timeout>`.
fn upgrade_within(c: &TestCluster, n: usize, tag: &str, timeout: Duration) -> Command {
    let node = c.node(n);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubeadm-etcd"));
    cmd.arg("upgrade")
        .arg("--config")
        .arg(node.dir.join("kubeadm.yaml"))
        .args(["--etcd-version", tag, "--skip-phases", SKIP])
        .args(["--endpoints", &endpoints(c)])
        .arg("--manifest-dir")
        .arg(&node.manifest_dir)
        .arg("--backup-dir")
        .arg(&node.backup_dir)
        .arg("--dir")
        .arg(snapshot_dir(c, n))
        .args([
            "--keep",
            "2",
            "--timeout",
            &format!("{}s", timeout.as_secs()),
        ])
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion within [`COMMAND_TIMEOUT`], off the runtime's threads.
async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || {
        output::output_within(&mut cmd, COMMAND_TIMEOUT).unwrap_or_else(|out| {
            panic!(
                "{cmd:?} did not finish within {COMMAND_TIMEOUT:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    })
    .await
    .expect("the command runner")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn run_ok(c: &TestCluster, n: usize, cmd: Command) -> String {
    let what = format!("{cmd:?}");
    let out = run(cmd).await;
    assert!(
        out.status.success(),
        "{what} failed with {}:\n{}\nnode{n}'s member:\n{}",
        out.status,
        text(&out),
        c.log_tail(n)
    );
    text(&out)
}

/// `phase etcd check-health` through every member: the cluster has quorum.
async fn check_health(c: &TestCluster) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubeadm-etcd"));
    cmd.args(["phase", "etcd", "check-health", "--config"])
        .arg(c.node(0).dir.join("kubeadm.yaml"))
        .args(["--endpoints", &endpoints(c)]);
    run_ok(c, 0, cmd).await;
}

/// Every file under `dir` with its bytes (empty when `dir` does not exist).
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut found = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                found.extend(files(&path));
            } else {
                found.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    found
}

/// What a refusal must leave as it was: every node's manifest, backups and snapshots,
/// and every member's release.
#[derive(Debug, PartialEq)]
struct State {
    files: Vec<BTreeMap<PathBuf, Vec<u8>>>,
    versions: Vec<Option<String>>,
}

async fn state(c: &TestCluster) -> State {
    let mut versions = Vec::new();
    for n in 0..c.nodes.len() {
        let status = c.client(n, n).status(&c.node(n).client_url()).await;
        versions.push(status.ok().map(|s| s.version));
    }
    State {
        files: (0..c.nodes.len())
            .map(|n| {
                let node = c.node(n);
                let mut all = files(&node.manifest_dir);
                all.extend(files(&node.backup_dir));
                all.extend(files(&snapshot_dir(c, n)));
                all
            })
            .collect(),
        versions,
    }
}

/// `upgrade` of node `n` to `tag` is refused with `expected` in its output, and nothing
/// changed. Returns the output.
async fn assert_refused(c: &TestCluster, n: usize, tag: &str, expected: &[&str]) -> String {
    let before = state(c).await;
    let out = run(upgrade(c, n, tag)).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for e in expected {
        assert!(said.contains(e), "expected {e:?} in:\n{said}");
    }
    assert!(
        !said.contains("Saved the snapshot") && !said.contains("Wrote "),
        "{said}"
    );
    assert_eq!(
        state(c).await,
        before,
        "a refusal changed something: {said}"
    );
    said
}

/// `count` puts through every member, 16 at a time: `count` raft entries.
async fn raft_entries(c: &TestCluster, count: usize) {
    const WRITERS: usize = 16;
    let kv = common::faults::kv_client(c, &[0, 1, 2]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let mut kv = kv.clone();
        tasks.spawn(async move {
            for i in (w..count).step_by(WRITERS) {
                kv.put(format!("/raft-entries/{i:06}"), "x", None)
                    .await
                    .unwrap_or_else(|e| panic!("put {i}: {e}"));
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a writer task");
    }
}

/// Upgrades every node in turn to `version`, checking health and versions between steps.
async fn rolling_step(c: &TestCluster, version: EtcdVersion) {
    for n in 0..c.nodes.len() {
        let snapshots_before = files(&snapshot_dir(c, n)).len();
        let said = run_ok(c, n, upgrade(c, n, &version.image_tag())).await;
        assert!(
            said.contains(&format!("to {} in", version.version())),
            "{said}"
        );
        // One snapshot per run: upgrade/etcd uses the one etcd/snapshot/save took.
        assert_eq!(
            files(&snapshot_dir(c, n)).len(),
            snapshots_before + 1,
            "{said}"
        );
        assert!(
            said.contains("Using the snapshot this run saved before the feature-gate migration"),
            "{said}"
        );
        assert_eq!(c.wait_answering(n, TIMEOUT).await, version.version());
        check_health(c).await;
    }
}

/// The 3.7.1 step with kills: each node's `upgrade` SIGKILLed after a random delay up to
/// [`MAX_KILLS`] times (a run that finishes first ends the series), then rerun to success.
/// Where each kill landed (the last line the killed run printed) is counted in `kills`.
async fn killed_step(
    c: &TestCluster,
    version: EtcdVersion,
    rng: &mut Rng,
    kills: &mut BTreeMap<String, usize>,
) {
    for n in 0..c.nodes.len() {
        for k in 0..MAX_KILLS {
            let log = c.node(n).dir.join(format!("upgrade-killed-{k}.log"));
            let file = std::fs::File::create(&log).unwrap();
            let mut cmd = upgrade(c, n, &version.image_tag());
            cmd.stdout(file.try_clone().unwrap()).stderr(file);
            let mut child = cmd.spawn().expect("spawn the upgrade");
            // An uninterrupted step takes one to a few seconds, most of it waiting for
            // the member on its new release.
            let delay = rng.delay(Duration::from_millis(10), Duration::from_millis(2500));
            tokio::time::sleep(delay).await;
            let finished = child.try_wait().unwrap();
            let _ = child.kill();
            let _ = child.wait();
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(status) = finished {
                assert!(status.success(), "node{n} (after {k} kills): {said}");
                break;
            }
            let stage = said
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("[upgrade/etcd] "))
                .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| "start".to_string());
            *kills.entry(stage).or_default() += 1;
            eprintln!("node{n}: killed after {delay:?}:\n{said}");
        }
        let said = run_ok(c, n, upgrade(c, n, &version.image_tag())).await;
        eprintln!("node{n}: rerun:\n{said}");
        assert_eq!(c.wait_answering(n, TIMEOUT).await, version.version());
        check_health(c).await;
        assert!(
            !files(&c.node(n).backup_dir).is_empty(),
            "node{n}: no backup of the old manifest"
        );
    }
}

async fn stop_writer_and_check(c: &TestCluster, writer: Writer) -> String {
    let report = writer.stop().await;
    report.assert_quorum_never_lost_while_members_restart();
    assert!(report.puts.len() >= 10, "{} puts", report.puts.len());
    assert_invariants(
        c,
        &[0, 1, 2],
        Expected {
            voters: &[0, 1, 2],
            learners: &[],
        },
        &report.keys(),
    )
    .await;
    format!(
        "writer: {} puts, all read back, {} retried, longest gap {:?}",
        report.puts.len(),
        report.retried(),
        report.longest_gap()
    )
}

/// 3.5.30 → 3.6.14 → 3.7.1, with the refusals on the way.
async fn rolling_upgrade_3_5_to_3_6() {
    common::require_etcd(EtcdVersion::V3_6_14);
    common::require_etcd(EtcdVersion::V3_7_1);
    let c = TestCluster::new(EtcdVersion::V3_5_30, 84, 3);
    let mut kubelets: Vec<KubeletRun> = c.start_with_kubelets(SCALE, TIMEOUT).await;
    let writer = Writer::start(&c, &[0, 1, 2]).await;

    assert_refused(
        &c,
        0,
        "3.7.1-0",
        &[
            "etcd upgrades one minor at a time",
            "from etcd 3.5.30 to 3.7.1",
        ],
    )
    .await;
    // node2's kubelet stops, and its member with it.
    drop(kubelets.remove(2));
    assert_refused(
        &c,
        0,
        "3.6.14-0",
        &["refusing to upgrade while a voting member is down", "node2"],
    )
    .await;
    kubelets.push(c.run_kubelet_by_image(2, SCALE, Duration::from_millis(200)));
    c.wait_answering(2, TIMEOUT).await;
    check_health(&c).await;

    rolling_step(&c, EtcdVersion::V3_6_14).await;
    assert_refused(
        &c,
        1,
        "3.5.30-0",
        &["refusing to downgrade", "from etcd 3.6.14 to 3.5.30"],
    )
    .await;

    // A cluster bootstrapped on 3.5 and moved to 3.6 fewer than --snapshot-count (10000)
    // entries ago still has 3.5's v2 requests in every member's WAL after its last raft
    // snapshot, which etcd 3.7.1 (etcd PR #21263) panics replaying: found by this test
    // when the upgrade still went ahead and had to roll back. The preflight reads the WAL.
    let said = assert_refused(
        &c,
        0,
        "3.7.1-0",
        &[
            "etcd v2 request(s) after its last raft snapshot",
            "etcd 3.7 no longer reads v2 requests",
        ],
    )
    .await;
    let remaining: usize = said
        .split("about ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of writes to wait for in:\n{said}"));
    assert!((1..=10_001).contains(&remaining), "{said}");
    eprintln!("3.6.14 to 3.7.1 at first: {said}");
    // What the refusal says to wait for, written at once: one raft entry per put.
    raft_entries(&c, remaining + 100).await;
    rolling_step(&c, EtcdVersion::V3_7_1).await;

    let line = stop_writer_and_check(&c, writer).await;
    eprintln!("3.5.30 to 3.6.14 to 3.7.1: {line}");
    drop(kubelets);
}

/// 3.6.14 → 3.7.1 on a cluster bootstrapped on 3.6.14, the binary killed at random
/// moments and rerun.
async fn rolling_upgrade_3_6_to_3_7_killed() {
    common::require_etcd(EtcdVersion::V3_7_1);
    let started = Instant::now();
    let c = TestCluster::new(EtcdVersion::V3_6_14, 86, 3);
    let kubelets: Vec<KubeletRun> = c.start_with_kubelets(SCALE, TIMEOUT).await;
    let writer = Writer::start(&c, &[0, 1, 2]).await;
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut kills = BTreeMap::new();
    killed_step(&c, EtcdVersion::V3_7_1, &mut rng, &mut kills).await;
    // A rerun after success changes nothing.
    let said = run_ok(&c, 0, upgrade(&c, 0, "3.7.1-0")).await;
    assert!(said.contains("nothing to do"), "{said}");
    let writer = stop_writer_and_check(&c, writer).await;
    let line = format!(
        "fault-suite: upgrade-killed etcd-3.6.14-to-3.7.1 seed={seed} kills={} {kills:?}; {writer} ({:.0?})\n",
        kills.values().sum::<usize>(),
        started.elapsed()
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    drop(kubelets);
}

/// 3.4.23 → 3.5.30 under the writer, after a target whose image cannot be pulled
/// (3.5.99-0) came back on the old release with the old manifest.
async fn rolling_upgrade_3_4_to_3_5() {
    common::require_etcd(EtcdVersion::V3_5_30);
    let c = TestCluster::new(EtcdVersion::V3_4_23, 83, 3);
    let kubelets: Vec<KubeletRun> = c.start_with_kubelets(SCALE, TIMEOUT).await;
    let writer = Writer::start(&c, &[0, 1, 2]).await;

    let before = std::fs::read(c.node(1).manifest_path()).unwrap();
    let out = run(upgrade_within(&c, 1, "3.5.99-0", Duration::from_secs(8))).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for expected in [
        "did not come back on etcd 3.5.99",
        "running etcd 3.4.23 again",
        "snapshot taken before the change",
    ] {
        assert!(said.contains(expected), "expected {expected:?} in:\n{said}");
    }
    assert!(
        kubelets[1].events().iter().any(|e| matches!(e,
            KubeletEvent::StartFailed(why) if why.contains("3.5.99-0"))),
        "the kubelet could not start the bad image: {:#?}",
        kubelets[1].events()
    );
    assert_eq!(std::fs::read(c.node(1).manifest_path()).unwrap(), before);
    assert_eq!(c.wait_answering(1, TIMEOUT).await, "3.4.23");
    check_health(&c).await;

    rolling_step(&c, EtcdVersion::V3_5_30).await;
    let said = run_ok(&c, 0, upgrade(&c, 0, "3.5.30-0")).await;
    assert!(said.contains("nothing to do"), "{said}");
    let line = stop_writer_and_check(&c, writer).await;
    eprintln!("3.4.23 to 3.5.30: {line}");
    drop(kubelets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_3_4_23_to_3_5_30_after_a_bad_image() {
    tokio::time::timeout(Duration::from_secs(240), rolling_upgrade_3_4_to_3_5())
        .await
        .expect("the test finished within 240 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_3_5_30_to_3_6_14_to_3_7_1() {
    tokio::time::timeout(Duration::from_secs(360), rolling_upgrade_3_5_to_3_6())
        .await
        .expect("the test finished within 360 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_3_6_14_to_3_7_1_killed_and_rerun() {
    tokio::time::timeout(
        Duration::from_secs(240),
        rolling_upgrade_3_6_to_3_7_killed(),
    )
    .await
    .expect("the test finished within 240 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_below_3_5_26() {
    let test = async {
        common::require_etcd(EtcdVersion::V3_6_14);
        let c = TestCluster::new(EtcdVersion::V3_5_16, 85, 1);
        let _kubelets = c.start_with_kubelets(SCALE, TIMEOUT).await;
        assert_refused(
            &c,
            0,
            "3.6.14-0",
            &[
                "refusing to upgrade to etcd 3.6.14",
                "node0",
                "runs etcd 3.5.16; upgrade it to 3.5.26 or newer first",
            ],
        )
        .await;
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("the test finished within 60 s");
}

/// Node `n` runs etcd with its v2 API on (`--enable-v2` through kubeadm's extraArgs), as
/// clusters that once used that API did, taking a raft snapshot every
/// `snapshot_count` entries.
fn enable_v2(c: &mut TestCluster, n: usize, snapshot_count: u32) {
    let node = &mut c.nodes[n];
    let path = node.dir.join("kubeadm.yaml");
    let mut yaml = std::fs::read_to_string(&path).expect("the node's kubeadm.yaml");
    // The file ends inside ClusterConfiguration's etcd.local.
    yaml.push_str(&format!(
        "    extraArgs:\n    - name: enable-v2\n      value: \"true\"\n    - name: snapshot-count\n      value: \"{snapshot_count}\"\n"
    ));
    std::fs::write(&path, &yaml).expect("write kubeadm.yaml");
    node.config = phases::config::load_file(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
}

/// etcd `etcd` started on a copy of node `n`'s data directory (its member stopped) must
/// exit, saying `expected`. Plain HTTP on the node's own addresses; nothing else differs.
async fn refuses_to_start(c: &TestCluster, n: usize, etcd: &Path, copy_name: &str, expected: &str) {
    let node = c.node(n);
    let copy = node.dir.join(copy_name);
    common::run_ok(Command::new("cp").arg("-a").arg(&node.data_dir).arg(&copy));
    let mut cmd = Command::new(etcd);
    cmd.arg(format!("--name={}", node.name))
        .arg(format!("--data-dir={}", copy.display()))
        .arg(format!("--listen-client-urls=http://{}:2379", node.ip))
        .arg(format!("--advertise-client-urls=http://{}:2379", node.ip))
        .arg(format!("--listen-peer-urls=http://{}:2380", node.ip))
        .arg(format!("--listen-metrics-urls=http://{}:2381", node.ip))
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || output::output_within(&mut cmd, TIMEOUT / 2))
        .await
        .expect("the etcd runner")
        .unwrap_or_else(|out| {
            panic!(
                "{} ran on a data directory the preflight refused:\n{}",
                etcd.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains(expected), "expected {expected:?} in:\n{log}");
}

/// 3.5.30 → 3.6.14 on a member that took a write through etcd's v2 API: refused while
/// the write is in its WAL after the last raft snapshot, and once a raft snapshot holds
/// it in the v2 store; etcd 3.6.14 refuses the same data both times.
async fn v2_content_refused_for_3_6() {
    const SNAPSHOT_COUNT: u32 = 20;
    let etcd_3_6 = common::require_etcd(EtcdVersion::V3_6_14);
    // 3.5's etcdctl is the last that speaks v2 (`ETCDCTL_API=2`).
    let etcdctl_3_5 = common::require_etcdctl(EtcdVersion::V3_5_30);
    let mut c = TestCluster::new(EtcdVersion::V3_5_30, 87, 1);
    enable_v2(&mut c, 0, SNAPSHOT_COUNT);
    let mut kubelets = c.start_with_kubelets(SCALE, TIMEOUT).await;
    let node = c.node(0);
    let tls = ClientTls::healthcheck(&node.cert_dir);
    common::run_ok(
        Command::new(&etcdctl_3_5)
            .env("ETCDCTL_API", "2")
            .arg(format!("--endpoints={}", node.client_url()))
            .arg(format!("--ca-file={}", tls.ca.display()))
            .arg(format!("--cert-file={}", tls.cert.display()))
            .arg(format!("--key-file={}", tls.key.display()))
            .args(["set", "/v2-data/key", "value"]),
    );

    let said = assert_refused(
        &c,
        0,
        "3.6.14-0",
        &[
            "refusing to upgrade member node0",
            "to etcd 3.6.14",
            "v2 request(s) after its last raft snapshot that etcd 3.6 cannot replay",
            "PUT /1/v2-data/key",
            "--enable-v2",
        ],
    )
    .await;
    eprintln!("3.5.30 with a v2 write in its WAL, to 3.6.14: {said}");
    drop(kubelets);
    refuses_to_start(&c, 0, &etcd_3_6, "wal-copy", "detected disallowed v2 WAL").await;

    // Back on 3.5.30, v3 writes until a raft snapshot covers the v2 write: it is no longer
    // replayed from the WAL, it is in the snapshot's v2 store.
    kubelets = vec![c.run_kubelet_by_image(0, SCALE, Duration::from_millis(200))];
    c.wait_answering(0, TIMEOUT).await;
    let mut kv = common::faults::kv_client(&c, &[0]).await;
    for i in 0..2 * SNAPSHOT_COUNT {
        kv.put(format!("/v3-data/{i}"), "x", None)
            .await
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
    }
    let snap_dir = node.data_dir.join("member").join("snap");
    let deadline = Instant::now() + TIMEOUT;
    let has_raft_snapshot = || {
        std::fs::read_dir(&snap_dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "snap"))
        })
    };
    while !has_raft_snapshot() {
        assert!(
            Instant::now() < deadline,
            "no raft snapshot in {} after {} writes",
            snap_dir.display(),
            2 * SNAPSHOT_COUNT
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let said = assert_refused(
        &c,
        0,
        "3.6.14-0",
        &[
            "refusing to upgrade member node0",
            "the v2 store of its last raft snapshot",
            "holds data under /1/v2-data",
        ],
    )
    .await;
    eprintln!("3.5.30 with v2 content in its last raft snapshot, to 3.6.14: {said}");
    drop(kubelets);
    refuses_to_start(
        &c,
        0,
        &etcd_3_6,
        "snapshot-copy",
        "detected disallowed custom content in v2store",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_content_refused_for_3_6_as_etcd_3_6_14_refuses_it() {
    tokio::time::timeout(Duration::from_secs(180), v2_content_refused_for_3_6())
        .await
        .expect("the test finished within 180 s");
}
