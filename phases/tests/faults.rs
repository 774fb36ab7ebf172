//! Fault scenarios against real etcd, every version of the matrix (issues 6 and 11): nothing the learner
//! lifecycle does, and nothing that happens to the cluster meanwhile, breaks quorum, loses
//! data or leaves a member nobody asked for.
//!
//! Each scenario runs [`faults::runs()`] times per version (2; `FAULT_RUNS=<n>` for more)
//! on a fresh cluster and prints one line for CI's figures:
//! `fault-suite: <scenario> etcd-<version> runs=<n> failures=<f> seed=<s>`.
//! After every run the invariants hold ([`faults::assert_invariants`]): exactly the
//! members asked for, a write commits, every key written before the fault reads back.
//!
//! The tool killed mid-operation is in the root package's `tests/faults_cli.rs`: it needs
//! the binary.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::faults::{self, Expected, Keys, MemberMonitor, Run, Writer};
use common::EtcdVersion;
use phases::membership::join::{self, JoinOptions};
use phases::membership::promote::{self, PromoteOptions, PromoteOutcome};
use phases::membership::remove::{self, RemoveOptions, RemoveOutcome};
use phases::membership::{Event, MemberId, MembershipError, Selector};

/// Bounds one run of any scenario; a run that overruns counts as a failure.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a join may wait for etcd, "unhealthy cluster" after a cluster forms or after a
/// promotion (about 5 s each) and other joins included.
const JOIN_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a promotion may wait for a learner that has a few MB to catch up on, through a
/// re-election.
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(60);
/// A refusal the preflight predicts comes within one status round of the members (a dead
/// one's dial timeout included), far below [`JOIN_TIMEOUT`].
const AT_ONCE: Duration = Duration::from_secs(20);
/// Small keys written before every fault, and read back after it.
const KEYS: usize = 100;
/// Bulk data written before the faults that hit a learner catching up.
const BULK_BYTES: usize = 4 << 20;

fn join_options(c: &TestCluster, n: usize) -> JoinOptions {
    let node = c.node(n);
    JoinOptions {
        name: node.name.clone(),
        peer_url: node.peer_url(),
        data_dir: node.data_dir.clone(),
        wipe_data_dir: false,
        replace: false,
        timeout: JOIN_TIMEOUT,
        dry_run: false,
    }
}

fn promote_options(c: &TestCluster, n: usize, timeout: Duration) -> PromoteOptions {
    PromoteOptions {
        selectors: vec![Selector::PeerUrl(c.node(n).peer_url())],
        timeout,
        health_timeout: Duration::from_secs(30),
        stall_timeout: None,
        rollback_on_timeout: false,
        local: c.local_learner(n),
    }
}

/// join-learner for node `n` through `via` (add, then write the manifest), as the binary
/// does it. Returns the new member's ID.
async fn join(c: &TestCluster, via: &[usize], n: usize, events: &Mutex<Vec<Event>>) -> MemberId {
    let node = c.node(n);
    let client = faults::client_via(c, via, n);
    let joined = join::add_learner(&client, &join_options(c, n), &mut |e| {
        events.lock().unwrap().push(e)
    })
    .await
    .unwrap_or_else(|e| panic!("join node{n}: {e}"));
    join::write_manifest(
        &node.config,
        &node.cert_dir,
        &node.manifest_dir,
        &node.backup_dir,
        &joined,
        false,
    )
    .unwrap_or_else(|e| panic!("manifest of node{n}: {e}"));
    joined.member_id.expect("not a dry run")
}

/// The pre-fault data: [`KEYS`] small keys and, with `bulk`, [`BULK_BYTES`] more.
async fn write_data(c: &TestCluster, via: &[usize], bulk: bool) -> Keys {
    let kv = faults::kv_client(c, via).await;
    let mut keys = faults::write_keys(&kv, "before", KEYS).await;
    if bulk {
        keys.extend(faults::write_bulk(&kv, "bulk", BULK_BYTES).await);
    }
    keys
}

/// Where, in a learner's catch-up, the leader dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillPoint {
    /// Right after the learner's process started, before promote runs.
    LearnerStarted,
    /// When promote first reports the learner running or its progress: it is catching up
    /// and promote is waiting for it.
    PromoteWatching,
}

// Three voters and a learner with a few MB to catch up on; the leader is SIGKILLed while
// the learner catches up. The promotion must complete through the re-election: the
// learner catches up from the new leader and becomes the fourth voter (three of four up,
// quorum three).
async fn leader_killed(run: Run) {
    let c = TestCluster::new(run.version, run.test_id, 4);
    faults::start_voters(&c, 3);
    let voters = [0, 1, 2];
    let keys = write_data(&c, &voters, true).await;
    let events = Mutex::new(Vec::new());
    let id = join(&c, &voters, 3, &events).await;
    let (old_leader, old_leader_id, old_term) = faults::leader(&c, &voters).await;
    let point = if run.index.is_multiple_of(2) {
        KillPoint::LearnerStarted
    } else {
        KillPoint::PromoteWatching
    };

    c.start(3);
    let killed = AtomicBool::new(false);
    let kill = || {
        if !killed.swap(true, Ordering::SeqCst) {
            c.kill(old_leader);
        }
    };
    if point == KillPoint::LearnerStarted {
        kill();
    }
    let client = faults::client_via(&c, &voters, 3);
    let promoted = promote::promote(
        &client,
        &promote_options(&c, 3, PROMOTE_TIMEOUT),
        &mut |e| {
            // The callback runs before promote goes on, so the kill lands before any
            // promotion attempt.
            if matches!(e, Event::Started { .. } | Event::Progress { .. }) {
                kill();
            }
            events.lock().unwrap().push(e);
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "promote after the leader was killed ({point:?}): {e}\nlearner log:\n{}",
            c.log_tail(3)
        )
    });
    assert!(killed.load(Ordering::SeqCst), "the leader was not killed");
    assert_eq!(promoted.id, id);
    assert_ne!(promoted.outcome, PromoteOutcome::AlreadyVoter);
    let retries: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Retrying { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    eprintln!(
        "{} run {}: leader node{old_leader} killed at {point:?}; promoted after {:?}, retried on {retries:?}",
        run.version, run.index, promoted.waited
    );

    let survivors: Vec<usize> = [0, 1, 2, 3]
        .into_iter()
        .filter(|&n| n != old_leader)
        .collect();
    let (_, new_leader, term) = faults::leader(&c, &survivors).await;
    assert_ne!(new_leader, old_leader_id);
    assert!(term > old_term, "no re-election: term {old_term} -> {term}");
    faults::assert_invariants(
        &c,
        &survivors,
        Expected {
            voters: &[0, 1, 2, 3],
            learners: &[],
        },
        &keys,
    )
    .await;
}

// One voter and a learner, SIGSTOPped while it catches up: promote keeps waiting, then
// times out saying the learner does not answer, without promoting it (which would make
// two voters, one frozen: no quorum). remove-member then restores the original
// membership.
async fn learner_paused(run: Run) {
    let c = TestCluster::new(run.version, run.test_id, 2);
    faults::start_voters(&c, 1);
    let keys = write_data(&c, &[0], true).await;
    let client = faults::client_via(&c, &[0], 0);
    let original = client.member_list().await.unwrap().members;
    let events = Mutex::new(Vec::new());
    let id = join(&c, &[0], 1, &events).await;
    c.start(1);

    let paused = AtomicBool::new(false);
    let timeout = Duration::from_secs(5);
    let err = promote::promote(&client, &promote_options(&c, 1, timeout), &mut |e| {
        if matches!(e, Event::Started { .. } | Event::Progress { .. })
            && !paused.swap(true, Ordering::SeqCst)
        {
            faults::pause(&c, 1);
        }
        events.lock().unwrap().push(e);
    })
    .await
    .expect_err("a frozen learner must not be promoted");
    assert!(paused.load(Ordering::SeqCst), "the learner was not paused");
    // The diagnosis: it does not answer (not "stuck at N%": it never answered again).
    // promote gives it only when its time is up, so it waited the whole timeout.
    assert!(
        matches!(&err, MembershipError::Unreachable { id: got, .. } if *got == id),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("does not answer on its client URL"),
        "{err}"
    );
    // Its metrics listener, on this node, was asked too and did not count: a paused
    // process answers nothing within the bound.
    assert!(
        err.to_string().contains("nor on its metrics listener"),
        "{err}"
    );
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::LearnerNotAnswering { .. })),
        "{:?}",
        events.lock().unwrap()
    );
    assert_eq!(err.rollback_id(), Some(id));

    // Quorum intact and the frozen member still a learner.
    faults::assert_invariants(
        &c,
        &[0],
        Expected {
            voters: &[0],
            learners: &[1],
        },
        &keys,
    )
    .await;
    let removed = remove::remove(
        &client,
        &RemoveOptions {
            selector: Selector::Id(id),
            force: false,
            dry_run: false,
            timeout: std::time::Duration::from_secs(30),
        },
    )
    .await
    .unwrap();
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
    assert_eq!(client.member_list().await.unwrap().members, original);
    faults::assert_invariants(
        &c,
        &[0],
        Expected {
            voters: &[0],
            learners: &[],
        },
        &keys,
    )
    .await;
}

// Three nodes join one voter at once, each join-learner, start, promote, as three
// concurrent tasks. etcd takes one learner at a time; the others wait. All end as voters,
// the member list never shows two learners, and a writer's puts keep committing (see
// `WriterReport::assert_quorum_never_lost` for exactly what that means).
async fn three_joins(run: Run) {
    let c = Arc::new(TestCluster::new(run.version, run.test_id, 4));
    faults::start_voters(&c, 1);
    let keys = write_data(&c, &[0], false).await;
    let writer = Writer::start(&c, &[0]).await;
    let monitor = MemberMonitor::start(&c, &[0]).await;

    // A JoinSet aborts the joins if this run fails, so that they do not outlive it.
    let mut tasks = tokio::task::JoinSet::new();
    for n in [1, 2, 3] {
        let c = c.clone();
        tasks.spawn(async move {
            let events = Mutex::new(Vec::new());
            let id = join(&c, &[0], n, &events).await;
            c.start(n);
            let client = faults::client_via(&c, &[0], n);
            let p = promote::promote(
                &client,
                &promote_options(&c, n, PROMOTE_TIMEOUT),
                &mut |e| events.lock().unwrap().push(e),
            )
            .await
            .unwrap_or_else(|e| panic!("promote node{n}: {e}\n{}", c.log_tail(n)));
            assert_eq!(p.id, id);
            (n, events.into_inner().unwrap())
        });
    }
    let mut waited = 0;
    while let Some(joined) = tasks.join_next().await {
        let (_, events) = joined.unwrap_or_else(|e| panic!("a join failed: {e}"));
        if events.iter().any(|e| matches!(e, Event::Retrying { .. })) {
            waited += 1;
        }
    }
    let writes = writer.stop().await;
    let seen = monitor.stop().await;

    // etcd's one-learner rule made at least two of them wait for another.
    assert!(waited >= 2, "only {waited} of the joins waited for another");
    assert!(seen.polls > 0);
    assert!(
        seen.max_learners <= 1,
        "{} learners at once",
        seen.max_learners
    );
    let expected: std::collections::BTreeSet<String> =
        (0..4).map(|n| c.node(n).peer_url()).collect();
    assert_eq!(
        seen.peer_urls, expected,
        "a member nobody asked for appeared"
    );
    writes.assert_quorum_never_lost();
    eprintln!(
        "{}: {} puts during the joins, {} retried, longest gap between commits {:?}",
        run.version,
        writes.puts.len(),
        writes.retried(),
        writes.longest_gap()
    );
    let mut keys = keys;
    keys.extend(writes.keys());
    faults::assert_invariants(
        &c,
        &[0, 1, 2, 3],
        Expected {
            voters: &[0, 1, 2, 3],
            learners: &[],
        },
        &keys,
    )
    .await;
}

// A voter of three is down when a join starts. etcd refuses this add on every release of
// the matrix: 3.4.23 because it is not connected to every voter, 3.5.30, 3.6.14 and 3.7.1
// because the two connected voters are not a quorum (3) of the four members a learner
// would make ([`phases::membership::version::AddRule`]). So preflight refuses at once,
// well before the join's timeout, naming that member and the remove-member command.
// Nothing is added; following the advice (remove the dead member) lets the join through.
async fn voter_down(mut run: Run) {
    let c = TestCluster::new(run.version, run.test_id, 4);
    faults::start_voters(&c, 3);
    let keys = write_data(&c, &[0, 1, 2], false).await;
    let victim = run.rng.below(3) as usize;
    let victim_id = faults::client_via(&c, &[victim], 0)
        .status(&c.node(victim).client_url())
        .await
        .unwrap()
        .member_id;
    c.kill(victim);
    let survivors: Vec<usize> = (0..3).filter(|&n| n != victim).collect();
    // The victim may have been the leader: the join starts once there is another.
    faults::leader(&c, &survivors).await;

    let events = Mutex::new(Vec::new());
    let client = faults::client_via(&c, &[0, 1, 2], 3);
    let started = Instant::now();
    let err = join::add_learner(&client, &join_options(&c, 3), &mut |e| {
        events.lock().unwrap().push(e)
    })
    .await
    .expect_err("a join with a voter down must be refused");
    // At once: the preflight's status round, not etcd's "unhealthy cluster" retried until
    // JOIN_TIMEOUT (what 3.5.30 did before the preflight knew its rule).
    let took = started.elapsed();
    assert!(
        took < AT_ONCE,
        "the refusal took {took:?} (timeout {JOIN_TIMEOUT:?}): {err}"
    );
    let MembershipError::VotersDown { down, .. } = &err else {
        panic!("not the voter-down refusal: {err}");
    };
    assert_eq!(
        down.iter()
            .map(|(id, name, _)| (*id, name.as_str()))
            .collect::<Vec<_>>(),
        [(victim_id, c.node(victim).name.as_str())],
        "{err}"
    );
    let message = err.to_string();
    for part in [
        format!("voting member {victim_id} (node{victim}: "),
        "is down".to_string(),
        format!("remove-member --id {victim_id}"),
    ] {
        assert!(message.contains(&part), "{part:?} is not in: {message}");
    }
    // Refused in preflight, before any add (it would have been retried on "unhealthy
    // cluster" until the timeout); the error names the voter, so no separate
    // "voter down" event repeats it.
    {
        let events = events.lock().unwrap();
        assert!(
            !events.iter().any(|e| matches!(
                e,
                Event::Retrying { .. } | Event::LearnerAdded { .. } | Event::VoterDown { .. }
            )),
            "{events:?}"
        );
    }
    faults::assert_invariants(
        &c,
        &survivors,
        Expected {
            voters: &[0, 1, 2],
            learners: &[],
        },
        &keys,
    )
    .await;

    // What the message says to do works: remove the dead voter, then join.
    let removed = remove::remove(
        &faults::client_via(&c, &survivors, 0),
        &RemoveOptions {
            selector: Selector::Id(victim_id),
            force: false,
            dry_run: false,
            timeout: std::time::Duration::from_secs(30),
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(
            removed,
            RemoveOutcome::Removed {
                was_learner: false,
                ..
            }
        ),
        "{removed:?}"
    );
    let id = join(&c, &survivors, 3, &events).await;
    c.start(3);
    let p = promote::promote(
        &faults::client_via(&c, &survivors, 3),
        &promote_options(&c, 3, PROMOTE_TIMEOUT),
        &mut |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("promote node3: {e}\n{}", c.log_tail(3)));
    assert_eq!(p.id, id);
    let mut members: Vec<usize> = survivors.clone();
    members.push(3);
    faults::assert_invariants(
        &c,
        &survivors,
        Expected {
            voters: &members,
            learners: &[],
        },
        &keys,
    )
    .await;
}

async fn voter_down_accepted(mut run: Run) {
    let c = TestCluster::new(run.version, run.test_id, 5);
    faults::start_voters(&c, 4);
    let voters = [0, 1, 2, 3];
    let keys = write_data(&c, &voters, false).await;
    let victim = run.rng.below(4) as usize;
    let victim_id = faults::client_via(&c, &[victim], 0)
        .status(&c.node(victim).client_url())
        .await
        .unwrap()
        .member_id;
    c.kill(victim);
    let survivors: Vec<usize> = (0..4).filter(|&n| n != victim).collect();
    faults::leader(&c, &survivors).await;

    let events = Mutex::new(Vec::new());
    let id = join(&c, &voters, 4, &events).await;
    {
        let events = events.lock().unwrap();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::VoterDown { id, .. } if *id == victim_id)),
            "no VoterDown event for {victim_id}: {events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::LearnerAdded { .. })),
            "{events:?}"
        );
    }
    assert_ne!(id, victim_id);
    faults::assert_invariants(
        &c,
        &survivors,
        Expected {
            voters: &voters,
            learners: &[4],
        },
        &keys,
    )
    .await;
}

crate::etcd_matrix!(async leader_killed_while_a_learner_catches_up => |v| {
    faults::run_scenario("leader-killed", v, 60, RUN_TIMEOUT, leader_killed)
});
crate::etcd_matrix!(async learner_paused_while_catching_up => |v| {
    faults::run_scenario("learner-paused", v, 62, RUN_TIMEOUT, learner_paused)
});
crate::etcd_matrix!(async three_joins_at_once => |v| {
    faults::run_scenario("three-joins", v, 64, RUN_TIMEOUT, three_joins)
});
crate::etcd_matrix!(async a_voter_down_refuses_the_join => |v| {
    faults::run_scenario("voter-down", v, 66, RUN_TIMEOUT, voter_down)
});

// Four voters, one down, on a release with the relaxed rule (3.5.30, 3.6.11 and later):
// the three connected voters are a quorum of the five members a learner makes, so etcd
// accepts the add, and so must the preflight: the join goes on, reports the down voter,
// and the learner is added. One version (the rule is the same on 3.5.30 and 3.7.1, and
// the refusing side runs on all of them above) to keep the suite's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_down_of_four_lets_the_join_through_etcd_3_6_14() {
    faults::run_scenario(
        "voter-down-accepted",
        EtcdVersion::V3_6_14,
        67,
        RUN_TIMEOUT,
        voter_down_accepted,
    )
    .await;
}
