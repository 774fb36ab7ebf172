//! Node replacement and stalled learners on real etcd (issue 14): `join-learner --replace`
//! and `promote --rollback-on-timeout`, with TLS, every member run from the manifest our
//! phases wrote.
//!
//! Every scenario runs on the whole matrix (3.4.23, 3.5.30, 3.6.14, 3.7.1). Addresses:
//! test ids 160-169 (`common/mod.rs`).

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::faults::{self, Expected, Writer};
use common::kubelet::KubeletEvent;
use common::EtcdVersion;
use phases::membership::join::{self, AddOutcome, JoinOptions};
use phases::membership::promote::{self, PromoteOptions, PromoteOutcome};
use phases::membership::{health, Cluster, Event, MemberId, MembershipError, Selector};

const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Every test runs inside this bound, so a hang fails instead of stalling the suite.
async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("the test finished within 120 s");
}

/// One test per version of the matrix: `name::etcd_3_6_14`.
macro_rules! etcd_matrix_new {
    ($name:ident, $body:ident, $id:expr) => {
        $crate::etcd_matrix!(async $name => |v| bounded($body(v, $id)));
    };
}

fn replace_options(c: &TestCluster, n: usize) -> JoinOptions {
    JoinOptions {
        replace: true,
        ..c.join_options(n, JOIN_TIMEOUT)
    }
}

/// The member at `url` reports exactly `want` as its active raft peers (a stream to a peer
/// is up a moment after the member answers: up to 5 s).
async fn assert_active_peers(client: &impl Cluster, url: &str, mut want: Vec<MemberId>) {
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut peers = client.active_peers(url).await.unwrap();
        peers.sort();
        if peers == want || Instant::now() > deadline {
            assert_eq!(peers, want, "the active peers of {url}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node re-imaged: its data directory and manifest gone, its certificates and
/// configuration made again (here: kept, they are the same files).
fn reimage(c: &TestCluster, n: usize) {
    let node = c.node(n);
    std::fs::remove_dir_all(&node.data_dir).unwrap();
    std::fs::remove_dir_all(&node.manifest_dir).unwrap();
}

/// `etcdctl`-independent member list through our client: (peer URL, is learner, id).
async fn members(c: &TestCluster, via: &[usize]) -> Vec<(String, bool, MemberId)> {
    let list = faults::client_via(c, via, via[0])
        .member_list()
        .await
        .unwrap();
    let mut out: Vec<_> = list
        .members
        .iter()
        .map(|m| (m.peer_urls[0].clone(), m.is_learner, m.id))
        .collect();
    out.sort();
    out
}

// Three voters; node2's machine dies and is re-imaged with the same name and address.
// `join-learner --replace` removes the dead member and adds node2 as a learner in one
// step; it is promoted, and the cluster is three healthy voters again, with a writer
// running through the whole replacement (from the election after the death) that loses
// nothing and never sees quorum lost. A dry run first removes nothing. The first attempt
// crashes between the removal and the add (its reporter panics there); the rerun
// converges, and reruns after the add and after the promotion change nothing.
async fn replace_a_dead_voter(version: EtcdVersion, test_id: u8) {
    let c = TestCluster::new(version, test_id, 3);
    faults::start_voters(&c, 3);
    let survivors = [0, 1];
    // What "down" asks the other members: their raft connections, both peers here.
    {
        let client = faults::client_via(&c, &[0, 1, 2], 0);
        let mut ids = Vec::new();
        for n in [1, 2] {
            ids.push(
                client
                    .status(&c.node(n).client_url())
                    .await
                    .unwrap()
                    .member_id,
            );
        }
        assert_active_peers(&client, &c.node(0).client_url(), ids).await;
    }
    let old_id = faults::client_via(&c, &[2], 2)
        .status(&c.node(2).client_url())
        .await
        .unwrap()
        .member_id;
    c.kill(2);
    reimage(&c, 2);
    // node2 may have led: the join starts once there is another leader. The writer runs
    // from then on, through the whole replacement.
    faults::leader(&c, &survivors).await;
    let writer = Writer::start(&c, &survivors).await;

    // A dry run says what it would remove, and removes nothing.
    let events = Mutex::new(Vec::new());
    let dry = join::add_learner(
        &faults::client_via(&c, &survivors, 2),
        &JoinOptions {
            dry_run: true,
            ..replace_options(&c, 2)
        },
        &mut |e| events.lock().unwrap().push(e),
    )
    .await
    .unwrap_or_else(|e| panic!("dry run of the replacing join: {e}"));
    assert_eq!(dry.outcome, AddOutcome::WouldAdd);
    assert!(
        events.lock().unwrap().iter().any(|e| matches!(e,
            Event::StaleMemberRemoved { id, dry_run: true, was_learner: false, .. } if *id == old_id)),
        "{:?}",
        events.lock().unwrap()
    );
    assert!(members(&c, &survivors).await.iter().any(|m| m.2 == old_id));

    // The first attempt dies right after the removal, before the add.
    let crashed = {
        let client = faults::client_via(&c, &survivors, 2);
        let opts = replace_options(&c, 2);
        tokio::spawn(async move {
            join::add_learner(&client, &opts, &mut |e| {
                if let Event::StaleMemberRemoved { evidence, .. } = &e {
                    eprintln!("removed the dead member: {evidence}");
                    panic!("crash between the removal and the add");
                }
            })
            .await
        })
        .await
    };
    assert!(
        crashed.is_err_and(|e| e.is_panic()),
        "the crash did not happen"
    );
    let after_crash = members(&c, &survivors).await;
    assert_eq!(after_crash.len(), 2, "{after_crash:?}");
    assert!(after_crash
        .iter()
        .all(|(_, learner, id)| !learner && *id != old_id));

    // The rerun: nothing left to replace, a plain join.
    let events = Mutex::new(Vec::new());
    let (joined, _) = c
        .join_with(2, replace_options(&c, 2), &events)
        .await
        .unwrap_or_else(|e| panic!("rerun of the replacing join: {e}"));
    assert_eq!(joined.outcome, AddOutcome::Added);
    let new_id = joined.member_id.unwrap();
    assert_ne!(new_id, old_id);
    // A rerun after the add reuses the learner (never started: not a member to replace).
    let (again, _) = c
        .join_with(2, replace_options(&c, 2), &events)
        .await
        .unwrap();
    assert_eq!(again.member_id, Some(new_id));
    assert!(matches!(
        again.outcome,
        AddOutcome::Reused {
            is_learner: true,
            started: false
        }
    ));

    c.start(2);
    let client = faults::client_via(&c, &survivors, 2);
    let promoted = promote::promote(&client, &c.promote_options(2, PROMOTE_TIMEOUT), &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("promote the replacement: {e}\n{}", c.log_tail(2)));
    assert_eq!(promoted.id, new_id);
    assert_eq!(promoted.outcome, PromoteOutcome::Promoted);
    // A rerun once it runs: its data directory is its own, nothing to replace.
    let (again, _) = c
        .join_with(2, replace_options(&c, 2), &events)
        .await
        .unwrap();
    assert_eq!(again.member_id, Some(new_id));
    assert!(again.already_running(), "{:?}", again.outcome);
    assert!(
        !events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::StaleMemberRemoved { .. })),
        "a rerun removed something"
    );

    let report = health::check(&client).await.unwrap();
    assert!(
        report.healthy && report.voters == 3 && report.healthy_voters == 3,
        "{report:?}"
    );
    let writes = writer.stop().await;
    writes.assert_quorum_never_lost();
    faults::assert_invariants(
        &c,
        &[0, 1, 2],
        Expected {
            voters: &[0, 1, 2],
            learners: &[],
        },
        &writes.keys(),
    )
    .await;
    eprintln!(
        "{version}: replaced {old_id} by {new_id}; {} puts during the replacement, {} retried",
        writes.puts.len(),
        writes.retried()
    );
}

etcd_matrix_new!(replace_a_dead_voter_of_three, replace_a_dead_voter, 160);

// Refusals that change nothing, on two voters: without --replace the name conflict says
// the option exists; with it, a same-name member that answers is not removed; and once
// node1 is down, removing it would leave 1 of 1 voters, but the removal itself needs 2
// of 2 to commit: refused, naming the quorum.
async fn replace_refusals(version: EtcdVersion, test_id: u8) {
    let c = TestCluster::new(version, test_id, 3);
    faults::start_voters(&c, 2);
    let before = members(&c, &[0, 1]).await;
    let client = faults::client_via(&c, &[0, 1], 2);

    // The second look of "down": each member reports its raft connections.
    let node1_id = client
        .status(&c.node(1).client_url())
        .await
        .unwrap()
        .member_id;
    assert_active_peers(&client, &c.node(0).client_url(), vec![node1_id]).await;

    // node2's machine claims node1's name.
    let as_node1 = JoinOptions {
        name: "node1".into(),
        ..c.join_options(2, JOIN_TIMEOUT)
    };
    let err = join::add_learner(&client, &as_node1, &mut |_| {})
        .await
        .expect_err("a taken name is refused");
    assert!(matches!(err, MembershipError::NameTaken { .. }), "{err}");
    assert!(err.to_string().contains("--replace"), "{err}");

    let err = join::add_learner(
        &client,
        &JoinOptions {
            replace: true,
            ..as_node1.clone()
        },
        &mut |_| {},
    )
    .await
    .expect_err("an alive member is not replaced");
    let message = err.to_string();
    eprintln!("{message}");
    assert!(
        matches!(err, MembershipError::ReplaceRefused { .. }),
        "{err}"
    );
    for part in [
        "refusing to replace member",
        "(node1)",
        "it answers on its client URL",
        &c.node(1).client_url(),
        "Nothing was changed",
    ] {
        assert!(message.contains(part), "{part:?} is not in: {message}");
    }
    assert_eq!(members(&c, &[0, 1]).await, before);

    // node1 dies and is re-imaged: two voters, one down.
    c.kill(1);
    reimage(&c, 1);
    let started = Instant::now();
    let err = join::add_learner(
        &faults::client_via(&c, &[0], 1),
        &replace_options(&c, 1),
        &mut |_| {},
    )
    .await
    .expect_err("no quorum to commit the removal");
    let message = err.to_string();
    eprintln!("{message}");
    assert!(
        matches!(err, MembershipError::ReplaceRefused { .. }),
        "{err}"
    );
    for part in [
        "(node1)",
        "no quorum: 1 of 2 voting members answer and 2 are needed to commit the removal",
    ] {
        assert!(message.contains(part), "{part:?} is not in: {message}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // Nothing changed: node0's own view (no leader to agree on another).
    let local = faults::client_via(&c, &[0], 0)
        .member_list_local()
        .await
        .unwrap();
    let mut ids: Vec<MemberId> = local.members.iter().map(|m| m.id).collect();
    ids.sort();
    let mut want: Vec<MemberId> = before.iter().map(|m| m.2).collect();
    want.sort();
    assert_eq!(ids, want);
}

etcd_matrix_new!(replace_refusals_change_nothing, replace_refusals, 162);

// A learner that never starts (its node has no kubelet to run the manifest). Without
// --rollback-on-timeout promote gives up after --stall-timeout, far before --timeout, and
// the learner stays, blocking the next join ("too many learner members"); with it, the
// learner is removed, the error says so, and the join that follows goes through and is
// promoted.
//
// How the learner fails to start: on 3.6.14 no kubelet runs node1's manifest; on 3.7.1 the
// kubelet stand-in runs it but its image cannot be pulled (a tag no release has), and the
// fixed node is the manifest the next join writes, which the kubelet then starts.
async fn rollback_a_learner_that_never_starts(version: EtcdVersion, test_id: u8) {
    let c = TestCluster::new(version, test_id, 3);
    c.bootstrap();
    let client = c.client(0, 0);
    let (joined, _) = c
        .join(1, JOIN_TIMEOUT, &Mutex::new(Vec::new()))
        .await
        .unwrap();
    let id = joined.member_id.unwrap();
    let kubelet = (version == EtcdVersion::V3_7_1).then(|| {
        let path = c.node(1).manifest_path();
        let manifest = std::fs::read_to_string(&path).unwrap();
        let tag = version.image_tag();
        assert!(manifest.contains(&tag), "{manifest}");
        std::fs::write(&path, manifest.replace(&tag, "3.7.99-0")).unwrap();
        let k = c.run_kubelet_by_image(1, 0.1, Duration::from_millis(200));
        k.wait_for(
            Duration::from_secs(10),
            |e| matches!(e, KubeletEvent::StartFailed(why) if why.contains("cannot pull")),
        )
        .unwrap_or_else(|events| panic!("the bad image was started? {events:?}"));
        k
    });
    let stall = Duration::from_secs(2);
    let opts = |rollback: bool| PromoteOptions {
        selectors: vec![Selector::Id(id)],
        timeout: Duration::from_secs(60),
        health_timeout: Duration::from_secs(20),
        stall_timeout: Some(stall),
        rollback_on_timeout: rollback,
        local: None,
    };

    let started = Instant::now();
    let err = promote::promote(&client, &opts(false), &mut |_| {})
        .await
        .expect_err("a learner that never starts is not promoted");
    let took = started.elapsed();
    assert!(took >= stall && took < Duration::from_secs(10), "{took:?}");
    let MembershipError::Stalled { cause, .. } = &err else {
        panic!("not a stall: {err}");
    };
    assert!(
        matches!(**cause, MembershipError::NeverStarted { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("(--stall-timeout)"), "{err}");
    assert_eq!(err.rollback_id(), Some(id));
    // It stays, and blocks the next join.
    let list = members(&c, &[0]).await;
    assert!(list.contains(&(c.node(1).peer_url(), true, id)), "{list:?}");
    let blocked = c
        .join(2, Duration::from_secs(2), &Mutex::new(Vec::new()))
        .await
        .expect_err("etcd takes one learner at a time");
    assert!(
        blocked.to_string().contains("too many learner members"),
        "{blocked}"
    );

    let err = promote::promote(&client, &opts(true), &mut |_| {})
        .await
        .expect_err("rolled back, not promoted");
    let message = err.to_string();
    eprintln!("{message}");
    assert!(
        matches!(err, MembershipError::RolledBack { id: got, started: false, .. } if got == id),
        "{err}"
    );
    for part in [
        format!("Removed the learner {id} from the etcd cluster (--rollback-on-timeout)"),
        "run the join again".to_string(),
    ] {
        assert!(message.contains(&part), "{part:?} is not in: {message}");
    }
    assert_eq!(err.rollback_id(), None);
    let list = members(&c, &[0]).await;
    assert_eq!(list.len(), 1, "{list:?}");

    // The node is fixed (its kubelet runs now) and joins again.
    let (joined, _) = c
        .join(1, JOIN_TIMEOUT, &Mutex::new(Vec::new()))
        .await
        .unwrap();
    assert_ne!(joined.member_id, Some(id));
    if kubelet.is_none() {
        c.start(1);
    }
    let promoted = promote::promote(&client, &c.promote_options(1, PROMOTE_TIMEOUT), &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("promote after the rollback: {e}\n{}", c.log_tail(1)));
    assert_eq!(Some(promoted.id), joined.member_id);
    faults::assert_invariants(
        &c,
        &[0, 1],
        Expected {
            voters: &[0, 1],
            learners: &[],
        },
        &Default::default(),
    )
    .await;
}

etcd_matrix_new!(
    a_learner_that_never_starts_is_rolled_back,
    rollback_a_learner_that_never_starts,
    164
);
