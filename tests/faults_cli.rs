//! The binary SIGKILLed at random points of `phase etcd join-learner` and `phase etcd
//! promote` against every real etcd of the test matrix, then rerun: the cluster converges to the
//! intended membership (the first member and the joining one, both voters) with no extra
//! member, quorum, and every key written before (issue 6; the in-process fault scenarios
//! are in `phases/tests/faults.rs`).
//!
//! Everything a user would run is the binary: certificates (`phase certs`), the first
//! member's manifest (`phase etcd local`), the join. etcd runs from the manifests, the way
//! the kubelet would run it; `etcdctl` (3.4, as in the phases harness) is the independent
//! observer and writes the data.
//!
//! Each run starts `join-learner`, then `promote`, up to [`MAX_KILLS`] times each,
//! SIGKILLing it after a random delay (seeded; `FAULT_SEED=<n>` replays) until one
//! attempt finishes first; after every kill no member may have appeared that nobody asked
//! for; then each command is rerun to success. Where the kills landed (the last progress
//! line the killed command printed) is counted in the summary line. Runs per
//! version: 3, or `FAULT_RUNS=<n>`. One line per version for CI's figures:
//! `fault-suite: tool-killed etcd-<version> runs=<n> failures=<f> seed=<s> ...`.
//!
//! Runs on every etcd of the test matrix (`phases/tests/common/versions.rs`). Addresses:
//! `127.72.<version octet>.x`, registered in `phases/tests/common/mod.rs` (the
//! `--replace` tests at the end: `127.166.5.x` and `127.167.5.x`). Members
//! are killed when their guard drops, also on a
//! failed assertion; unlike the phases harness they are not bound to the test process's
//! death, since this package has no libc for `PR_SET_PDEATHSIG`.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// At most this many kills per command per run; a run that finishes before its kill ends
/// the series earlier.
const MAX_KILLS: usize = 4;
/// An uninterrupted join-learner takes 10-30 ms on loopback (process start, TLS, member
/// list, statuses, add, manifest): kills are spread over that and a little beyond.
const JOIN_KILL_WINDOW: Duration = Duration::from_millis(40);
/// An uninterrupted promote of a learner that runs takes some tens of ms (it catches up,
/// the promotion, the health wait).
const PROMOTE_KILL_WINDOW: Duration = Duration::from_millis(150);
/// After the line printed right before the membership change (join: the cluster checked;
/// promote: the catch-up): the change and its answer take a few milliseconds.
const TRIGGER_KILL_WINDOW: Duration = Duration::from_millis(15);
/// Bounds every command run to completion.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
const KEYS: usize = 100;

// The version list, binary lookup and kubelet behaviour of the phases harness, included
// rather than copied.
#[allow(dead_code)]
#[path = "../phases/tests/common/kubelet.rs"]
mod kubelet;
#[allow(dead_code)]
#[path = "../phases/tests/common/versions.rs"]
mod versions;

#[path = "../phases/tests/common/output.rs"]
mod output;

#[path = "../phases/tests/common/rng.rs"]
mod rng;
use rng::Rng;

use versions::{EtcdVersion, Tool};

/// The first address octet of this file's runs (registered in
/// `phases/tests/common/mod.rs`); the version picks the third.
const TEST_ID: u8 = 72;

/// etcdctl 3.4, the observer whatever the members run (as in the phases harness).
fn etcdctl_binary() -> PathBuf {
    versions::require(EtcdVersion::V3_4_23, Tool::Etcdctl)
}

fn seed() -> u64 {
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

fn runs() -> usize {
    std::env::var("FAULT_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3)
}

/// A process killed (SIGKILL) and reaped when dropped.
struct Guard(Child);

impl Guard {
    fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().ok().flatten()
    }

    /// SIGKILL; whether it was still running.
    fn kill(&mut self) -> bool {
        let running = self.exited().is_none();
        let _ = self.0.kill();
        let _ = self.0.wait();
        running
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One node: its configuration, certificates, manifest and data directories.
struct Node {
    name: String,
    ip: Ipv4Addr,
    dir: PathBuf,
}

impl Node {
    fn config(&self) -> PathBuf {
        self.dir.join("kubeadm.yaml")
    }
    fn cert_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }
    fn manifest_dir(&self) -> PathBuf {
        self.dir.join("manifests")
    }
    fn client_url(&self) -> String {
        format!("https://{}:2379", self.ip)
    }
    fn peer_url(&self) -> String {
        format!("https://{}:2380", self.ip)
    }

    fn new(root: &Path, version: EtcdVersion, index: u8) -> Self {
        Self::on(root, TEST_ID, version, index)
    }

    /// A node on the addresses of test `test_id` (registered in `phases/tests/common/mod.rs`).
    fn on(root: &Path, test_id: u8, version: EtcdVersion, index: u8) -> Self {
        let ip = Ipv4Addr::new(127, test_id, version.octet(), 10 + index);
        let name = format!("node{index}");
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let node = Node { name, ip, dir };
        let local = if index == 0 {
            format!(
                "kind: InitConfiguration\nnodeRegistration:\n  name: {}\nlocalAPIEndpoint:\n  advertiseAddress: {ip}\n",
                node.name
            )
        } else {
            format!(
                "kind: JoinConfiguration\nnodeRegistration:\n  name: {}\ncontrolPlane:\n  localAPIEndpoint:\n    advertiseAddress: {ip}\n",
                node.name
            )
        };
        let yaml = format!(
            "apiVersion: kubeadm.k8s.io/v1beta4\n{local}---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nencryptionAlgorithm: ECDSA-P256\ncertificatesDir: {}\netcd:\n  local:\n    dataDir: {}\n    imageTag: {}\n",
            node.cert_dir().display(),
            node.dir.join("data").display(),
            version.image_tag()
        );
        std::fs::write(node.config(), yaml).unwrap();
        node
    }

    /// `kubeadm-etcd phase <args> --config <this node's>` with its manifest and backup
    /// directories, not yet started.
    fn tool(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubeadm-etcd"));
        cmd.arg("phase")
            .args(args)
            .arg("--config")
            .arg(self.config());
        if args.first() == Some(&"etcd") {
            // promote reads the manifest for the learner's metrics listener.
            cmd.arg("--manifest-dir").arg(self.manifest_dir());
            if args.get(1) != Some(&"promote") {
                cmd.arg("--backup-dir").arg(self.dir.join("tmp"));
            }
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Starts etcd from the manifest on disk, as the kubelet would: the container's
    /// command, with its localhost listeners moved to this node's own address (members
    /// share the machine).
    fn start_etcd(&self, etcd: &Path) -> Guard {
        let text = std::fs::read_to_string(self.manifest_dir().join("etcd.yaml")).unwrap();
        let pod: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let command: Vec<String> = pod["spec"]["containers"][0]["command"]
            .as_sequence()
            .expect("a command")
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(command[0], "etcd");
        let args = kubelet::localize_command(&command, self.ip.into()).split_off(1);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap();
        Guard(
            Command::new(etcd)
                .args(args)
                .env_clear()
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Runs `cmd` to completion within [`COMMAND_TIMEOUT`].
fn run(mut cmd: Command) -> Output {
    output::output_within(&mut cmd, COMMAND_TIMEOUT).unwrap_or_else(|out| {
        panic!(
            "{cmd:?} did not finish in {COMMAND_TIMEOUT:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn run_ok(cmd: Command) -> String {
    let what = format!("{cmd:?}");
    let out = run(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed with {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// etcdctl 3.4 through node 0 with its healthcheck-client certificate.
fn etcdctl(node0: &Node, args: &[&str]) -> Command {
    let pki = node0.cert_dir().join("etcd");
    let mut cmd = Command::new(etcdctl_binary());
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", node0.client_url()))
        .arg(format!("--cacert={}", pki.join("ca.crt").display()))
        .arg(format!(
            "--cert={}",
            pki.join("healthcheck-client.crt").display()
        ))
        .arg(format!(
            "--key={}",
            pki.join("healthcheck-client.key").display()
        ))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=5s")
        .args(args);
    cmd
}

/// The member list as etcdctl sees it: (peer URL, is learner), sorted.
fn members(node0: &Node) -> Vec<(String, bool)> {
    let out = run_ok(etcdctl(node0, &["member", "list", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut members: Vec<(String, bool)> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| {
            let learner = m["isLearner"].as_bool().unwrap_or(false);
            m["peerURLs"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |u| (u.as_str().unwrap().to_string(), learner))
        })
        .collect();
    members.sort();
    members
}

/// After a kill: the first member, plus at most one member with the joining node's peer
/// URL, and nothing else. Returns what the joining node is: absent, learner or voter.
fn assert_no_extra_member(node0: &Node, node1: &Node, context: &str) -> &'static str {
    let list = members(node0);
    let others: Vec<&(String, bool)> = list
        .iter()
        .filter(|(u, _)| *u != node0.peer_url())
        .collect();
    assert!(
        list.contains(&(node0.peer_url(), false))
            && others.len() <= 1
            && others.iter().all(|(u, _)| *u == node1.peer_url()),
        "{context}: the member list is {list:?}"
    );
    match others.first() {
        None => "absent",
        Some((_, true)) => "learner",
        Some((_, false)) => "voter",
    }
}

fn wait_healthy(node0: &Node) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = run(etcdctl(node0, &["endpoint", "health"]));
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} was not healthy within 20s: {}\n{}",
            node0.name,
            String::from_utf8_lossy(&out.stderr),
            node0.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until node1's member has started (published its name).
fn wait_started(node0: &Node, node1: &Node) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = run_ok(etcdctl(node0, &["member", "list", "-w", "json"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let started = v["members"].as_array().unwrap().iter().any(|m| {
            m["name"].as_str() == Some(node1.name.as_str())
                && m["peerURLs"][0].as_str() == Some(node1.peer_url().as_str())
        });
        if started {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not start within 20s:\n{}",
            node1.name,
            node1.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where a killed command had got to: the last of `stages` (a line it prints, a label)
/// found in its output, or "start" when it printed none yet.
fn stage(output: &str, stages: &[(&'static str, &'static str)]) -> &'static str {
    stages
        .iter()
        .rev()
        .find(|(line, _)| output.contains(line))
        .map_or("start", |(_, label)| label)
}

const JOIN_STAGES: &[(&str, &str)] = &[
    ("Checked the etcd cluster", "checked"),
    ("Announced new etcd member", "added"),
    ("was written", "manifest-written"),
];

const PROMOTE_STAGES: &[(&str, &str)] = &[
    ("Waiting for the etcd learner", "waiting-for-start"),
    ("is running at", "learner-seen"),
    ("catching up", "catching-up"),
    ("promoted", "promoted"),
    ("is healthy with the new voting member", "healthy"),
];

/// Where the kills landed, per command and stage.
#[derive(Debug, Default)]
struct Kills(std::collections::BTreeMap<String, usize>);

impl Kills {
    fn add(&mut self, what: String) {
        *self.0.entry(what).or_default() += 1;
    }

    fn total(&self) -> usize {
        self.0.values().sum()
    }

    fn merge(&mut self, other: Kills) {
        for (k, n) in other.0 {
            *self.0.entry(k).or_default() += n;
        }
    }
}

/// A command to kill: its arguments, the progress lines that tell how far it got, the
/// line printed right before it changes the membership, and how long it takes.
#[derive(Clone, Copy)]
struct Step<'a> {
    args: &'a [&'a str],
    stages: &'static [(&'static str, &'static str)],
    trigger: &'static str,
    window: Duration,
}

/// Up to [`MAX_KILLS`] attempts of `args`, each SIGKILLed after a random delay in
/// `window` unless it finished first (which must be a success, and ends the attempts),
/// each followed by the membership check; then one more run, to success. Kills are
/// recorded in `kills` as `<command>:<last line printed>/<joining member after the kill>`.
fn kill_and_rerun(node0: &Node, node1: &Node, step: &Step<'_>, rng: &mut Rng, kills: &mut Kills) {
    let Step {
        args,
        stages,
        trigger,
        window,
    } = *step;
    for k in 0..MAX_KILLS {
        let log = node1.dir.join(format!("{}-{k}.log", args[1]));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = node1.tool(args);
        cmd.stdout(file.try_clone().unwrap()).stderr(file);
        let mut child = Guard(cmd.spawn().unwrap());
        // Half the kills count from the start; the others from the line the command
        // prints right before it changes the membership, so that the few milliseconds
        // around the change are hit too.
        let from_line = rng.next() % 2 == 1;
        if from_line {
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.exited().is_none()
                && Instant::now() < deadline
                && !std::fs::read_to_string(&log).is_ok_and(|o| o.contains(trigger))
            {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let delay = if from_line {
            rng.delay(Duration::from_micros(50), TRIGGER_KILL_WINDOW)
        } else {
            rng.delay(Duration::from_millis(1), window)
        };
        std::thread::sleep(delay);
        let finished = child.exited();
        child.kill();
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(status) = finished {
            assert!(
                status.success(),
                "{args:?} (after {k} kills) failed: {output}"
            );
            break;
        }
        let member = assert_no_extra_member(
            node0,
            node1,
            &format!(
                "{args:?} killed {delay:?} after {} (kill {k}), output:\n{output}",
                if from_line { trigger } else { "the start" }
            ),
        );
        kills.add(format!("{}:{}/{member}", args[1], stage(&output, stages)));
    }
    let out = run(node1.tool(args));
    assert!(
        out.status.success(),
        "{args:?} after the kills failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        node0.log_tail()
    );
}

/// One run: a one-member cluster, 100 keys, node1 joined through killed and rerun
/// join-learner and promote. Returns where the kills landed.
fn tool_killed_run(version: EtcdVersion, rng: &mut Rng) -> Kills {
    let tmp = tempfile::tempdir().unwrap();
    let node0 = Node::new(tmp.path(), version, 0);
    let node1 = Node::new(tmp.path(), version, 1);
    // One CA for both: made on node0, copied to node1 before its certificates.
    run_ok(node0.tool(&["certs", "all"]));
    std::fs::create_dir_all(node1.cert_dir().join("etcd")).unwrap();
    for file in ["ca.crt", "ca.key"] {
        std::fs::copy(
            node0.cert_dir().join("etcd").join(file),
            node1.cert_dir().join("etcd").join(file),
        )
        .unwrap();
    }
    run_ok(node1.tool(&["certs", "all"]));
    run_ok(node0.tool(&["etcd", "local"]));
    let _etcd0 = node0.start_etcd(&versions::require(version, Tool::Etcd));
    wait_healthy(&node0);

    // etcdctl's txn from standard input: no compares, the puts, no failure branch; each
    // section ends with an empty line.
    let mut txn = String::from("\n");
    for i in 0..KEYS {
        txn.push_str(&format!("put before/{i:05} value-{i}\n"));
    }
    txn.push_str("\n\n");
    let mut cmd = etcdctl(&node0, &["txn"]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(txn.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("SUCCESS"),
        "{out:?}"
    );

    let endpoints = node0.client_url();
    let mut kills = Kills::default();
    let join = [
        "etcd",
        "join-learner",
        "--endpoints",
        &endpoints,
        "--timeout",
        "60s",
    ];
    let step = Step {
        args: &join,
        stages: JOIN_STAGES,
        trigger: JOIN_STAGES[0].0,
        window: JOIN_KILL_WINDOW,
    };
    kill_and_rerun(&node0, &node1, &step, rng, &mut kills);
    assert_eq!(
        members(&node0),
        [(node0.peer_url(), false), (node1.peer_url(), true)]
    );
    // The kubelet starts the member once its manifest is there. The kills go to promote
    // once the learner runs: before that promote only waits, reading.
    let _etcd1 = node1.start_etcd(&versions::require(version, Tool::Etcd));
    wait_started(&node0, &node1);
    let promote = [
        "etcd",
        "promote",
        "--endpoints",
        &endpoints,
        "--timeout",
        "60s",
    ];
    let step = Step {
        args: &promote,
        stages: PROMOTE_STAGES,
        trigger: "catching up",
        window: PROMOTE_KILL_WINDOW,
    };
    kill_and_rerun(&node0, &node1, &step, rng, &mut kills);

    // Converged: both voters, nothing else; quorum; the keys.
    assert_eq!(
        members(&node0),
        [(node0.peer_url(), false), (node1.peer_url(), false)]
    );
    run_ok(etcdctl(&node0, &["put", "after/write", "ok"]));
    let got = run_ok(etcdctl(&node0, &["get", "--prefix", "before/"]));
    let lines: Vec<&str> = got.lines().collect();
    let expected: Vec<String> = (0..KEYS)
        .flat_map(|i| [format!("before/{i:05}"), format!("value-{i}")])
        .collect();
    assert_eq!(lines, expected, "the keys written before");
    kills
}

fn tool_killed(version: EtcdVersion) {
    versions::require(version, Tool::Etcd);
    etcdctl_binary();
    let (runs, seed) = (runs(), seed());
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let (mut failures, mut kills) = (Vec::new(), Kills::default());
    for index in 0..runs {
        let mut run_rng = Rng::new(rng.next() | 1);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tool_killed_run(version, &mut run_rng)
        })) {
            Ok(k) => kills.merge(k),
            Err(panic) => failures.push(format!(
                "run {index}: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        }
    }
    // Past the harness's capture: CI's log carries the figures of passing tests too.
    let line = format!(
        "fault-suite: tool-killed etcd-{} runs={runs} failures={} seed={seed} kills={} {:?} ({:.0?})\n",
        version.version(),
        failures.len(),
        kills.total(),
        kills.0,
        started.elapsed()
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    assert!(
        failures.is_empty(),
        "tool-killed on etcd {}: {} of {runs} runs failed (FAULT_SEED={seed}):\n{}",
        version.version(),
        failures.len(),
        failures.join("\n")
    );
}

crate::etcd_matrix!(the_tool_killed_mid_join_converges_on_rerun => tool_killed);

/// `--replace` and `--rollback-on-timeout` through the binary (issue 14), on etcd 3.6.14:
/// the messages and exit codes a user sees. A learner that never starts: promote's
/// timeout names `--rollback-on-timeout` (exit 1), and with it (and `--stall-timeout`)
/// the learner is removed and the error says so. A name taken by a member that answers:
/// refused without `--replace` (naming it) and with it (naming the check); nothing
/// changes. A bad duration is a usage error (exit 2).
#[test]
fn replace_and_rollback_messages_and_exit_codes_etcd_3_6_14() {
    let version = EtcdVersion::V3_6_14;
    let etcd = versions::require(version, Tool::Etcd);
    etcdctl_binary();
    let tmp = tempfile::tempdir().unwrap();
    let nodes: Vec<Node> = (0..3)
        .map(|i| Node::on(tmp.path(), 166, version, i))
        .collect();
    run_ok(nodes[0].tool(&["certs", "all"]));
    for node in &nodes[1..] {
        std::fs::create_dir_all(node.cert_dir().join("etcd")).unwrap();
        for file in ["ca.crt", "ca.key"] {
            std::fs::copy(
                nodes[0].cert_dir().join("etcd").join(file),
                node.cert_dir().join("etcd").join(file),
            )
            .unwrap();
        }
        run_ok(node.tool(&["certs", "all"]));
    }
    run_ok(nodes[0].tool(&["etcd", "local"]));
    let _etcd0 = nodes[0].start_etcd(&etcd);
    wait_healthy(&nodes[0]);
    let endpoints = nodes[0].client_url();
    let failed = |cmd: Command, code: i32| -> String {
        let what = format!("{cmd:?}");
        let out = run(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{what}: {stderr}");
        stderr
    };
    let only_node0 = [(nodes[0].peer_url(), false)];

    // A learner that never starts (no kubelet runs node1's manifest).
    run_ok(nodes[1].tool(&["etcd", "join-learner", "--endpoints", &endpoints]));
    let stderr = failed(
        nodes[1].tool(&[
            "etcd",
            "promote",
            "--endpoints",
            &endpoints,
            "--timeout",
            "2s",
        ]),
        1,
    );
    for part in [
        "never started within 2",
        "remove-member --id",
        "--rollback-on-timeout",
    ] {
        assert!(stderr.contains(part), "{part:?} is not in:\n{stderr}");
    }
    assert_eq!(
        members(&nodes[0]),
        [(nodes[0].peer_url(), false), (nodes[1].peer_url(), true)]
    );
    let stderr = failed(
        nodes[1].tool(&[
            "etcd",
            "promote",
            "--endpoints",
            &endpoints,
            "--stall-timeout",
            "1s",
            "--rollback-on-timeout",
        ]),
        1,
    );
    for part in [
        "made no progress for 1",
        "(--stall-timeout)",
        "Removed the learner",
        "(--rollback-on-timeout)",
        "run the join again",
    ] {
        assert!(stderr.contains(part), "{part:?} is not in:\n{stderr}");
    }
    assert!(!stderr.contains("To roll the learner back"), "{stderr}");
    assert_eq!(members(&nodes[0]), only_node0);

    // node2 claims node0's name, while node0 answers.
    let join_as_node0 = |replace: bool| {
        let mut args = vec![
            "etcd",
            "join-learner",
            "--endpoints",
            &endpoints,
            "--node-name",
            "node0",
        ];
        if replace {
            args.push("--replace");
        }
        nodes[2].tool(&args)
    };
    let stderr = failed(join_as_node0(false), 1);
    for part in ["is already taken by member", "rerun with --replace"] {
        assert!(stderr.contains(part), "{part:?} is not in:\n{stderr}");
    }
    let stderr = failed(join_as_node0(true), 1);
    for part in [
        "refusing to replace member",
        "(node0) (--replace): it is not known to be down: it answers on its client URL",
        "Nothing was changed",
    ] {
        assert!(stderr.contains(part), "{part:?} is not in:\n{stderr}");
    }
    assert_eq!(members(&nodes[0]), only_node0);
    assert!(!nodes[2].manifest_dir().join("etcd.yaml").exists());

    // A bad duration: a usage error.
    let stderr = failed(
        nodes[1].tool(&[
            "etcd",
            "promote",
            "--endpoints",
            &endpoints,
            "--stall-timeout",
            "soon",
        ]),
        2,
    );
    assert!(stderr.contains("--stall-timeout"), "{stderr}");
}

const REPLACE_STAGES: &[(&str, &str)] = &[
    ("Removed the", "removed"),
    ("Checked the etcd cluster", "checked"),
    ("Announced new etcd member", "added"),
    ("was written", "manifest-written"),
];

/// (peer URL, hex ID) of every member, as etcdctl sees them.
fn member_ids(node0: &Node) -> Vec<(String, String)> {
    let out = run_ok(etcdctl(node0, &["member", "list", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut ids: Vec<(String, String)> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["peerURLs"][0].as_str().unwrap().to_string(),
                format!("{:x}", m["ID"].as_u64().unwrap()),
            )
        })
        .collect();
    ids.sort();
    ids
}

/// `join-learner --replace` SIGKILLed at random moments (seeded, `FAULT_SEED` replays),
/// half of them right after the line it prints once the old member is removed, so that
/// the kill lands between the removal and the add; then rerun. A one-voter cluster whose
/// learner node1 ran, died and was re-imaged (same name and address, empty data
/// directory). After every kill: node0 and at most one member with node1's peer URL. In
/// the end node1 is a new learner, and is promoted.
#[test]
fn replace_killed_between_removal_and_add_converges_etcd_3_6_14() {
    let version = EtcdVersion::V3_6_14;
    versions::require(version, Tool::Etcd);
    etcdctl_binary();
    let (runs, seed) = (runs(), seed());
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut kills = Kills::default();
    for _ in 0..runs {
        let mut run_rng = Rng::new(rng.next() | 1);
        kills.merge(replace_killed_run(version, &mut run_rng));
    }
    let line = format!(
        "fault-suite: replace-killed etcd-{} runs={runs} failures=0 seed={seed} kills={} {:?} ({:.0?})\n",
        version.version(),
        kills.total(),
        kills.0,
        started.elapsed()
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn replace_killed_run(version: EtcdVersion, rng: &mut Rng) -> Kills {
    let etcd = versions::require(version, Tool::Etcd);
    let tmp = tempfile::tempdir().unwrap();
    let node0 = Node::on(tmp.path(), 167, version, 0);
    let node1 = Node::on(tmp.path(), 167, version, 1);
    run_ok(node0.tool(&["certs", "all"]));
    std::fs::create_dir_all(node1.cert_dir().join("etcd")).unwrap();
    for file in ["ca.crt", "ca.key"] {
        std::fs::copy(
            node0.cert_dir().join("etcd").join(file),
            node1.cert_dir().join("etcd").join(file),
        )
        .unwrap();
    }
    run_ok(node1.tool(&["certs", "all"]));
    run_ok(node0.tool(&["etcd", "local"]));
    let _etcd0 = node0.start_etcd(&etcd);
    wait_healthy(&node0);
    let endpoints = node0.client_url();
    run_ok(node1.tool(&["etcd", "join-learner", "--endpoints", &endpoints]));
    let old = {
        let _etcd1 = node1.start_etcd(&etcd);
        wait_started(&node0, &node1);
        member_ids(&node0)
    };
    // node1's machine died and was re-imaged.
    std::fs::remove_dir_all(node1.dir.join("data")).unwrap();
    std::fs::remove_dir_all(node1.manifest_dir()).unwrap();

    let replace = [
        "etcd",
        "join-learner",
        "--endpoints",
        &endpoints,
        "--timeout",
        "60s",
        "--replace",
    ];
    let step = Step {
        args: &replace,
        stages: REPLACE_STAGES,
        trigger: "Removed the",
        // The two looks at the old member take a second.
        window: Duration::from_millis(1500),
    };
    let mut kills = Kills::default();
    kill_and_rerun(&node0, &node1, &step, rng, &mut kills);
    assert_eq!(
        members(&node0),
        [(node0.peer_url(), false), (node1.peer_url(), true)]
    );
    let new = member_ids(&node0);
    let node1_id = |ids: &[(String, String)]| {
        ids.iter()
            .find(|(u, _)| *u == node1.peer_url())
            .unwrap()
            .1
            .clone()
    };
    assert_ne!(
        node1_id(&old),
        node1_id(&new),
        "the old member is still there"
    );

    let _etcd1 = node1.start_etcd(&etcd);
    run_ok(node1.tool(&[
        "etcd",
        "promote",
        "--endpoints",
        &endpoints,
        "--timeout",
        "60s",
    ]));
    assert_eq!(
        members(&node0),
        [(node0.peer_url(), false), (node1.peer_url(), false)]
    );
    kills
}
