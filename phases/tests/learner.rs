//! The learner lifecycle on real etcd, 3.4.23 and 3.5.1: members join as learners, are
//! promoted once they have caught up and answer, and every failure leaves quorum intact
//! and can be rolled back.
//!
//! Every member runs from the manifest our phases wrote (see `common::cluster`); timeouts
//! are short so that the file runs in a couple of minutes.

mod apiserver;
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::EtcdVersion;
use phases::membership::join::{AddOutcome, ManifestStep};
use phases::membership::promote::{self, PromoteOutcome};
use phases::membership::remove::{self, RemoveOptions, RemoveOutcome};
use phases::membership::{
    discovery, health, ignore_events, EtcdClient, Event, MemberId, MembershipError, Selector,
    DEFAULT_RPC_TIMEOUT,
};

const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Every test runs inside this bound, so a hang fails instead of stalling the suite.
async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("the test finished within 120 s");
}

fn events() -> Mutex<Vec<Event>> {
    Mutex::new(Vec::new())
}

/// Joins node `n` (through node 0), starts it from its manifest, promotes it.
async fn join_start_promote(c: &TestCluster, n: usize) -> (MemberId, Vec<Event>) {
    let log = events();
    let (joined, step) = c
        .join(n, JOIN_TIMEOUT, &log)
        .await
        .unwrap_or_else(|e| panic!("join node{n}: {e}"));
    assert!(matches!(step, ManifestStep::Written { .. }), "{step:?}");
    c.start(n);
    let client = c.client(0, n);
    let promoted = promote::promote(&client, &c.promote_options(n, PROMOTE_TIMEOUT), &mut |e| {
        log.lock().unwrap().push(e)
    })
    .await
    .unwrap_or_else(|e| panic!("promote node{n}: {e}\n{}", c.log_tail(n)));
    assert_eq!(Some(promoted.id), joined.member_id);
    assert_eq!(promoted.outcome, PromoteOutcome::Promoted);
    eprintln!(
        "{}: node{n} promoted {:?} after it looked ready ({:?} in all)",
        c.version, promoted.since_ready, promoted.waited
    );
    (promoted.id, log.into_inner().unwrap())
}

fn voters_and_learners(members: &[(String, String, bool)]) -> (Vec<&str>, Vec<&str>) {
    let voters = members
        .iter()
        .filter(|m| !m.2)
        .map(|m| m.1.as_str())
        .collect();
    let learners = members
        .iter()
        .filter(|m| m.2)
        .map(|m| m.1.as_str())
        .collect();
    (voters, learners)
}

// 1 -> 3 members; reruns change nothing; etcdctl confirms; remove-member's quorum rule.
async fn one_to_three(version: EtcdVersion, test_id: u8) {
    let c = TestCluster::new(version, test_id, 3);
    common::require_etcdctl(common::cluster::ETCDCTL);
    c.bootstrap();
    let (id1, _) = join_start_promote(&c, 1).await;
    let (id2, events2) = join_start_promote(&c, 2).await;
    assert!(
        events2
            .iter()
            .any(|e| matches!(e, Event::Progress { percent, .. } if *percent >= 90.0)),
        "{events2:?}"
    );

    // etcdctl, with our healthcheck-client certificate, sees three started voters.
    let members = c.etcdctl_members(2);
    assert_eq!(
        voters_and_learners(&members),
        (vec!["node0", "node1", "node2"], vec![]),
        "{members:?}"
    );
    assert!(
        members.iter().any(|m| m.0 == id1.to_string())
            && members.iter().any(|m| m.0 == id2.to_string())
    );
    let report = health::check(&c.client(0, 0)).await.unwrap();
    assert!(
        report.healthy && report.voters == 3 && report.healthy_voters == 3,
        "{report:?}"
    );
    // The only warning: releases 3.5.1 to 3.5.19 lose promotions on the way to 3.6,
    // which every member of this cluster runs, or none does.
    let version = phases::membership::version::parse_etcd_version(version.version()).unwrap();
    if phases::membership::version::loses_promotions_on_upgrade(&version) {
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        for id in [id1, id2] {
            assert!(
                report.warnings[0].contains(&format!("member {id} (node")),
                "{:?}",
                report.warnings
            );
        }
        assert!(report.warnings[0].contains("Upgrade every member to 3.5.24 or newer first"));
    } else {
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    // Rerunning join-learner and promote after success changes nothing: the member is
    // reused, the manifest (bytes and mtime) stays, no member is added or promoted.
    for n in [1, 2] {
        let manifest = c.node(n).manifest_path();
        let before = (
            std::fs::read(&manifest).unwrap(),
            std::fs::metadata(&manifest).unwrap().modified().unwrap(),
        );
        let log = events();
        let (joined, step) = c.join(n, JOIN_TIMEOUT, &log).await.unwrap();
        assert_eq!(
            joined.outcome,
            AddOutcome::Reused {
                is_learner: false,
                started: true
            }
        );
        assert!(matches!(step, ManifestStep::Kept { .. }), "{step:?}");
        let after = (
            std::fs::read(&manifest).unwrap(),
            std::fs::metadata(&manifest).unwrap().modified().unwrap(),
        );
        assert!(before == after, "node{n}'s manifest changed");
        let again = promote::promote(
            &c.client(0, n),
            &c.promote_options(n, PROMOTE_TIMEOUT),
            &mut ignore_events(),
        )
        .await
        .unwrap();
        assert_eq!(again.outcome, PromoteOutcome::AlreadyVoter);
    }
    assert_eq!(c.etcdctl_members(0), members);

    // A voter whose removal would leave too few healthy voters is refused: with node2
    // down, removing node1 leaves node0 and the dead node2, one of the two needed.
    c.kill(2);
    let client = c.client(0, 0);
    let err = remove::remove(
        &client,
        &RemoveOptions {
            selector: Selector::Name("node1".into()),
            force: false,
            dry_run: false,
            timeout: std::time::Duration::from_secs(30),
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MembershipError::QuorumAtRisk { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("1 are started and healthy but 2 are needed"),
        "{err}"
    );
    // Removing the dead one is fine, and doing it twice too.
    for expected_removed in [true, false] {
        let outcome = remove::remove(
            &client,
            &RemoveOptions {
                selector: Selector::Id(id2),
                force: false,
                dry_run: false,
                timeout: std::time::Duration::from_secs(30),
            },
        )
        .await
        .unwrap();
        assert_eq!(
            matches!(outcome, RemoveOutcome::Removed { .. }),
            expected_removed,
            "{outcome:?}"
        );
    }
    c.etcdctl_put(0, "still-writable");
}

crate::etcd_matrix!(async one_to_three_members_through_learners => |v| bounded(one_to_three(v, 100)));

// The add landed, then the process died before writing the manifest; a rerun converges.
async fn interrupted_join(version: EtcdVersion, test_id: u8) {
    let c = TestCluster::new(version, test_id, 2);
    c.bootstrap();
    let client = c.client(0, 1);
    let first = phases::membership::join::add_learner(
        &client,
        &c.join_options(1, JOIN_TIMEOUT),
        &mut ignore_events(),
    )
    .await
    .unwrap();
    assert_eq!(first.outcome, AddOutcome::Added);
    assert!(!c.node(1).manifest_path().exists());

    let log = events();
    let (joined, step) = c.join(1, JOIN_TIMEOUT, &log).await.unwrap();
    assert_eq!(joined.member_id, first.member_id);
    assert_eq!(
        joined.outcome,
        AddOutcome::Reused {
            is_learner: true,
            started: false
        }
    );
    assert!(matches!(step, ManifestStep::Written { .. }));
    let manifest = std::fs::read_to_string(c.node(1).manifest_path()).unwrap();
    assert!(
        manifest.contains("--initial-cluster-state=existing"),
        "{manifest}"
    );
    // Every member, in the member list's order (etcd sorts it by ID).
    let line = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("- --initial-cluster="))
        .unwrap_or_else(|| panic!("{manifest}"));
    let mut entries: Vec<&str> = line.split(',').collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            format!("node0={}", c.node(0).peer_url()),
            format!("node1={}", c.node(1).peer_url())
        ],
        "{manifest}"
    );

    c.start(1);
    let p = promote::promote(
        &client,
        &c.promote_options(1, PROMOTE_TIMEOUT),
        &mut ignore_events(),
    )
    .await
    .unwrap();
    assert_eq!(Some(p.id), first.member_id);
    let list = client.member_list().await.unwrap();
    assert_eq!(list.members.len(), 2);
    assert!(list.members.iter().all(|m| !m.is_learner && m.started()));
}

crate::etcd_matrix!(async interrupted_join_converges_on_rerun => |v| bounded(interrupted_join(v, 102)));

// Two joins at once: etcd takes one learner at a time, so one waits ("too many learner
// members") and then "unhealthy cluster" for a few seconds after the first promotion.
async fn two_joins(version: EtcdVersion, test_id: u8) {
    let c = TestCluster::new(version, test_id, 3);
    common::require_etcdctl(common::cluster::ETCDCTL);
    c.bootstrap();
    let c = Arc::new(c);
    let tasks: Vec<_> = [1, 2]
        .into_iter()
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move {
                let (id, events) = join_start_promote(&c, n).await;
                (id, events, Instant::now())
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("the join task"));
    }
    // One of them waited: for the other learner ("too many learner members"), for etcd's
    // strict reconfiguration check after the other's promotion ("unhealthy cluster"), or
    // for an add that etcd held while the other one went through.
    let waited = results
        .iter()
        .filter(|(_, events, _)| events.iter().any(|e| matches!(e, Event::Retrying { .. })))
        .count();
    assert!(waited >= 1, "{results:?}");
    for (id, events, _) in &results {
        let retries: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Event::Retrying {
                    message, elapsed, ..
                } => Some(format!("{elapsed:.1?} {message}")),
                _ => None,
            })
            .collect();
        eprintln!("{version}: {id} retried {retries:?}");
    }
    let members = c.etcdctl_members(0);
    assert_eq!(
        voters_and_learners(&members),
        (vec!["node0", "node1", "node2"], vec![]),
        "{members:?}"
    );
}

crate::etcd_matrix!(async two_joins_at_once_both_end_as_voters => |v| bounded(two_joins(v, 104)));

// Promote before the learner's process exists: it waits, then promotes.
async fn promote_before_start(version: EtcdVersion, test_id: u8) {
    let c = TestCluster::new(version, test_id, 2);
    c.bootstrap();
    c.join(1, JOIN_TIMEOUT, &events()).await.unwrap();
    let c = Arc::new(c);
    let log = Arc::new(events());
    let task = {
        let (c, log) = (c.clone(), log.clone());
        tokio::spawn(async move {
            promote::promote(
                &c.client(0, 1),
                &c.promote_options(1, PROMOTE_TIMEOUT),
                &mut |e| log.lock().unwrap().push(e),
            )
            .await
        })
    };
    // Start the learner only once promote has seen it not started and said so: the
    // order the test is about, whatever the machine's speed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::WaitingForStart { .. }))
    {
        assert!(
            !task.is_finished() && Instant::now() < deadline,
            "promote never reported waiting for the start: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!task.is_finished());
    c.start(1);
    let p = task
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", c.log_tail(1)));
    assert_eq!(p.outcome, PromoteOutcome::Promoted);
    let log = log.lock().unwrap();
    let order: Vec<&str> = log
        .iter()
        .filter_map(|e| match e {
            Event::WaitingForStart { .. } => Some("waiting"),
            Event::Started { .. } => Some("started"),
            Event::Promoted { .. } => Some("promoted"),
            _ => None,
        })
        .collect();
    let first = |what| {
        order
            .iter()
            .position(|o| *o == what)
            .unwrap_or_else(|| panic!("no {what}: {log:?}"))
    };
    assert!(
        first("waiting") < first("started") && first("started") < first("promoted"),
        "{order:?}"
    );
}

crate::etcd_matrix!(async promote_started_before_the_learner_waits => |v| bounded(promote_before_start(v, 106)));

// A learner that never starts: "never started", quorum untouched, remove-member rolls it back.
async fn never_started(version: EtcdVersion, test_id: u8) {
    let c = TestCluster::new(version, test_id, 2);
    common::require_etcdctl(common::cluster::ETCDCTL);
    c.bootstrap();
    let (joined, _) = c.join(1, JOIN_TIMEOUT, &events()).await.unwrap();
    let client = c.client(0, 0);
    let started = Instant::now();
    let err = promote::promote(
        &client,
        &c.promote_options(1, Duration::from_secs(2)),
        &mut ignore_events(),
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, MembershipError::NeverStarted { .. }), "{err}");
    assert!(err.to_string().contains("never started within 2"), "{err}");
    assert_eq!(err.rollback_id(), joined.member_id);

    // Quorum untouched: the one voter still commits writes on its own.
    c.etcdctl_put(0, "written-while-a-learner-is-dead");
    let report = health::check(&client).await.unwrap();
    assert!(
        report.healthy && report.voters == 1 && report.learners == 1,
        "{report:?}"
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("has not started")),
        "{:?}",
        report.warnings
    );

    let opts = RemoveOptions {
        selector: Selector::Id(joined.member_id.unwrap()),
        force: false,
        dry_run: false,
        timeout: std::time::Duration::from_secs(30),
    };
    let removed = remove::remove(&client, &opts).await.unwrap();
    assert!(
        matches!(
            removed,
            RemoveOutcome::Removed {
                was_learner: true,
                ..
            }
        ),
        "{removed:?}"
    );
    assert!(matches!(
        remove::remove(&client, &opts).await.unwrap(),
        RemoveOutcome::NotAMember { .. }
    ));
    assert_eq!(
        voters_and_learners(&c.etcdctl_members(0)),
        (vec!["node0"], vec![])
    );
}

crate::etcd_matrix!(async a_learner_that_never_starts_times_out_and_rolls_back => |v| bounded(never_started(v, 108)));

// The dangerous case seen on 3.4.23: a one-member cluster, a learner that caught up and
// then died. etcd would promote it (two voters, one dead: no quorum); we must not.
async fn killed_after_catch_up(version: EtcdVersion, test_id: u8) {
    let c = TestCluster::new(version, test_id, 2);
    common::require_etcdctl(common::cluster::ETCDCTL);
    c.bootstrap();
    for i in 0..20 {
        c.etcdctl_put(0, &format!("key-{i}"));
    }
    let (joined, _) = c.join(1, JOIN_TIMEOUT, &events()).await.unwrap();
    c.start(1);
    c.wait_healthy(1);
    let client = c.client(0, 0);
    // Caught up: the learner has applied everything the leader has committed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leader = client.status(&c.node(0).client_url()).await.unwrap();
        let learner = client.status(&c.node(1).client_url()).await.unwrap();
        assert!(learner.is_learner);
        if learner.raft_applied_index >= leader.raft_index {
            break;
        }
        assert!(Instant::now() < deadline, "the learner did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.kill(1);

    let err = promote::promote(
        &client,
        &c.promote_options(1, Duration::from_secs(3)),
        &mut ignore_events(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MembershipError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().contains("refusing to promote the learner"),
        "{err}"
    );
    // The metrics listener was asked as well (the manifest is this node's): refused.
    assert!(
        err.to_string().contains("nor on its metrics listener"),
        "{err}"
    );
    assert_eq!(err.rollback_id(), joined.member_id);

    // Still one voter with quorum, the dead member still a learner.
    c.etcdctl_put(0, "still-writable");
    let members = c.etcdctl_members(0);
    assert_eq!(
        voters_and_learners(&members),
        (vec!["node0"], vec!["node1"]),
        "{members:?}"
    );
}

crate::etcd_matrix!(async a_learner_killed_after_catching_up_is_not_promoted => |v| bounded(killed_after_catch_up(v, 110)));

// etcd 3.4 and 3.5 promote a caught-up learner that has died; 3.5.1 is the release the
// benchmark and the original reproduction use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_killed_after_catching_up_is_not_promoted_etcd_3_5_1() {
    bounded(killed_after_catch_up(EtcdVersion::V3_5_1, 111)).await;
}

// --kubeconfig discovery: the etcd Pods' advertise-client-urls annotation, served by the
// in-process API server, leads to the real cluster; the join then runs through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_discovery_finds_the_cluster() {
    bounded(async {
        let c = TestCluster::new(EtcdVersion::V3_5, 112, 2);
        c.bootstrap();
        let server = apiserver::TestApiServer::start().await;
        server.insert_pod(serde_json::json!({
            "metadata": {
                "name": "etcd-node0",
                "namespace": "kube-system",
                "labels": {"component": "etcd", "tier": "control-plane"},
                "annotations": {"kubeadm.kubernetes.io/etcd.advertise-client-urls": c.node(0).client_url()},
            },
        }));
        // A Pod of another component must not count.
        server.insert_pod(serde_json::json!({
            "metadata": {
                "name": "kube-apiserver-node0",
                "namespace": "kube-system",
                "labels": {"component": "kube-apiserver", "tier": "control-plane"},
                "annotations": {"kubeadm.kubernetes.io/etcd.advertise-client-urls": "https://192.0.2.1:2379"},
            },
        }));
        let kubeconfig = c.dir.path().join("admin.conf");
        std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();

        let node = c.node(1);
        let (endpoints, source) = discovery::resolve(&[], &node.config, true, Some(&kubeconfig)).await.unwrap();
        assert_eq!(endpoints, [c.node(0).client_url()]);
        assert_eq!(source, discovery::EndpointSource::Kubeconfig);
        // Without --endpoints, external endpoints or a kubeconfig there is nowhere to go.
        let err = discovery::resolve(&[], &node.config, false, None).await.unwrap_err();
        assert!(matches!(err, MembershipError::NoEndpoints), "{err}");

        let client = EtcdClient::new(&endpoints, &node.tls(), DEFAULT_RPC_TIMEOUT).unwrap();
        let joined = phases::membership::join::add_learner(&client, &c.join_options(1, JOIN_TIMEOUT), &mut ignore_events())
            .await
            .unwrap();
        phases::membership::join::write_manifest(&node.config, &node.cert_dir, &node.manifest_dir, &node.backup_dir, &joined, false)
            .unwrap();
        c.start(1);
        let p = promote::promote(&client, &c.promote_options(1, PROMOTE_TIMEOUT), &mut ignore_events())
            .await
            .unwrap();
        assert_eq!(p.outcome, PromoteOutcome::Promoted);
    })
    .await;
}

// Preflight: a data directory of another cluster is refused (and wiped on request), a
// node name already used with another peer URL is refused, plaintext is never used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_refuses_foreign_data_and_taken_names() {
    bounded(async {
        let c = TestCluster::new(EtcdVersion::V3_5, 113, 3);
        c.bootstrap();
        // Node 1's data directory holds a member of another cluster (test id 114).
        {
            let foreign = TestCluster::new(EtcdVersion::V3_5, 114, 1);
            foreign.bootstrap();
            foreign.kill(0);
            copy_dir(&foreign.node(0).data_dir, &c.node(1).data_dir);
        }
        let err = c.join(1, JOIN_TIMEOUT, &events()).await.unwrap_err();
        assert!(
            matches!(err, MembershipError::ForeignDataDir { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("belongs to another etcd cluster"),
            "{err}"
        );
        assert!(err.to_string().contains("--wipe-data-dir"), "{err}");
        // Nothing was added.
        assert_eq!(c.client(0, 0).member_list().await.unwrap().members.len(), 1);

        let log = events();
        let mut opts = c.join_options(1, JOIN_TIMEOUT);
        opts.wipe_data_dir = true;
        let (joined, _) = c.join_with(1, opts, &log).await.unwrap();
        assert_eq!(joined.outcome, AddOutcome::Added);
        assert!(log
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::DataDirWiped { .. })));
        assert!(!c.node(1).data_dir.join("member").exists());

        // Node 2 under node 0's name, with its own peer URL.
        let mut opts = c.join_options(2, JOIN_TIMEOUT);
        opts.name = "node0".into();
        let err = c.join_with(2, opts, &events()).await.unwrap_err();
        assert!(matches!(err, MembershipError::NameTaken { .. }), "{err}");

        let err = EtcdClient::new(
            &[format!("http://{}:2379", c.node(0).ip)],
            &c.node(0).tls(),
            DEFAULT_RPC_TIMEOUT,
        )
        .unwrap_err();
        assert!(matches!(err, MembershipError::NotHttps { .. }), "{err}");
    })
    .await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Two nodes, node 0 a one-member cluster holding `mib` MiB of values whose history is
/// behind a raft snapshot, so that a learner joining it is fed the database as a
/// snapshot; node 1 not joined yet.
async fn behind_a_snapshot(version: EtcdVersion, test_id: u8, mib: u64) -> TestCluster {
    let mut c = TestCluster::new(version, test_id, 2);
    // A raft snapshot every 100 entries: after the restart below the leader's log starts
    // at its last snapshot, so the learner cannot be caught up from the log.
    for node in &mut c.nodes {
        match &mut node.config.cluster.etcd {
            phases::config::Etcd::Local(local) => local.extra_args.push(phases::config::Arg {
                name: "snapshot-count".into(),
                value: "100".into(),
            }),
            phases::config::Etcd::External(_) => unreachable!("the harness runs local etcd"),
        }
    }
    c.bootstrap();
    {
        let node = c.node(0);
        let mut kv = etcd_client::Client::connect(
            [node.client_url()],
            Some(
                common::ClientTls::healthcheck(&node.cert_dir)
                    .connect_options()
                    .expect("tls"),
            ),
        )
        .await
        .expect("connect");
        let value = vec![b'v'; 1 << 20];
        for i in 0..mib {
            kv.put(format!("big/{i:03}"), value.clone(), None)
                .await
                .expect("put");
        }
        for i in 0..120 {
            kv.put(format!("small/{i:03}"), "x", None)
                .await
                .expect("put");
        }
    }
    c.kill(0);
    c.start(0);
    c.wait_healthy(0);
    c
}

/// A learner joining a cluster whose history is behind a raft snapshot is fed the whole
/// database as a snapshot, as any learner joining a real cluster is. On its own node
/// promote shows that snapshot arriving in bytes (from the learner's data directory,
/// against the leader's database size), with the learner's metrics listener as the
/// evidence that it is alive while its client URL serves nothing, and promotes it.
async fn fed_a_snapshot(version: EtcdVersion, test_id: u8) {
    let c = behind_a_snapshot(version, test_id, DB_MIB).await;
    c.join(1, JOIN_TIMEOUT, &events())
        .await
        .unwrap_or_else(|e| panic!("join node1: {e}"));
    // promote first, the learner once promote looks: a transfer faster than promote's
    // first look at the data directory (a loaded machine) would show nothing to assert.
    let c = Arc::new(c);
    let log = Arc::new(events());
    let opts = c.promote_options(1, PROMOTE_TIMEOUT);
    assert!(opts.local.is_some(), "promote reads node1's manifest");
    let task = {
        let (c, log) = (c.clone(), log.clone());
        tokio::spawn(async move {
            promote::promote(&c.client(0, 1), &opts, &mut |e| log.lock().unwrap().push(e)).await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::WaitingForStart { .. }))
    {
        assert!(
            !task.is_finished() && Instant::now() < deadline,
            "promote never reported waiting for the start: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.start(1);
    let promoted = task
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("promote node1: {e}\n{}", c.log_tail(1)));
    assert_eq!(promoted.outcome, PromoteOutcome::Promoted);

    let snapshot: Vec<(u64, u64, bool)> = log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::SnapshotProgress {
                received,
                total,
                complete,
                ..
            } => Some((*received, *total, *complete)),
            _ => None,
        })
        .collect();
    eprintln!("{version}: snapshot progress {snapshot:?}");
    let &(last, total, complete) = snapshot
        .last()
        .unwrap_or_else(|| panic!("no snapshot progress: {:?}", log.lock().unwrap()));
    assert!(complete, "{snapshot:?}");
    // The leader's database size is what arrives: at least the values written.
    assert!(total >= DB_MIB << 20, "{snapshot:?}");
    assert!(
        last * 10 >= total * 9 && last <= total,
        "received {last} of {total}: {snapshot:?}"
    );
    assert!(
        snapshot.windows(2).all(|w| w[0].0 <= w[1].0),
        "bytes never go back: {snapshot:?}"
    );
    let members = c.etcdctl_members(0);
    assert_eq!(
        voters_and_learners(&members),
        (vec!["node0", "node1"], vec![]),
        "{members:?}"
    );
}

/// Big enough that the transfer takes a few of promote's 100 ms looks at the data
/// directory, small enough for the test's time budget.
const DB_MIB: u64 = 64;

crate::etcd_matrix!(async a_learner_fed_a_snapshot_shows_its_bytes_arriving => |v| bounded(fed_a_snapshot(v, 170)));

/// A learner the leader cannot send its snapshot to runs, publishes its name and answers
/// on its metrics listener, and never moves. Alive is not progress: `--stall-timeout`
/// ends the wait, long before `--timeout`, with a diagnosis that names the peer URL the
/// leader cannot reach, and the learner is not promoted.
///
/// How: the learner listens for peers on another port than the peer URL it advertises
/// (the one in the member list). It reaches the leader, so it receives heartbeats and its
/// name is published (a learner's messages to the leader go over connections it opens);
/// the leader's snapshot needs a connection the leader opens, which is refused.
async fn starved_of_its_snapshot(version: EtcdVersion, test_id: u8) {
    let c = behind_a_snapshot(version, test_id, 1).await;
    let (joined, _) = c
        .join(1, JOIN_TIMEOUT, &events())
        .await
        .unwrap_or_else(|e| panic!("join node1: {e}"));
    let id = joined.member_id.expect("added");
    let path = c.node(1).manifest_path();
    let manifest = std::fs::read_to_string(&path).unwrap();
    let peer_url = c.node(1).peer_url();
    let listen = format!("--listen-peer-urls={peer_url}");
    assert!(manifest.contains(&listen), "{manifest}");
    let elsewhere = format!("--listen-peer-urls={}", peer_url.replace(":2380", ":2390"));
    std::fs::write(&path, manifest.replace(&listen, &elsewhere)).unwrap();
    c.start(1);

    let stall = Duration::from_secs(3);
    let mut opts = c.promote_options(1, Duration::from_secs(60));
    assert!(opts.local.is_some(), "promote reads node1's manifest");
    opts.stall_timeout = Some(stall);
    let log = events();
    let started = Instant::now();
    let err = promote::promote(&c.client(0, 1), &opts, &mut |e| log.lock().unwrap().push(e))
        .await
        .expect_err("a learner that receives nothing is not promoted");
    let took = started.elapsed();
    eprintln!("{version}: {err}\n{:?}", log.lock().unwrap());
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::Started { .. })),
        "the learner published its name: {:?}",
        log.lock().unwrap()
    );
    assert!(took >= stall && took < Duration::from_secs(20), "{took:?}");
    let MembershipError::Stalled { cause, .. } = &err else {
        panic!("not a stall: {err}");
    };
    assert!(
        matches!(**cause, MembershipError::Starved { .. }),
        "{err}\n{}",
        c.log_tail(1)
    );
    let message = err.to_string();
    for part in [
        peer_url.as_str(),
        "received nothing from the leader",
        "failed to send database snapshot",
    ] {
        assert!(message.contains(part), "{part:?} is not in: {message}");
    }
    assert_eq!(err.rollback_id(), Some(id));
    // Still running, still a learner.
    assert!(c.node(1).process.lock().unwrap().is_some());
    let members = c.etcdctl_members(0);
    assert_eq!(
        voters_and_learners(&members),
        (vec!["node0"], vec!["node1"]),
        "{members:?}"
    );
}

crate::etcd_matrix!(async a_learner_starved_of_its_snapshot_stalls => |v| bounded(starved_of_its_snapshot(v, 171)));
