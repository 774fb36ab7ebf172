//! Every transition of the membership loops (promote's wait, join's add loop, remove,
//! status, check-health), driven through the `Cluster` seam by a scripted etcd
//! (`membership::fake`) on a paused tokio clock: minutes of etcd time run in
//! milliseconds, and the cases real etcd cannot be made to produce on demand (a slow
//! Status, a lost answer, an election in the middle of a promotion) are exact.
//!
//! The real-etcd tests (`learner.rs`, `faults.rs`) stay: these add the timing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use phases::membership::fake::{self, Call, FakeCluster, Op};
use phases::membership::join::{self, AddOutcome, JoinOptions};
use phases::membership::promote::{self, PromoteOptions, PromoteOutcome};
use phases::membership::remove::{self, RemoveOptions, RemoveOutcome};
use phases::membership::{
    health, status, update, Cluster, EtcdErrorKind, Event, MemberId, MembershipError, RetryReason,
    RpcError, Selector,
};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn rpc(kind: EtcdErrorKind, message: &str) -> RpcError {
    RpcError {
        kind,
        message: message.to_string(),
    }
}

/// The events a run reported, shared with the reporter closure.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Event>>>);

impl Log {
    fn reporter(&self) -> impl FnMut(Event) + Send + 'static {
        let log = self.0.clone();
        move |e| log.lock().unwrap().push(e)
    }

    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// The kinds of events in order, consecutive repeats folded.
    fn kinds(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for e in self.events() {
            let kind = match e {
                Event::Endpoints { .. } => "endpoints",
                Event::ClusterHealthy { .. } => "healthy",
                Event::VoterDown { .. } => "voter-down",
                Event::DataDirWiped { .. } => "wiped",
                Event::StaleMemberRemoved { .. } => "stale-removed",
                Event::MemberReused { .. } => "reused",
                Event::LearnerAdded { .. } => "added",
                Event::Retrying { .. } => "retrying",
                Event::WaitingForStart { .. } => "waiting",
                Event::Started { .. } => "started",
                Event::Progress { .. } => "progress",
                Event::SnapshotProgress { .. } => "snapshot",
                Event::LearnerNotAnswering { .. } => "not-answering",
                Event::AlreadyVoter { .. } => "already-voter",
                Event::Promoted { .. } => "promoted",
                Event::WaitingForHealth { .. } => "waiting-for-health",
            };
            if out.last() != Some(&kind) {
                out.push(kind);
            }
        }
        out
    }

    fn retries(&self) -> Vec<(RetryReason, String)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Retrying {
                    reason, message, ..
                } => Some((reason, message)),
                _ => None,
            })
            .collect()
    }
}

fn promote_opts(id: MemberId, timeout: f64) -> PromoteOptions {
    PromoteOptions {
        selectors: vec![Selector::Id(id)],
        timeout: secs(timeout),
        health_timeout: secs(40.0),
        stall_timeout: None,
        rollback_on_timeout: false,
        local: None,
    }
}

/// A cluster of `voters` and node `n` as a started learner at `percent` of the log.
fn with_learner(voters: usize, version: &str, percent: u64) -> (FakeCluster, MemberId) {
    let fake = FakeCluster::new(voters, version);
    let n = voters;
    let id = fake.with(|s| {
        let id = s.add_unstarted_learner(n);
        s.start(id, n);
        s.set_progress(id, percent);
        id
    });
    (fake, id)
}

async fn run_promote(
    fake: &FakeCluster,
    id: MemberId,
    timeout: f64,
) -> (Result<promote::Promoted, MembershipError>, Log) {
    let log = Log::default();
    let mut report = log.reporter();
    let r = promote::promote(fake, &promote_opts(id, timeout), &mut report).await;
    (r, log)
}

fn promotes(fake: &FakeCluster) -> usize {
    fake.calls()
        .iter()
        .filter(|c| matches!(c, Call::Promote { .. }))
        .count()
}

// --- promote: the stages -----------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_learner_that_starts_late_is_waited_for_then_promoted() {
    let fake = FakeCluster::new(1, "3.5.30");
    let id = fake.with(|s| s.add_unstarted_learner(1));
    fake.at(secs(2.9), move |s| {
        s.start(id, 1);
        s.set_progress(id, 100);
    });
    let (r, log) = run_promote(&fake, id, 60.0).await;
    let p = r.unwrap();
    assert_eq!(p.outcome, PromoteOutcome::Promoted);
    assert!(
        p.waited >= secs(2.9) && p.waited < secs(3.2),
        "{:?}",
        p.waited
    );
    assert_eq!(
        log.kinds(),
        ["endpoints", "waiting", "started", "progress", "promoted"]
    );
    // One "waiting" event per second: at 0, after 1 and after 2 s.
    let waiting = log
        .events()
        .iter()
        .filter(|e| matches!(e, Event::WaitingForStart { .. }))
        .count();
    assert_eq!(waiting, 3);
    assert_eq!(fake.calls(), [Call::Promote { id }]);
    assert!(fake.members().iter().all(|m| !m.is_learner));
}

#[tokio::test(start_paused = true)]
async fn a_learner_slow_to_answer_status_but_alive_is_promoted_on_etcds_word() {
    // Status takes longer than the client's RPC timeout (a learner applying a large
    // log), but the learner answers the cheaper call: alive, so etcd decides.
    let (fake, id) = with_learner(1, "3.5.30", 100);
    fake.with(|s| s.member_mut(id).status_delay = secs(10.0));
    // It answers Status again once it has applied everything.
    fake.at(secs(20.0), move |s| {
        s.member_mut(id).status_delay = secs(0.001)
    });
    let (r, log) = run_promote(&fake, id, 60.0).await;
    assert_eq!(r.unwrap().outcome, PromoteOutcome::Promoted);
    let kinds = log.kinds();
    assert!(!kinds.contains(&"not-answering"), "{kinds:?}");
    // Promoted at once, without any progress known: the promotion came from etcd's
    // rule, the health wait after it waited for Status to answer.
    assert_eq!(kinds[..2], ["endpoints", "promoted"], "{kinds:?}");
    assert_eq!(promotes(&fake), 1);
}

#[tokio::test(start_paused = true)]
async fn a_learner_whose_gate_refuses_status_is_promoted_on_etcds_word() {
    let (fake, id) = with_learner(1, "3.5.30", 100);
    fake.with(|s| s.member_mut(id).status_refused = true);
    let (r, log) = run_promote(&fake, id, 60.0).await;
    assert_eq!(r.unwrap().outcome, PromoteOutcome::Promoted);
    assert_eq!(log.kinds(), ["endpoints", "promoted"]);
}

#[tokio::test(start_paused = true)]
async fn a_learner_that_catches_up_then_stalls_is_diagnosed_as_stuck() {
    let (fake, id) = with_learner(1, "3.5.30", 10);
    fake.at(secs(1.0), move |s| s.set_progress(id, 30));
    fake.at(secs(2.0), move |s| s.set_progress(id, 40));
    let (r, log) = run_promote(&fake, id, 10.0).await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, MembershipError::Stuck { percent: 40, waited, .. } if waited >= secs(10.0) && waited < secs(10.1)),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "the learner {id} (node1) started but is stuck at 40% of the leader's log after 10"
        )),
        "{message}"
    );
    assert!(
        message.ends_with("it has not caught up enough to be promoted (etcd needs 90%); a large database may need a longer --timeout"),
        "{message}"
    );
    assert_eq!(err.rollback_id(), Some(id));
    let progress: Vec<f64> = log
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Progress { percent, .. } => Some(*percent),
            _ => None,
        })
        .collect();
    assert_eq!(progress, [10.0, 30.0, 40.0]);
    assert_eq!(promotes(&fake), 0, "never tried below 90%");
}

#[tokio::test(start_paused = true)]
async fn not_in_sync_is_retried_until_etcd_accepts() {
    let (fake, id) = with_learner(1, "3.5.30", 95);
    fake.fail_next(
        Op::Promote,
        3,
        rpc(
            EtcdErrorKind::LearnerNotReady,
            "etcdserver: can only promote a learner member which is in sync with leader",
        ),
        false,
    );
    let (r, log) = run_promote(&fake, id, 60.0).await;
    let p = r.unwrap();
    assert_eq!(p.outcome, PromoteOutcome::Promoted);
    assert_eq!(promotes(&fake), 4);
    // Reported once, not per attempt; backing off 25, 50, 100 ms.
    let retries = log.retries();
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0].0, RetryReason::LearnerNotReady);
    assert!(p.waited < secs(0.3), "{:?}", p.waited);
}

#[tokio::test(start_paused = true)]
async fn a_failed_promotion_that_landed_counts_as_promoted() {
    let (fake, id) = with_learner(3, "3.5.30", 100);
    fake.fail_next(
        Op::Promote,
        1,
        rpc(EtcdErrorKind::Timeout, "no answer within 2s"),
        true,
    );
    let (r, log) = run_promote(&fake, id, 60.0).await;
    assert_eq!(r.unwrap().outcome, PromoteOutcome::PromotedAfterError);
    assert!(log.events().iter().any(|e| matches!(
        e,
        Event::Promoted {
            after_error: true,
            ..
        }
    )));
    assert_eq!(promotes(&fake), 1, "not promoted twice");
}

#[tokio::test(start_paused = true)]
async fn a_learner_removed_before_it_starts_ends_the_wait() {
    let fake = FakeCluster::new(1, "3.5.30");
    let id = fake.with(|s| s.add_unstarted_learner(1));
    fake.at(secs(2.0), move |s| s.members.retain(|m| m.info.id != id));
    let (r, _) = run_promote(&fake, id, 60.0).await;
    let err = r.unwrap_err();
    assert!(
        matches!(err, MembershipError::LearnerRemoved { .. }),
        "{err}"
    );
    assert!(fake.elapsed() < secs(2.5), "{:?}", fake.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_learner_removed_while_catching_up_ends_the_wait() {
    let (fake, id) = with_learner(1, "3.5.30", 50);
    // Removed, its process stops: it no longer answers, and the list says why.
    fake.at(secs(2.0), move |s| s.members.retain(|m| m.info.id != id));
    let (r, log) = run_promote(&fake, id, 60.0).await;
    let err = r.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("the learner {id} was removed from the cluster while waiting to promote it")
    );
    assert!(fake.elapsed() < secs(2.5), "{:?}", fake.elapsed());
    assert!(!log.kinds().contains(&"not-answering"));
}

#[tokio::test(start_paused = true)]
async fn promotion_waits_out_a_leader_election() {
    // Three voters, the leader dies as promote starts; node1 wins 1.5 s later. The
    // learner knows no leader meanwhile, then follows the new one.
    let (fake, id) = with_learner(3, "3.5.30", 100);
    fake.with(|s| s.kill(fake::node_id(0)));
    fake.at(secs(1.5), |s| s.elect(fake::node_id(1)));
    // The first attempt after the election still meets a leader change.
    fake.fail_next(
        Op::Promote,
        1,
        rpc(EtcdErrorKind::NoLeader, "etcdserver: leader changed"),
        false,
    );
    let (r, log) = run_promote(&fake, id, 60.0).await;
    let p = r.unwrap();
    assert_eq!(p.outcome, PromoteOutcome::Promoted);
    assert!(p.waited >= secs(1.5), "{:?}", p.waited);
    let retries = log.retries();
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0].0, RetryReason::Unavailable);
    // 4 voters, the dead one among them.
    let members = fake.members();
    assert_eq!(members.iter().filter(|m| !m.is_learner).count(), 4);
}

#[tokio::test(start_paused = true)]
async fn promotion_waits_while_the_grown_cluster_would_lack_quorum() {
    // Two of three voters report an alarm (unhealthy): with the learner promoted, 3 of
    // 4 would have to be healthy and only 2 are. Once one alarm clears, it goes ahead.
    let (fake, id) = with_learner(3, "3.5.30", 100);
    fake.with(|s| {
        for n in [1, 2] {
            s.member_mut(fake::node_id(n)).errors = vec![format!("memberID:{n} alarm:NOSPACE")];
        }
    });
    fake.at(secs(5.0), |s| s.member_mut(fake::node_id(1)).errors.clear());
    let (r, log) = run_promote(&fake, id, 60.0).await;
    assert_eq!(r.unwrap().outcome, PromoteOutcome::Promoted);
    let retries = log.retries();
    assert!(
        retries[0].1 == "1 of 3 voting members are healthy; with the learner promoted 3 of 4 would be needed",
        "{retries:?}"
    );
    assert!(fake.elapsed() >= secs(5.0));
}

// --- promote: timeouts at each stage -----------------------------------------------

#[tokio::test(start_paused = true)]
async fn timeout_before_the_start_says_never_started() {
    let fake = FakeCluster::new(1, "3.5.30");
    let id = fake.with(|s| s.add_unstarted_learner(1));
    let (r, _) = run_promote(&fake, id, 30.0).await;
    let err = r.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("the learner {id} (https://10.0.0.2:2380) never started within 30s: no etcd process has joined with that peer URL (is the static Pod running? check the kubelet and the etcd container's log)")
    );
    assert_eq!(err.rollback_id(), Some(id));
    assert_eq!(fake.elapsed(), secs(30.0));
}

#[tokio::test(start_paused = true)]
async fn timeout_while_the_learner_is_down_says_unreachable_and_never_promotes() {
    let (fake, id) = with_learner(1, "3.5.30", 100);
    fake.with(|s| s.kill(id));
    let (r, log) = run_promote(&fake, id, 20.0).await;
    let err = r.unwrap_err();
    assert!(matches!(err, MembershipError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "refusing to promote the learner {id} (node1): it does not answer on its client URL https://10.0.0.2:2379"
        )),
        "{err}"
    );
    assert_eq!(promotes(&fake), 0);
    assert_eq!(log.kinds(), ["endpoints", "not-answering"]);
}

#[tokio::test(start_paused = true)]
async fn a_learner_that_comes_back_is_promoted() {
    let (fake, id) = with_learner(1, "3.5.30", 100);
    fake.with(|s| s.member_mut(id).up = false);
    fake.at(secs(4.0), move |s| s.member_mut(id).up = true);
    let (r, log) = run_promote(&fake, id, 20.0).await;
    assert_eq!(r.unwrap().outcome, PromoteOutcome::Promoted);
    assert_eq!(
        log.kinds(),
        [
            "endpoints",
            "not-answering",
            "started",
            "progress",
            "promoted"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_while_etcd_keeps_saying_not_in_sync_gives_etcds_word() {
    let (fake, id) = with_learner(1, "3.5.30", 95);
    fake.fail_next(
        Op::Promote,
        usize::MAX >> 48,
        rpc(
            EtcdErrorKind::LearnerNotReady,
            "etcdserver: can only promote a learner member which is in sync with leader",
        ),
        false,
    );
    let (r, _) = run_promote(&fake, id, 15.0).await;
    let err = r.unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("timed out after 15"), "{message}");
    assert!(
        message.ends_with(&format!("waiting to promote the learner {id} (node1): etcdserver: can only promote a learner member which is in sync with leader")),
        "{message}"
    );
    assert_eq!(err.rollback_id(), None);
}

#[tokio::test(start_paused = true)]
async fn timeout_waiting_for_health_after_the_promotion() {
    let (fake, id) = with_learner(1, "3.5.30", 100);
    // Promoted, but the new voter never reports healthy (an alarm).
    fake.with(|s| s.member_mut(id).errors = vec!["memberID:1 alarm:CORRUPT".to_string()]);
    let log = Log::default();
    let mut report = log.reporter();
    let mut opts = promote_opts(id, 60.0);
    opts.health_timeout = secs(8.0);
    let err = promote::promote(&fake, &opts, &mut report)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("timed out after 8"), "{message}");
    assert!(
        message.ends_with(&format!(
            "waiting to see the cluster healthy with member {id} as a voter: member {id} is not healthy as a voter yet"
        )),
        "{message}"
    );
    assert!(log.kinds().contains(&"promoted"));
}

#[tokio::test(start_paused = true)]
async fn a_voter_is_already_promoted_and_nothing_is_called() {
    let fake = FakeCluster::new(2, "3.5.30");
    let (r, log) = run_promote(&fake, fake::node_id(1), 10.0).await;
    assert_eq!(r.unwrap().outcome, PromoteOutcome::AlreadyVoter);
    assert_eq!(log.kinds(), ["endpoints", "already-voter"]);
    assert!(fake.calls().is_empty());
}

// --- join: the add loop and its preflight ------------------------------------------

fn join_opts(n: usize, timeout: f64, dir: &std::path::Path) -> JoinOptions {
    JoinOptions {
        name: format!("node{n}"),
        peer_url: fake::peer_url(n),
        data_dir: dir.join(format!("data{n}")),
        wipe_data_dir: false,
        replace: false,
        timeout: secs(timeout),
        dry_run: false,
    }
}

async fn run_join(
    fake: &FakeCluster,
    opts: &JoinOptions,
) -> (Result<join::Joined, MembershipError>, Log) {
    let log = Log::default();
    let mut report = log.reporter();
    let r = join::add_learner(fake, opts, &mut report).await;
    (r, log)
}

#[tokio::test(start_paused = true)]
async fn too_many_learners_waits_for_the_other_join() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeCluster::new(1, "3.5.30");
    let other = fake.with(|s| s.add_unstarted_learner(1));
    // The other join's learner starts and is promoted after 3 s.
    fake.at(secs(3.0), move |s| {
        s.start(other, 1);
        s.member_mut(other).info.is_learner = false;
        s.member_mut(other).raft_index = 10_000;
    });
    let (r, log) = run_join(&fake, &join_opts(2, 30.0, dir.path())).await;
    let joined = r.unwrap();
    assert_eq!(joined.outcome, AddOutcome::Added);
    let retries = log.retries();
    assert_eq!(
        retries[0],
        (
            RetryReason::OtherLearner {
                id: other,
                name: other.to_string()
            },
            format!("etcdserver: too many learner members in cluster (learner {other} is joining; etcd 3.5.30 allows one learner at a time)")
        )
    );
    assert!(fake.elapsed() >= secs(3.0) && fake.elapsed() < secs(4.0));
}

#[tokio::test(start_paused = true)]
async fn the_learner_limit_of_etcd_3_6_is_inferred_and_named_on_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeCluster::new(1, "3.6.14");
    let (a, b) = fake.with(|s| {
        s.max_learners = 2;
        (s.add_unstarted_learner(1), s.add_unstarted_learner(2))
    });
    let (r, log) = run_join(&fake, &join_opts(3, 5.0, dir.path())).await;
    let err = r.unwrap_err();
    assert_eq!(
        log.retries()[0].1,
        format!("etcdserver: too many learner members in cluster (learners {a}, {b} are joining; etcd allows 2 learners at a time here (its --max-learners, inferred from the learners in the member list: no RPC reports it))")
    );
    assert!(
        err.to_string().ends_with(&format!(
            "if that join has failed, roll it back with `kubeadm-etcd phase etcd remove-member --id {a}` or `kubeadm-etcd phase etcd remove-member --id {b}`"
        )),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(
            "timed out after 4.5s waiting to add https://10.0.0.4:2380 as a learner: "
        ),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_third_learner_is_accepted_where_max_learners_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeCluster::new(1, "3.6.14");
    fake.with(|s| {
        s.max_learners = 3;
        s.add_unstarted_learner(1);
        s.add_unstarted_learner(2);
    });
    let (r, log) = run_join(&fake, &join_opts(3, 5.0, dir.path())).await;
    assert_eq!(r.unwrap().outcome, AddOutcome::Added);
    assert!(log.retries().is_empty());
}

#[tokio::test(start_paused = true)]
async fn unhealthy_cluster_right_after_a_promotion_is_retried_for_now() {
    // Every voter answers, so etcd's refusal is its 5 s window after a (re)connection.
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeCluster::new(3, "3.5.30");
    fake.fail_next(
        Op::AddLearner,
        4,
        rpc(EtcdErrorKind::Unhealthy, "etcdserver: unhealthy cluster"),
        false,
    );
    let (r, log) = run_join(&fake, &join_opts(3, 30.0, dir.path())).await;
    assert_eq!(r.unwrap().outcome, AddOutcome::Added);
    let retries = log.retries();
    assert_eq!(retries.len(), 4);
    assert!(retries.iter().all(|r| r.0 == RetryReason::Unhealthy));
    assert!(
        fake.elapsed() >= secs(2.0) && fake.elapsed() < secs(2.1),
        "{:?}",
        fake.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn unhealthy_cluster_because_a_voter_went_down_is_refused_at_once() {
    // The preflight saw every voter; then one went down and etcd refuses: that will not
    // pass, so the join stops instead of retrying until its timeout.
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeCluster::new(3, "3.5.30");
    fake.fail_next(
        Op::AddLearner,
        1,
        rpc(EtcdErrorKind::Unhealthy, "etcdserver: unhealthy cluster"),
        false,
    );
    let victim = fake::node_id(2);
    let killer = fake.clone();
    let log = Log::default();
    let mut report = {
        let mut inner = log.reporter();
        move |e: Event| {
            // The voter dies between the preflight and the add.
            if matches!(e, Event::ClusterHealthy { .. }) {
                killer.with(|s| s.kill(victim));
            }
            inner(e)
        }
    };
    let err = join::add_learner(&fake, &join_opts(3, 600.0, dir.path()), &mut report)
        .await
        .unwrap_err();
    assert!(matches!(err, MembershipError::VotersDown { .. }), "{err}");
    assert!(log.retries().is_empty());
    assert!(fake.elapsed() < secs(1.0), "{:?}", fake.elapsed());
}

/// The preflight's prediction against etcd's rule (the fake's, written from etcd's
/// source), for each release line and member count: refused at once exactly where etcd
/// would refuse, and the join goes through where etcd accepts.
#[tokio::test(start_paused = true)]
async fn preflight_predicts_etcds_add_decision() {
    let dir = tempfile::tempdir().unwrap();
    for version in ["3.4.23", "3.5.29", "3.5.30", "3.6.10", "3.6.11", "3.7.1"] {
        for (voters, down) in [
            (1, 0),
            (3, 1),
            (4, 1),
            (5, 1),
            (5, 2),
            (6, 2),
            (7, 2),
            (7, 3),
        ] {
            let case = format!("{version}, {voters} voters, {down} down");
            let fake = FakeCluster::new(voters, version);
            let killed: Vec<MemberId> = (voters - down..voters).map(fake::node_id).collect();
            fake.with(|s| killed.iter().for_each(|id| s.kill(*id)));
            // What etcd itself answers, asked directly on a copy of the cluster.
            let probe = FakeCluster::new(voters, version);
            probe.with(|s| killed.iter().for_each(|id| s.kill(*id)));
            let etcd_accepts = probe.add_learner("https://10.9.9.9:2380").await.is_ok();

            let (r, log) = run_join(&fake, &join_opts(voters, 5.0, dir.path())).await;
            match r {
                Ok(joined) => {
                    assert!(etcd_accepts, "{case}: joined where etcd refuses");
                    assert_eq!(joined.outcome, AddOutcome::Added, "{case}");
                    assert!(log.retries().is_empty(), "{case}");
                    let warned = log
                        .events()
                        .iter()
                        .filter(|e| matches!(e, Event::VoterDown { .. }))
                        .count();
                    assert_eq!(warned, down, "{case}");
                }
                Err(err) => {
                    assert!(!etcd_accepts, "{case}: refused where etcd accepts: {err}");
                    let MembershipError::VotersDown { down: named, .. } = &err else {
                        panic!("{case}: {err}");
                    };
                    let named: Vec<MemberId> = named.iter().map(|d| d.0).collect();
                    assert_eq!(named, killed, "{case}");
                    for id in &killed {
                        assert!(
                            err.to_string().contains(&format!(
                                "`kubeadm-etcd phase etcd remove-member --id {id}`"
                            )),
                            "{case}: {err}"
                        );
                    }
                    assert!(fake.calls().is_empty(), "{case}: nothing added");
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_refusal_says_which_rule_applies() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeCluster::new(3, "3.5.30");
    fake.with(|s| s.kill(fake::node_id(2)));
    let (r, _) = run_join(&fake, &join_opts(3, 5.0, dir.path())).await;
    let err = r.unwrap_err().to_string();
    assert!(
        err.starts_with("refusing to add a member while voting member a2 (node2: "),
        "{err}"
    );
    assert!(
        err.contains("is down: etcd 3.5.30 accepts a member add only while the voting members it is connected to, itself included, make a quorum of the grown cluster: 3 of 4, and 2 of 3 answer. Start it again, or remove it first with `kubeadm-etcd phase etcd remove-member --id a2`, then rerun the join"),
        "{err}"
    );

    let fake = FakeCluster::new(5, "3.5.29");
    fake.with(|s| s.kill(fake::node_id(4)));
    let (r, _) = run_join(&fake, &join_opts(5, 5.0, dir.path())).await;
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("etcd 3.5.29 refuses every member add, even a learner's, until all voting members answer (relaxed in 3.5.30 and 3.6.11), and 4 of 5 answer"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_add_whose_answer_was_lost_is_found_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeCluster::new(1, "3.6.14");
    fake.fail_next(
        Op::AddLearner,
        1,
        rpc(EtcdErrorKind::Timeout, "no answer within 2s"),
        true,
    );
    let (r, _) = run_join(&fake, &join_opts(1, 30.0, dir.path())).await;
    let joined = r.unwrap();
    assert_eq!(
        joined.outcome,
        AddOutcome::Reused {
            is_learner: true,
            started: false
        }
    );
    assert_eq!(fake.calls().len(), 1);
    assert_eq!(fake.members().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn join_waits_out_an_election_at_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeCluster::new(3, "3.6.14");
    fake.with(|s| s.leader = None);
    fake.at(secs(1.2), |s| s.elect(fake::node_id(1)));
    let (r, _) = run_join(&fake, &join_opts(3, 30.0, dir.path())).await;
    assert_eq!(r.unwrap().outcome, AddOutcome::Added);
    assert!(fake.elapsed() >= secs(1.2));
}

// --- remove --------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn remove_refuses_to_break_quorum_and_finds_a_landed_removal() {
    let fake = FakeCluster::new(3, "3.5.30");
    fake.with(|s| s.kill(fake::node_id(2)));
    let opts = |sel: Selector| RemoveOptions {
        selector: sel,
        force: false,
        dry_run: false,
        timeout: secs(10.0),
    };
    let err = remove::remove(&fake, &opts(Selector::Name("node1".into())))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "refusing to remove member a1 (node1): of the 2 voting members that would remain, 1 are started and healthy but 2 are needed for quorum. Pass --force to do it anyway"
    );
    assert!(fake.calls().is_empty());

    // The dead one goes; the answer is lost but the removal landed.
    fake.fail_next(
        Op::Remove,
        1,
        rpc(EtcdErrorKind::Timeout, "no answer within 2s"),
        true,
    );
    let removed = remove::remove(&fake, &opts(Selector::Id(fake::node_id(2))))
        .await
        .unwrap();
    assert!(
        matches!(removed, RemoveOutcome::Removed { .. }),
        "{removed:?}"
    );
    let again = remove::remove(&fake, &opts(Selector::Id(fake::node_id(2))))
        .await
        .unwrap();
    assert!(
        matches!(again, RemoveOutcome::NotAMember { .. }),
        "{again:?}"
    );
}

// --- MemberUpdate is never sent for a learner -----------------------------------------

#[tokio::test(start_paused = true)]
async fn peer_urls_of_a_learner_are_never_updated() {
    let (fake, id) = with_learner(1, "3.5.30", 50);
    let urls = vec!["https://10.0.1.2:2380".to_string()];
    let err = update::update_peer_urls(&fake, &Selector::Id(id), &urls)
        .await
        .unwrap_err();
    assert!(
        matches!(err, MembershipError::LearnerUpdate { .. }),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "refusing to change the peer URLs of the learner {id} (node1): etcd before 3.5.31 and 3.6.12 turns a learner into a voter"
        )),
        "{err}"
    );
    assert!(fake.calls().is_empty(), "no MemberUpdate sent");
    assert!(fake.with(|s| s.member(id).info.is_learner));

    // A voter's peer URLs are updated.
    let voter = fake::node_id(0);
    update::update_peer_urls(&fake, &Selector::Id(voter), &urls)
        .await
        .unwrap();
    assert_eq!(
        fake.calls(),
        [Call::UpdatePeerUrls {
            id: voter,
            was_learner: false
        }]
    );

    // Why: the unguarded call on this release makes the learner a voter in the list.
    fake.update_peer_urls(id, &urls).await.unwrap();
    assert!(!fake.with(|s| s.member(id).info.is_learner));
}

// --- status and check-health -----------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn status_shows_what_etcd_3_6_reports() {
    let fake = FakeCluster::new(1, "3.6.14");
    fake.with(|s| {
        let m = s.member_mut(fake::node_id(0));
        m.errors = vec!["memberID:160 alarm:NOSPACE ".to_string()];
        m.db_size = 2_000_000;
        m.db_size_in_use = 1_500_000;
    });
    let report = status::collect(&fake).await.unwrap();
    let row = &report.members[0];
    assert_eq!(row.storage_version.as_deref(), Some("3.6.0"));
    assert_eq!(row.db_size_in_use, Some(1_500_000));
    assert_eq!(row.db_size_quota, Some(2 << 30));
    assert_eq!(row.alarms, ["memberID:160 alarm:NOSPACE"]);
    assert!(row.errors.is_empty() && !row.healthy);
    let health = health::evaluate(report);
    assert!(
        health.warnings[0]
            .starts_with("voting member a0 (node0) is unhealthy: memberID:160 alarm:NOSPACE"),
        "{:?}",
        health.warnings
    );

    // 3.5 has no storage version or quota to show.
    let report = status::collect(&FakeCluster::new(1, "3.5.30"))
        .await
        .unwrap();
    assert_eq!(report.members[0].storage_version, None);
    assert_eq!(report.members[0].db_size_quota, None);
}

#[tokio::test(start_paused = true)]
async fn status_without_quorum_still_reports_from_one_members_view() {
    let fake = FakeCluster::new(3, "3.6.14");
    fake.with(|s| {
        s.kill(fake::node_id(0));
        s.kill(fake::node_id(1));
    });
    let report = status::collect(&fake).await.unwrap();
    assert!(!report.member_list_linearizable && !report.quorum);
    assert_eq!(report.member_list_served_by, fake::client_url(2));
    assert_eq!(report.members.len(), 3);
    assert_eq!(
        report.warnings,
        [
            "quorum lost: 0 of 3 voting members are healthy, 2 are needed; nothing can be written and no membership change can commit until 2 more are (unhealthy: a0 (node0), a1 (node1), a2 (node2))",
            "no leader: the member list is https://10.0.0.3:2379's own view (a serializable read), which may miss the latest membership changes",
        ]
    );
    let health = health::evaluate(report);
    assert!(!health.healthy);
}

#[tokio::test(start_paused = true)]
async fn releases_that_lose_promotions_on_upgrade_are_named() {
    let fake = FakeCluster::new(3, "3.5.16");
    fake.with(|s| s.member_mut(fake::node_id(2)).version = "3.5.20".into());
    let report = status::collect(&fake).await.unwrap();
    let expected = "member a0 (node0) runs etcd 3.5.16, member a1 (node1) runs etcd 3.5.16: etcd 3.5.1 to 3.5.19 does not persist learner promotions to the v3 store (etcd#19557), so upgraded to 3.6 from there, voting members can turn back into learners and the upgrade fails with \"too many learner members\". Upgrade every member to 3.5.24 or newer first, then to 3.6";
    assert_eq!(report.warnings, [expected]);
    let health = health::evaluate(report);
    assert!(health.healthy);
    assert_eq!(health.warnings, [expected]);

    for version in ["3.5.0", "3.5.20", "3.5.30", "3.6.14", "3.4.23"] {
        let report = status::collect(&FakeCluster::new(1, version))
            .await
            .unwrap();
        assert!(
            report.warnings.is_empty(),
            "{version}: {:?}",
            report.warnings
        );
    }
}

// --- promote: --stall-timeout and --rollback-on-timeout (issue 14) -----------------

fn stall_opts(id: MemberId, stall: f64, rollback: bool) -> PromoteOptions {
    PromoteOptions {
        stall_timeout: Some(secs(stall)),
        rollback_on_timeout: rollback,
        ..promote_opts(id, 60.0)
    }
}

fn removes(fake: &FakeCluster) -> Vec<MemberId> {
    fake.calls()
        .iter()
        .filter_map(|c| match c {
            Call::Remove { id } => Some(*id),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_learner_that_never_starts_stalls_and_is_removed_only_when_asked() {
    let fake = FakeCluster::new(1, "3.6.14");
    let id = fake.with(|s| s.add_unstarted_learner(1));
    let started = tokio::time::Instant::now();
    let err = promote::promote(&fake, &stall_opts(id, 5.0, false), &mut |_| {})
        .await
        .unwrap_err();
    // The stall bound, not the 60 s timeout.
    assert_eq!(started.elapsed().as_secs(), 5, "{err}");
    assert!(
        matches!(&err, MembershipError::Stalled { cause, .. } if matches!(**cause, MembershipError::NeverStarted { .. })),
        "{err}"
    );
    assert_eq!(err.rollback_id(), Some(id));
    assert!(removes(&fake).is_empty());
    assert!(fake.members().iter().any(|m| m.id == id && m.is_learner));

    let err = promote::promote(&fake, &stall_opts(id, 5.0, true), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, MembershipError::RolledBack { id: got, started: false, .. } if got == id),
        "{err}"
    );
    assert_eq!(removes(&fake), [id]);
    assert!(fake.members().iter().all(|m| m.id != id));
}

#[tokio::test(start_paused = true)]
async fn a_learner_that_keeps_progressing_is_not_stalled() {
    // 10% more every 3 s, a stall bound of 5 s: slow, never stalled.
    let (fake, id) = with_learner(1, "3.6.14", 10);
    for step in 1..=9u64 {
        fake.at(secs(3.0 * step as f64), move |s| {
            s.set_progress(id, 10 + 10 * step)
        });
    }
    let p = promote::promote(&fake, &stall_opts(id, 5.0, true), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(p.outcome, PromoteOutcome::Promoted);
    assert!(p.waited >= secs(24.0), "{:?}", p.waited);
    assert!(removes(&fake).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_rollback_never_removes_a_member_that_became_a_voter() {
    // Caught up, but every promotion call times out (its outcome unknown); then the
    // learner stops answering and stalls. The promotion lands late (etcd had it after
    // all): the rollback waits for such a proposal to settle, finds a voter, and leaves
    // it.
    let (fake, id) = with_learner(1, "3.6.14", 100);
    let timeout = RpcError {
        kind: EtcdErrorKind::Timeout,
        message: "no answer within 2s".into(),
    };
    fake.fail_next(Op::Promote, 1000, timeout, false);
    fake.at(secs(1.0), move |s| s.kill(id));
    fake.at(secs(8.0), move |s| {
        let m = s.member_mut(id);
        m.info.is_learner = false;
        m.up = true;
        m.connected = true;
    });
    let p = promote::promote(&fake, &stall_opts(id, 5.0, true), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(p.outcome, PromoteOutcome::PromotedAfterError);
    assert!(removes(&fake).is_empty(), "{:?}", fake.calls());
}
