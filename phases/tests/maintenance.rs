//! Maintenance against real etcd (issue 14): defragmentation one member at a time under
//! a writer, alarms raised for real, leadership moved and a leader removed. Every cluster
//! is three TLS members started from the manifests our phases render.
//!
//! "One member at a time" is proven twice: from the tool's own events (start and end of
//! each Defragment call) and, independently, from each member's log, where etcd writes
//! "starting defragment" and "finished defragment" with a microsecond timestamp: no two
//! members' intervals may overlap, and the leader's comes last.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::faults::{self, Expected, Writer, WriterReport};
use common::EtcdVersion;
use etcd_client::{AlarmAction, AlarmOptions, AlarmType, Client};
use phases::maintenance::alarm::{self, DisarmOptions};
use phases::maintenance::defrag::{self, DefragOptions, Outcome, Scope};
use phases::maintenance::{leader, Event, MaintenanceError};
use phases::membership::remove::{self, RemoveOptions, RemoveOutcome};
use phases::membership::{health, status, AlarmKind, MemberId, MembershipError, Selector};

const TIMEOUT: Duration = Duration::from_secs(30);

fn defrag_options(scope: Scope, force: bool) -> DefragOptions {
    DefragOptions {
        scope,
        force,
        rpc_timeout: Duration::from_secs(60),
        health_timeout: TIMEOUT,
        dry_run: false,
    }
}

/// Three voters of a new cluster, healthy.
fn three_voters(v: EtcdVersion, id: u8) -> TestCluster {
    let c = TestCluster::new(v, id, 3);
    faults::start_voters(&c, 3);
    c
}

/// Free pages in every member's file: `rounds` overwrites of `keys` keys of 128 KiB,
/// then a compaction to the current revision, which frees all but the last round.
async fn fragment(kv: &mut Client, keys: usize, rounds: usize) {
    let value = vec![0x5au8; 128 * 1024];
    let mut revision = 0;
    for round in 0..rounds {
        for k in 0..keys {
            let mut v = value.clone();
            v[0] = round as u8;
            let r = kv.put(format!("frag/{k:03}"), v, None).await.expect("put");
            revision = r.header().unwrap().revision();
        }
    }
    kv.compact(
        revision,
        Some(etcd_client::CompactionOptions::new().with_physical()),
    )
    .await
    .expect("compact");
}

/// `(start, end)` of each defragmentation in node `n`'s log, in seconds since midnight
/// UTC plus the day (the timestamps are zap's `2026-12-02T07:03:09.123456Z`).
fn logged_defrags(c: &TestCluster, n: usize) -> Vec<(f64, f64)> {
    let log = std::fs::read_to_string(c.node(n).dir.join("etcd.log")).unwrap_or_default();
    let ts = |line: &str| -> f64 {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        let ts = v["ts"].as_str().expect("ts");
        let (date, time) = ts.split_once('T').expect("an ISO 8601 time");
        let day: f64 = date.replace('-', "").parse().expect("a date");
        let time = time.trim_end_matches('Z');
        let time = time.split(['+', '-']).next().unwrap();
        let mut parts = time.split(':');
        let h: f64 = parts.next().unwrap().parse().unwrap();
        let m: f64 = parts.next().unwrap().parse().unwrap();
        let s: f64 = parts.next().unwrap().parse().unwrap();
        day * 86400.0 + h * 3600.0 + m * 60.0 + s
    };
    // etcd 3.4 without `--logger=zap` (kubeadm's manifest sets none) logs through capnslog:
    // `2026-12-02 08:10:00.123456 N | etcdserver/api/v3rpc: starting to defragment ...`.
    let capnslog_ts = |line: &str| -> f64 {
        let stamp = line.get(..26).expect("a capnslog time stamp");
        ts(&serde_json::json!({ "ts": stamp.replace(' ', "T") }).to_string())
    };
    let mut out = Vec::new();
    let mut start = None;
    for line in log.lines() {
        let json = line.starts_with('{');
        if json && line.contains("\"msg\":\"starting defragment\"") {
            start = Some(ts(line));
        } else if json && line.contains("\"msg\":\"finished defragment\"") {
            out.push((start.take().expect("a start before the end"), ts(line)));
        } else if !json && line.contains(": starting to defragment the storage backend") {
            start = Some(capnslog_ts(line));
        } else if !json && line.contains(": finished defragmenting the storage backend") {
            out.push((
                start.take().expect("a start before the end"),
                capnslog_ts(line),
            ));
        }
    }
    out
}

/// Every defragmentation logged by any member, `(start, end, node)`, sorted by start;
/// panics when two overlap.
fn assert_logged_one_at_a_time(c: &TestCluster) -> Vec<(f64, f64, usize)> {
    let mut all: Vec<(f64, f64, usize)> = (0..c.nodes.len())
        .flat_map(|n| {
            logged_defrags(c, n)
                .into_iter()
                .map(move |(s, e)| (s, e, n))
        })
        .collect();
    all.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    for w in all.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "node{} defragmented ({:.6}..{:.6}) while node{} did ({:.6}..{:.6})",
            w[1].2,
            w[1].0,
            w[1].1,
            w[0].2,
            w[0].0,
            w[0].1
        );
    }
    all
}

/// The tool's own start/end of each member, in order; panics when two overlap.
fn assert_events_one_at_a_time(events: &[(Instant, Event)]) -> Vec<MemberId> {
    let mut order = Vec::new();
    let mut open: Option<MemberId> = None;
    for (_, e) in events {
        match e {
            Event::DefragStarted { id, .. } => {
                assert_eq!(open, None, "{id} started while {open:?} was defragmenting");
                open = Some(*id);
                order.push(*id);
            }
            Event::DefragFinished { id, .. } => {
                assert_eq!(open, Some(*id), "{id} finished but was not started");
                open = None;
            }
            _ => {}
        }
    }
    order
}

/// Quorum kept and at most one election while the writer ran: every put committed, one
/// that needed another attempt committed in a later term than the put before it, and
/// the last term is at most one above the first.
///
/// What a failed attempt may say: an election error (as `assert_quorum_never_lost`
/// counts them), or the client's own deadline ("Timeout expired"): raft drops a
/// proposal that reaches the old leader during a transfer, and the follower that
/// forwarded it waits for it until the client gives up. `member_leaves`: a member left
/// the cluster meanwhile, and attempts through it failed for that reason (connection
/// refused or closed, its raft stopped, or no answer before the client's deadline),
/// which needs no election.
fn assert_at_most_one_election(w: &WriterReport, what: &str, member_leaves: bool) {
    let election = |e: &str| {
        [
            "leader changed",
            "no leader",
            "raft proposal dropped",
            "no answer within",
            "timed out",
            "Timeout expired",
        ]
        .iter()
        .any(|m| e.contains(m))
    };
    let gone = |e: &str| {
        member_leaves
            && [
                "tcp connect error",
                "Connection refused",
                "onnection reset",
                "ConnectionReset",
                "connection closed",
                "peer closed connection",
                "broken pipe",
                // The removed member stops its raft node with the put in flight.
                "raft: stopped",
                "Timeout expired",
            ]
            .iter()
            .any(|m| e.contains(m))
    };
    assert!(!w.puts.is_empty(), "{what}: the writer made no put");
    let mut term = w.initial_term;
    for put in &w.puts {
        let committed = put.term.unwrap_or_else(|| {
            panic!(
                "{what}: quorum lost: {} never committed: {:?}",
                put.key, put.failed_attempts
            )
        });
        let elections: Vec<&String> = put
            .failed_attempts
            .iter()
            .filter(|e| election(e) && !gone(e))
            .collect();
        assert!(
            put.failed_attempts.iter().all(|e| election(e) || gone(e)),
            "{what}: {} failed with something other than an election: {:?}",
            put.key,
            put.failed_attempts
        );
        assert!(
            elections.is_empty() || committed > term,
            "{what}: {} needed retries ({:?}) but no election happened (term {term} before, {committed} after)",
            put.key,
            put.failed_attempts
        );
        term = committed;
    }
    assert!(
        term <= w.initial_term + 1,
        "{what}: the writer saw terms {} to {term}: more than one election",
        w.initial_term
    );
}

async fn defrag_cluster_under_a_writer(v: EtcdVersion) {
    let c = three_voters(v, 150);
    let all = [0, 1, 2];
    let mut kv = faults::kv_client(&c, &all).await;
    let keys = faults::write_keys(&kv, "before", 100).await;
    fragment(&mut kv, 40, 3).await;
    let (leader_node, leader_id, _) = faults::leader(&c, &all).await;

    let writer = Writer::start(&c, &all).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = Mutex::new(Vec::new());
    let client = faults::client_via(&c, &all, 0);
    let report = defrag::defrag(&client, &defrag_options(Scope::Cluster, false), &mut |e| {
        events.lock().unwrap().push((Instant::now(), e))
    })
    .await
    .unwrap_or_else(|e| panic!("defrag --cluster: {e}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let written = writer.stop().await;
    written.assert_quorum_never_lost();

    // The order: followers, then the leader; each one reclaimed space.
    let roles: Vec<&str> = report.members.iter().map(|m| m.role).collect();
    assert_eq!(roles, ["follower", "follower", "leader"], "{report:#?}");
    assert_eq!(report.members[2].id, leader_id);
    for m in &report.members {
        let Outcome::Defragmented {
            db_size_before,
            db_size_after,
            ..
        } = m.outcome
        else {
            panic!("{} was not defragmented: {:?}", m.name, m.outcome);
        };
        assert!(
            db_size_after + (4 << 20) < db_size_before,
            "{}: {db_size_before} -> {db_size_after}: less than 4 MiB reclaimed",
            m.name
        );
    }
    let order = assert_events_one_at_a_time(&events.lock().unwrap());
    assert_eq!(
        order,
        report.members.iter().map(|m| m.id).collect::<Vec<_>>()
    );
    let logged = assert_logged_one_at_a_time(&c);
    assert_eq!(logged.len(), 3, "{logged:?}");
    assert_eq!(logged[2].2, leader_node, "the leader last: {logged:?}");

    let mut keys = keys;
    keys.extend(written.keys());
    faults::assert_invariants(
        &c,
        &all,
        Expected {
            voters: &all,
            learners: &[],
        },
        &keys,
    )
    .await;

    // A voter down: refused, naming it, and nothing is defragmented.
    let down = (leader_node + 1) % 3;
    c.kill(down);
    let up: Vec<usize> = all.iter().copied().filter(|&n| n != down).collect();
    let client = faults::client_via(&c, &up, up[0]);
    let err = defrag::defrag(&client, &defrag_options(Scope::Cluster, false), &mut |_| {})
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, MaintenanceError::MembersDown { .. })
            && message.contains(&format!("(node{down})"))
            && message.contains("--force"),
        "{message}"
    );
    assert_eq!(assert_logged_one_at_a_time(&c).len(), 3, "nothing more");

    // --force: the two that answer, one at a time, the leader last; the down one skipped.
    let events = Mutex::new(Vec::new());
    let report = defrag::defrag(&client, &defrag_options(Scope::Cluster, true), &mut |e| {
        events.lock().unwrap().push((Instant::now(), e))
    })
    .await
    .unwrap_or_else(|e| panic!("defrag --cluster --force: {e}"));
    let outcomes: Vec<(String, &str)> = report
        .members
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                match m.outcome {
                    Outcome::Defragmented { .. } => "defragmented",
                    Outcome::Skipped { .. } => "skipped",
                    Outcome::WouldDefragment { .. } => "would",
                },
            )
        })
        .collect();
    assert_eq!(
        outcomes[0],
        (format!("node{down}"), "skipped"),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1].1, "defragmented");
    assert_eq!(outcomes[2].1, "defragmented");
    assert_eq!(report.members[2].role, "leader", "{report:#?}");
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|(_, e)| matches!(e, Event::Forced { .. })));
    assert_events_one_at_a_time(&events.lock().unwrap());
    assert_eq!(assert_logged_one_at_a_time(&c).len(), 5);
}

crate::etcd_matrix!(async defrag_under_a_writer => defrag_cluster_under_a_writer);

/// A quota of 8 MiB on every member, through the configuration's extraArgs.
fn with_quota(c: &mut TestCluster, bytes: u64) {
    for node in &mut c.nodes {
        let path = node.dir.join("kubeadm.yaml");
        let yaml = std::fs::read_to_string(&path).unwrap();
        let tag = format!("    imageTag: {}\n", c.version.image_tag());
        assert!(yaml.contains(&tag), "{yaml}");
        let yaml = yaml.replace(
            &tag,
            &format!(
                "{tag}    extraArgs:\n    - name: quota-backend-bytes\n      value: \"{bytes}\"\n"
            ),
        );
        std::fs::write(&path, &yaml).unwrap();
        node.config = phases::config::load_file(&path).unwrap();
    }
}

/// NOSPACE raised for real, listed, refused until the space is found, cleared with
/// compaction and defragmentation; writes succeed again. Then CORRUPT (raised through
/// the API: a real corruption needs a damaged file) is listed and not disarmed blindly.
async fn alarms(v: EtcdVersion, id: u8) {
    let mut c = TestCluster::new(v, id, 3);
    with_quota(&mut c, 8 << 20);
    faults::start_voters(&c, 3);
    let all = [0, 1, 2];
    let mut kv = faults::kv_client(&c, &all).await;
    let client = faults::client_via(&c, &all, 0);

    // The same key overwritten until etcd refuses: history fills the quota.
    let value = vec![0xa5u8; 256 * 1024];
    let mut refused = None;
    for i in 0..200 {
        match kv.put("fill", value.clone(), None).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some((i, e.to_string()));
                break;
            }
        }
    }
    let (puts, error) = refused.expect("the quota is reached");
    assert!(error.contains("database space exceeded"), "{error}");
    assert!(puts > 10, "{puts} puts");

    let listed = alarm::list(&client).await.unwrap();
    assert!(!listed.alarms.is_empty());
    assert!(
        listed.alarms.iter().all(|a| a.alarm == AlarmKind::NoSpace
            && a.member.starts_with("node")
            && a.advice.contains("--compact-and-defrag")),
        "{listed:#?}"
    );
    let report = health::check(&client).await.unwrap();
    assert!(!report.healthy);
    assert_eq!(report.alarms, ["NOSPACE"]);
    assert!(
        report.problems.iter().all(|p| !p.starts_with("no quorum")),
        "{:?}",
        report.problems
    );
    let status = status::collect(&client).await.unwrap();
    assert!(status.members.iter().all(|m| !m.alarms.is_empty()));

    let opts = |compact_and_defrag| DisarmOptions {
        compact_and_defrag,
        corrupt_resolved: false,
        force: false,
        rpc_timeout: Duration::from_secs(60),
        health_timeout: TIMEOUT,
        dry_run: false,
    };
    // Not compacted: refused, and the alarm stays.
    let err = alarm::disarm(&client, &opts(false), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("the key history is not compacted"),
        "{err}"
    );
    assert!(kv.put("after", "x", None).await.is_err());

    let events = Mutex::new(Vec::new());
    let done = alarm::disarm(&client, &opts(true), &mut |e| {
        events.lock().unwrap().push((Instant::now(), e))
    })
    .await
    .unwrap_or_else(|e| panic!("disarm --compact-and-defrag: {e}"));
    // Every alarm listed before (members may raise theirs late: those too).
    for a in &listed.alarms {
        assert!(done.disarmed.contains(a), "{a:?} in {:#?}", done.disarmed);
    }
    assert!(done.compacted_to.is_some());
    let defragged = done.defrag.expect("defragmented");
    assert_eq!(defragged.members.len(), 3);
    assert!(defragged.reclaimed() > 3 * (4 << 20), "{defragged:#?}");
    assert_events_one_at_a_time(&events.lock().unwrap());
    assert_logged_one_at_a_time(&c);

    kv.put("after", "x", None)
        .await
        .expect("writes succeed again");
    assert!(alarm::list(&client).await.unwrap().alarms.is_empty());
    assert!(health::check(&client).await.unwrap().healthy);

    // CORRUPT: listed with what to do, never disarmed without --corrupt-resolved.
    let (_, leader_id, _) = faults::leader(&c, &all).await;
    let mut options = AlarmOptions::new();
    options.with_member(leader_id.0);
    kv.alarm(AlarmAction::Activate, AlarmType::Corrupt, Some(options))
        .await
        .expect("activate CORRUPT");
    let listed = alarm::list(&client).await.unwrap();
    assert_eq!(listed.alarms.len(), 1, "{listed:#?}");
    assert_eq!(listed.alarms[0].alarm, AlarmKind::Corrupt);
    assert!(listed.alarms[0].advice.contains("never disarm blindly"));
    let err = alarm::disarm(&client, &opts(false), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, MaintenanceError::CorruptNotResolved { .. })
            && err.to_string().contains("--corrupt-resolved"),
        "{err}"
    );
    assert_eq!(alarm::list(&client).await.unwrap().alarms.len(), 1);
    let resolved = DisarmOptions {
        corrupt_resolved: true,
        ..opts(false)
    };
    let done = alarm::disarm(&client, &resolved, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(done.disarmed.len(), 1);
    kv.put("after-corrupt", "x", None)
        .await
        .expect("writes succeed again");
}

crate::etcd_matrix!(async nospace_is_cleared_by_compaction_and_defrag => |v| alarms(v, 151));

/// Leadership moved to a follower, refused to a learner, then the leader removed: it
/// hands leadership on first. A writer sees at most one election for each.
async fn leadership(v: EtcdVersion) {
    let c = TestCluster::new(v, 152, 4);
    faults::start_voters(&c, 3);
    let all = [0, 1, 2];
    let (old, old_id, _) = faults::leader(&c, &all).await;
    let target = (old + 1) % 3;
    let client = faults::client_via(&c, &all, 0);

    let writer = Writer::start(&c, &all).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moved = leader::move_leader(
        &client,
        &Selector::Name(format!("node{target}")),
        TIMEOUT,
        &mut |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("move-leader: {e}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let written = writer.stop().await;
    assert_at_most_one_election(&written, "move-leader", false);
    assert_eq!((moved.from, moved.already), (old_id, false));
    let (now, now_id, _) = faults::leader(&c, &all).await;
    assert_eq!((now, now_id), (target, moved.to));

    // Again: nothing to do.
    let again = leader::move_leader(&client, &Selector::Id(now_id), TIMEOUT, &mut |_| {})
        .await
        .unwrap();
    assert!(again.already);

    // A learner cannot lead: refused before etcd is asked. (Node 3 is added, never
    // started, then rolled back.)
    let (joined, _) = c
        .join(3, TIMEOUT, &Mutex::new(Vec::new()))
        .await
        .unwrap_or_else(|e| panic!("join node3: {e}"));
    let learner = joined.member_id.expect("added");
    let err = leader::move_leader(&client, &Selector::Id(learner), TIMEOUT, &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, MaintenanceError::BadTarget { .. })
            && err.to_string().contains("is a learner"),
        "{err}"
    );
    let remove_opts = |id| RemoveOptions {
        selector: Selector::Id(id),
        force: false,
        dry_run: false,
        timeout: TIMEOUT,
    };
    remove::remove(&client, &remove_opts(learner))
        .await
        .unwrap();
    assert_eq!(faults::leader(&c, &all).await.1, now_id, "untouched");

    // The leader removed: leadership goes to the most up-to-date other voter first.
    let stay: Vec<usize> = all.iter().copied().filter(|&n| n != target).collect();
    // Through every member: the writer starts from the leader's term.
    let writer = Writer::start(&c, &all).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = Mutex::new(Vec::new());
    let removed = remove::remove_reporting(&client, &remove_opts(now_id), &mut |e| {
        events.lock().unwrap().push(e)
    })
    .await
    .unwrap_or_else(|e: MembershipError| panic!("remove the leader: {e}"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = writer.stop().await;
    assert_at_most_one_election(&written, "removing the leader", true);
    assert!(
        matches!(removed, RemoveOutcome::Removed { id, was_learner: false, .. } if id == now_id),
        "{removed:?}"
    );
    let events = events.into_inner().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::LeaderMoved { from, .. } if from.contains(&format!("node{target}")))),
        "{events:?}"
    );
    let (heir, _, _) = faults::leader(&c, &stay).await;
    assert!(stay.contains(&heir));
    faults::assert_invariants(
        &c,
        &stay,
        Expected {
            voters: &stay,
            learners: &[],
        },
        &written.keys(),
    )
    .await;
}

crate::etcd_matrix!(async move_leader_and_remove_the_leader => leadership);

/// The leadership logic of `remove-member` and `move-leader` against the scripted etcd
/// (`membership::fake`, a paused clock): which member gets leadership, and what is
/// refused before etcd is asked.
mod seam {
    use std::time::Duration;

    use phases::maintenance::{leader, Event, MaintenanceError};
    use phases::membership::fake::{self, Call, FakeCluster};
    use phases::membership::remove::{self, RemoveOptions, RemoveOutcome};
    use phases::membership::Selector;

    fn remove_options(selector: Selector, force: bool) -> RemoveOptions {
        RemoveOptions {
            selector,
            force,
            dry_run: false,
            timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn removing_the_leader_hands_leadership_to_the_most_up_to_date_voter_first() {
        let fake = FakeCluster::new(3, "3.6.14");
        // node2 has applied more than node1: it inherits.
        fake.with(|s| {
            s.member_mut(fake::node_id(1)).applied_index -= 10;
        });
        let mut events = Vec::new();
        let removed = remove::remove_reporting(
            &fake,
            &remove_options(Selector::Id(fake::node_id(0)), false),
            &mut |e| events.push(e),
        )
        .await
        .unwrap();
        assert!(
            matches!(removed, RemoveOutcome::Removed { .. }),
            "{removed:?}"
        );
        assert_eq!(fake.with(|s| s.leader), Some(fake::node_id(2)));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::LeaderMoved { to, .. } if to.contains("node2"))),
            "{events:?}"
        );
        assert_eq!(
            fake.calls(),
            [Call::Remove {
                id: fake::node_id(0)
            }]
        );

        // A follower goes without any move.
        let mut events = Vec::new();
        remove::remove_reporting(
            &fake,
            &remove_options(Selector::Id(fake::node_id(1)), false),
            &mut |e| events.push(e),
        )
        .await
        .unwrap();
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(fake.with(|s| s.leader), Some(fake::node_id(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_goes_only_to_a_voter_that_serves() {
        let fake = FakeCluster::new(3, "3.5.30");
        fake.with(|s| s.kill(fake::node_id(2)));
        let err = leader::move_leader(
            &fake,
            &Selector::Name("node2".into()),
            Duration::from_secs(5),
            &mut |_| {},
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, MaintenanceError::BadTarget { .. })
                && err
                    .to_string()
                    .starts_with("cannot move leadership to a2 (node2): it does not answer"),
            "{err}"
        );
        let err = leader::move_leader(
            &fake,
            &Selector::Name("node9".into()),
            Duration::from_secs(5),
            &mut |_| {},
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no etcd member matches member name \"node9\""
        );
        assert_eq!(fake.with(|s| s.leader), Some(fake::node_id(0)));

        let moved = leader::move_leader(
            &fake,
            &Selector::Name("node1".into()),
            Duration::from_secs(5),
            &mut |_| {},
        )
        .await
        .unwrap();
        assert_eq!((moved.to, moved.already), (fake::node_id(1), false));
        assert_eq!(fake.with(|s| s.leader), Some(fake::node_id(1)));
    }
}
