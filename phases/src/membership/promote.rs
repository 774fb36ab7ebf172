//! `phase etcd promote`: make a learner a voter once it has caught up, and only if it is
//! alive.
//!
//! The learner is found by its ID, name or peer URL. The wait has three stages, each
//! reported: until it starts (publishes its name), while it catches up (its applied index
//! against the leader's raft index, from the Status RPC that learners serve; on the
//! learner's own node also a snapshot arriving, in bytes, see [`super::liveness`]), and
//! the promotion itself, retried while etcd says the learner is not in sync yet, each
//! attempt right after fresh evidence that the learner is alive. After the promotion the
//! cluster must be healthy with the new voter.
//!
//! Idempotent: a member that is already a voter is success, also when the promotion
//! landed but its answer was lost.

use std::time::Duration;

use tokio::time::Instant;

use super::cluster::Cluster;
use super::liveness::{LocalLearner, LocalWatch, SnapshotState, Vitals};
use super::status::progress_percent;
use super::{
    member_label, quorum, EtcdErrorKind, Event, MemberId, MemberInfo, MemberStatus, Membership,
    MembershipError, Reporter, Result, RetryReason, RpcError, Selector,
};

/// etcd's `readyPercent`: the leader refuses to promote a learner whose log is behind 90%
/// of its own. Our estimate uses the learner's committed index against the leader's,
/// which is close but not the leader's own record, so etcd's refusal stays a reason to
/// retry. (Progress is shown with the applied index, which is what a user waits for.)
pub const READY_PERCENT: f64 = 90.0;

/// How long to wait for the cluster to be healthy after a promotion: kubeadm's
/// `WaitForClusterAvailable(8, 5s)`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(40);

/// While the learner has not started: one member list, served locally by a voter (no
/// raft round trip), per interval. The interval stays short for [`START_FAST_FOR`], so
/// that a learner the kubelet starts at once (etcd publishes its name 0.1-1 s after the
/// manifest appears) is seen within 10 ms, as a loop retrying `member promote` every
/// 10 ms would; then it grows to [`START_POLL`] for one that takes minutes (an
/// image pull).
const START_POLL_FIRST: Duration = Duration::from_millis(10);
const START_FAST_FOR: Duration = Duration::from_secs(5);
const START_POLL: Duration = Duration::from_millis(250);
/// While far behind: two Status calls (learner, leader) per interval, both read-only and
/// answered locally, so neither the leader nor raft does any work for them.
const FAR_POLL: Duration = Duration::from_millis(250);
/// From half way: polls get closer so that readiness is seen within tens of ms.
const NEAR_POLL: Duration = Duration::from_millis(100);
/// After etcd said "not in sync yet" at our 90%: the leader's record of the learner
/// trails by about a heartbeat (100 ms), so retry soon, backing off to [`FAR_POLL`].
const NOT_READY_RETRY: Duration = Duration::from_millis(25);
/// A learner that takes longer than this to answer Status is busy (applying a large
/// log), not necessarily down: then a cheaper question decides whether it is alive.
const BUSY_AFTER: Duration = Duration::from_millis(500);
/// How much longer Status may take than the learner's metrics listener, on its own node,
/// while the learner has not served a client call since it started. A learner fed a
/// snapshot serves none until seconds after etcd would promote it (its first publish
/// times out, see the README's join benchmark): waiting for Status then would only put
/// promote behind etcd's pace. Once it has answered Status, [`BUSY_AFTER`] applies.
const LOCAL_BUSY_AFTER: Duration = Duration::from_millis(5);
/// After etcd said "not in sync yet" for a learner whose snapshot has landed: it accepts
/// any moment, and the refusal costs the leader nothing (it compares its own record of
/// the learner's log, no raft round), so retry at the pace of a 10 ms etcdctl loop.
const LANDED_RETRY: Duration = Duration::from_millis(10);
/// While a snapshot streams into the learner (seen in its data directory): how often
/// its progress is looked at. Nothing can be promoted before it has landed.
/// Short, since promote should try the moment it has landed (looking costs a directory
/// listing); the metrics listener is asked only every [`ALIVE_WHILE_RECEIVING`] meanwhile.
const SNAPSHOT_POLL: Duration = Duration::from_millis(20);
/// Once all of the leader's database has arrived: etcd fsyncs the file and renames it
/// (`SaveDBFrom`, tens of ms to seconds), and accepts the promotion a few ms after the
/// rename (seen in etcd's logs: `received and saved database snapshot` to `promote member`
/// in 8 ms for a 10 ms etcdctl loop). Looked at this often then, so that the rename is
/// seen within a few ms instead of within [`SNAPSHOT_POLL`].
const LANDING_POLL: Duration = Duration::from_millis(2);
/// Evidence that the learner is alive taken this recently is fresh enough for the
/// promotion call that follows: it is not asked for again (a metrics page per attempt
/// instead of two, while retrying every [`LANDED_RETRY`]).
const EVIDENCE_REUSE: Duration = Duration::from_millis(2);
const ALIVE_WHILE_RECEIVING: Duration = Duration::from_millis(500);
/// For this long after a snapshot has landed, the learner's own node retries the
/// promotion every [`LANDED_RETRY`] without waiting for the client URL, which serves
/// nothing until the snapshot is applied, while etcd may accept the promotion before.
const LANDED_FAST: Duration = Duration::from_secs(30);
/// How often the voters' health is checked again before another promotion attempt.
const QUORUM_RECHECK: Duration = Duration::from_secs(1);
/// At most one "waiting" event per interval.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Which learner, and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromoteOptions {
    /// Tried in order; the first that matches a member wins.
    pub selectors: Vec<Selector>,
    /// Bounds waiting for the start, the catch-up and the promotion.
    pub timeout: Duration,
    /// Bounds the health wait after the promotion.
    pub health_timeout: Duration,
    /// Give up earlier when the learner makes no progress for this long (`--stall-timeout`):
    /// it does not start, its applied index does not move while it is behind, it does
    /// not answer, or (on its own node) it runs but receives neither log nor snapshot
    /// bytes. `None`: only `timeout` bounds the wait.
    pub stall_timeout: Option<Duration>,
    /// On giving up (either bound), remove the learner (`--rollback-on-timeout`), so that
    /// it no longer blocks the next join. Off by default: an operator may want to look at
    /// it first.
    pub rollback_on_timeout: bool,
    /// This node's etcd manifest, when promote runs on the learner's own node: its
    /// metrics listener is then also evidence that the learner is alive (see
    /// [`super::liveness`]), and its data directory shows a snapshot arriving. Used only
    /// when the manifest runs the learner being promoted (same peer URL).
    pub local: Option<LocalLearner>,
}

/// A promotion call whose answer was lost may still commit: raft keeps the proposal
/// until it commits or a new leader drops it, which etcd bounds by its request timeout
/// (5 s plus two election timeouts, 7 s with the defaults). The rollback waits this long
/// after such a call before it checks that the member is still a learner.
pub const PROPOSAL_SETTLE: Duration = Duration::from_secs(10);

/// How the member became a voter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromoteOutcome {
    Promoted,
    /// The call failed, yet the member is a voter: the promotion landed.
    PromotedAfterError,
    /// It was a voter before we started (a rerun).
    AlreadyVoter,
}

/// The result of [`promote`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    pub id: MemberId,
    pub name: String,
    pub outcome: PromoteOutcome,
    /// From the start of the call to the promotion.
    pub waited: Duration,
    /// From the first time the learner looked ready to the promotion.
    pub since_ready: Option<Duration>,
}

/// Finds the member the selectors name, through a linearizable member list.
pub async fn find_member<C: Cluster>(client: &C, selectors: &[Selector]) -> Result<MemberInfo> {
    let membership = client.member_list().await?;
    select_member(client, &membership, selectors)
}

fn select_member<C: Cluster>(
    client: &C,
    membership: &Membership,
    selectors: &[Selector],
) -> Result<MemberInfo> {
    client.sync_endpoints(membership)?;
    for selector in selectors {
        if let Some(m) = selector.find(&membership.members)? {
            return Ok(m.clone());
        }
    }
    Err(MembershipError::MemberNotFound {
        selector: if selectors.is_empty() {
            "nothing (give --id, --node-name or an advertise address)".to_string()
        } else {
            selectors
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        },
    })
}

/// Waits for the learner to start and catch up, promotes it, and waits until the cluster
/// is healthy with it as a voter.
pub async fn promote<C: Cluster>(
    client: &C,
    opts: &PromoteOptions,
    report: Reporter<'_>,
) -> Result<Promoted> {
    let start = Instant::now();
    // Promote runs right after a join, and a leader that dies then must not fail it.
    let membership = client.member_list_until(start + opts.timeout).await?;
    let member = select_member(client, &membership, &opts.selectors)?;
    report(Event::Endpoints {
        endpoints: client.endpoints(),
    });
    let id = member.id;
    if !member.is_learner {
        report(Event::AlreadyVoter { id });
        wait_healthy_with(client, id, opts.health_timeout, report).await?;
        return Ok(Promoted {
            id,
            name: member.name,
            outcome: PromoteOutcome::AlreadyVoter,
            waited: start.elapsed(),
            since_ready: None,
        });
    }
    let local = opts.local.clone().and_then(|l| LocalWatch::new(l, &member));
    let mut w = Watch::new(member, start, opts.timeout, opts.stall_timeout);
    w.local = local;
    let outcome = match w.run(client, report).await {
        Ok(outcome) => outcome,
        Err(e) if opts.rollback_on_timeout && e.rollback_id() == Some(id) => {
            roll_back(client, &w, e, report).await?
        }
        Err(e) => return Err(e),
    };
    let promoted = Promoted {
        id,
        name: w.learner.name.clone(),
        outcome,
        waited: start.elapsed(),
        since_ready: w.seen.ready_since.map(|t| t.elapsed()),
    };
    wait_healthy_with(client, id, opts.health_timeout, report).await?;
    Ok(promoted)
}

/// `--rollback-on-timeout`: removes the learner the wait gave up on, after checking, as
/// close to the removal as a client can, that it is still a learner: a voter is never
/// removed here. A learner found promoted after all is success. The result is the
/// [`MembershipError::RolledBack`] error, or the original one when the rollback could
/// not be done ([`MembershipError::NotRolledBack`], saying why).
async fn roll_back<C: Cluster>(
    client: &C,
    w: &Watch,
    cause: MembershipError,
    report: Reporter<'_>,
) -> Result<PromoteOutcome> {
    let id = w.learner.id;
    let not = |cause: MembershipError, why: String| MembershipError::NotRolledBack {
        cause: Box::new(cause),
        why,
    };
    if let Some(at) = w.seen.promote_unknown {
        // A promotion may still be in raft: let it commit or drop before looking.
        tokio::time::sleep_until(at + PROPOSAL_SETTLE).await;
    }
    // Linearizable: every change committed before this call is in the list.
    let list = match client.member_list().await {
        Ok(list) => list,
        Err(e) => {
            return Err(not(
                cause,
                format!(
                    "the member list could not be read to check that it is still a learner ({e})"
                ),
            ))
        }
    };
    match list.by_id(id) {
        None => return Err(MembershipError::LearnerRemoved { id }),
        Some(m) if !m.is_learner => {
            report(Event::AlreadyVoter { id });
            return Ok(PromoteOutcome::PromotedAfterError);
        }
        Some(_) => {}
    }
    match client.remove(id).await {
        Ok(()) => {}
        Err(e) if e.kind == EtcdErrorKind::MemberNotFound => {}
        Err(e) => {
            let gone = client
                .member_list()
                .await
                .is_ok_and(|l| l.by_id(id).is_none());
            if !gone {
                return Err(not(cause, format!("MemberRemove failed ({e})")));
            }
        }
    }
    Err(MembershipError::RolledBack {
        id,
        started: w.learner.client_url.is_some(),
        cause: Box::new(cause),
    })
}

/// The learner being promoted.
struct Learner {
    id: MemberId,
    /// Empty until it has started.
    name: String,
    peer_url: String,
    /// Known once it has started.
    client_url: Option<String>,
}

impl Learner {
    fn label(&self) -> String {
        member_label(self.id, &self.name)
    }
}

/// What the loop has seen, from which a timeout tells which case it is.
#[derive(Default)]
struct Seen {
    /// `Some(reason)` while the learner does not answer on its client URL.
    not_answering: Option<String>,
    /// The learner's applied index against the leader's, last time it was known.
    percent: Option<f64>,
    ready_since: Option<Instant>,
    last_error: String,
    /// Restarts of the learner seen during the wait: it answered again after a refused
    /// call, or its applied index went back. The kubelet's startup probe is the usual
    /// cause (see `MembershipError::Stuck`).
    restarts: u32,
    last_applied: u64,
    /// The last time the learner moved towards its promotion: it started, its applied
    /// index grew, it was seen busy applying (its metrics show it moving, or, on another
    /// node, it serves but Status keeps it waiting), snapshot bytes arrived, or it was
    /// caught up. `--stall-timeout` counts from here.
    last_progress: Option<Instant>,
    /// When a promotion call last failed in a way that leaves its outcome unknown.
    promote_unknown: Option<Instant>,
    /// Bytes of a snapshot seen arriving in the learner's data directory: more is
    /// progress, so a large snapshot never counts as a stall.
    snapshot_bytes: u64,
    /// The learner has answered Status since it last (re)started: it serves clients, so
    /// its Status is worth waiting for.
    served: bool,
    /// When the metrics listener last answered while a snapshot was arriving.
    alive_while_receiving: Option<Instant>,
    /// What the learner's metrics page last said of its indexes, on its own node, since it
    /// last (re)started. Being alive is not progress: a learner the leader cannot send its
    /// snapshot to runs, answers there, and never moves.
    vitals: Option<Vitals>,
}

/// The loop's timing: its deadline, and the intervals and caches that adapt as it goes.
struct Pace {
    started: Instant,
    deadline: Instant,
    stall_timeout: Option<Duration>,
    start_poll: Duration,
    not_ready_retries: u32,
    quorum_checked: Option<Instant>,
    last_wait_report: Option<Instant>,
    /// The leader's client URL while the leader stays the same: one call less per poll.
    leader_url: Option<(MemberId, String)>,
}

/// What one look at the learner decided.
enum Step {
    /// Promoted, or found to be a voter already.
    Done(PromoteOutcome),
    /// Look again after this pause.
    Wait(Duration),
}

/// What the learner said when asked for its Status.
enum Probe {
    /// It answered Status.
    Status(MemberStatus),
    /// Status kept it waiting, but it answered the cheaper call or, on its own node, its
    /// metrics listener did: alive. `moving`: it is busy applying (its metrics show its
    /// indexes growing or a snapshot being applied; from another node, serving the cheaper
    /// call while Status waits is all there is to see), not idle waiting for data.
    Busy { moving: bool },
    /// It answered neither.
    Lost,
}

/// The promotion loop: the learner, what has been seen, and the timing.
struct Watch {
    learner: Learner,
    seen: Seen,
    pace: Pace,
    /// On the learner's own node: its metrics listener and data directory.
    local: Option<LocalWatch>,
    /// The leader's database size, the length of a snapshot in flight.
    snapshot_total: Option<u64>,
}

impl Watch {
    fn new(
        member: MemberInfo,
        started: Instant,
        timeout: Duration,
        stall_timeout: Option<Duration>,
    ) -> Self {
        let client_url = member
            .client_urls
            .first()
            .cloned()
            .filter(|_| member.started());
        Self {
            learner: Learner {
                id: member.id,
                peer_url: member.peer_urls.first().cloned().unwrap_or_default(),
                name: member.name,
                client_url,
            },
            seen: Seen::default(),
            pace: Pace {
                started,
                deadline: started + timeout,
                stall_timeout,
                start_poll: START_POLL_FIRST,
                not_ready_retries: 0,
                quorum_checked: None,
                last_wait_report: None,
                leader_url: None,
            },
            local: None,
            snapshot_total: None,
        }
    }

    fn elapsed(&self) -> Duration {
        self.pace.started.elapsed()
    }

    /// Whether a "waiting" event is due (at most one per [`REPORT_EVERY`]).
    fn due(&mut self) -> bool {
        let due = self
            .pace
            .last_wait_report
            .is_none_or(|t| t.elapsed() >= REPORT_EVERY);
        if due {
            self.pace.last_wait_report = Some(Instant::now());
        }
        due
    }

    /// Sleeps `d`, or less when the deadline is nearer, so that the timeout is exact.
    async fn pause(&self, d: Duration) {
        let left = self
            .next_deadline()
            .saturating_duration_since(Instant::now());
        tokio::time::sleep(d.min(left)).await;
    }

    /// When the learner counts as stalled: `--stall-timeout` after its last progress (or
    /// after the start, before any).
    fn stall_deadline(&self) -> Option<Instant> {
        let since = self.seen.last_progress.unwrap_or(self.pace.started);
        self.pace.stall_timeout.map(|t| since + t)
    }

    fn next_deadline(&self) -> Instant {
        self.stall_deadline()
            .map_or(self.pace.deadline, |s| s.min(self.pace.deadline))
    }

    fn progressed(&mut self) {
        self.seen.last_progress = Some(Instant::now());
    }

    /// Records a page of the learner's metrics; `true` (and progress) when it moved since
    /// the last page.
    fn vitals(&mut self, now: Vitals) -> bool {
        let moved = self
            .seen
            .vitals
            .map_or(now.applying_snapshot, |before| now.moved_since(&before));
        self.seen.vitals = Some(now);
        if moved {
            self.progressed();
        }
        moved
    }

    /// The error for a learner that made no progress for `--stall-timeout`.
    fn stalled(&self) -> MembershipError {
        let since = self.seen.last_progress.unwrap_or(self.pace.started);
        MembershipError::Stalled {
            id: self.learner.id,
            name: self.learner.name.clone(),
            stalled_for: since.elapsed(),
            cause: Box::new(self.timed_out()),
        }
    }

    /// The error for a timeout: never started, unreachable, stuck, or etcd's last word.
    fn timed_out(&self) -> MembershipError {
        let waited = self.elapsed();
        let (id, name) = (self.learner.id, self.learner.name.clone());
        match (
            &self.learner.client_url,
            &self.seen.not_answering,
            self.seen.percent,
        ) {
            (None, _, _) => MembershipError::NeverStarted {
                id,
                peer_url: self.learner.peer_url.clone(),
                waited,
            },
            (Some(url), Some(reason), _) => MembershipError::Unreachable {
                id,
                name,
                url: url.clone(),
                reason: reason.clone(),
                waited,
                restarts: self.seen.restarts,
            },
            (Some(_), None, None)
                if !self.seen.served
                    && self.seen.snapshot_bytes == 0
                    && self.seen.vitals.is_some_and(|v| v.empty()) =>
            {
                MembershipError::Starved {
                    id,
                    name,
                    peer_url: self.learner.peer_url.clone(),
                    waited,
                }
            }
            (Some(_), None, Some(p)) if p < READY_PERCENT => MembershipError::Stuck {
                id,
                name,
                percent: p as u32,
                waited,
                restarts: self.seen.restarts,
            },
            _ => MembershipError::Timeout {
                what: format!("promote the learner {}", self.learner.label()),
                waited,
                last_error: self.seen.last_error.clone(),
            },
        }
    }

    async fn run<C: Cluster>(
        &mut self,
        client: &C,
        report: Reporter<'_>,
    ) -> Result<PromoteOutcome> {
        loop {
            if Instant::now() >= self.pace.deadline {
                return Err(self.timed_out());
            }
            if self.stall_deadline().is_some_and(|s| Instant::now() >= s) {
                return Err(self.stalled());
            }
            let step = match self.learner.client_url.clone() {
                None => self.poll_start(client, report).await?,
                Some(url) => self.step(client, &url, report).await?,
            };
            match step {
                Step::Done(outcome) => return Ok(outcome),
                Step::Wait(d) => self.pause(d).await,
            }
        }
    }

    /// One look at the member list while the learner has not started.
    async fn poll_start<C: Cluster>(&mut self, client: &C, report: Reporter<'_>) -> Result<Step> {
        let id = self.learner.id;
        match client.member_list_local().await {
            Ok(list) => match list.by_id(id) {
                None => return Err(MembershipError::LearnerRemoved { id }),
                Some(m) if !m.is_learner => {
                    report(Event::AlreadyVoter { id });
                    return Ok(Step::Done(PromoteOutcome::PromotedAfterError));
                }
                Some(m) if m.started() && !m.client_urls.is_empty() => {
                    self.progressed();
                    self.learner.name = m.name.clone();
                    self.learner.client_url = Some(m.client_urls[0].clone());
                    report(Event::Started {
                        id,
                        name: m.name.clone(),
                        client_url: m.client_urls[0].clone(),
                    });
                    return Ok(Step::Wait(Duration::ZERO));
                }
                Some(_) => {
                    // The snapshot may stream in before the learner has published its
                    // name: show it (only progress: nothing is promoted before it starts).
                    if let Some(local) = self.local.as_mut() {
                        local.observe();
                        self.snapshot_progress(client, report).await;
                    }
                    if self.due() {
                        report(Event::WaitingForStart {
                            id,
                            elapsed: self.elapsed(),
                        });
                    }
                }
            },
            Err(e) => self.seen.last_error = e.to_string(),
        }
        let poll = self.pace.start_poll;
        if self.elapsed() >= START_FAST_FOR {
            self.pace.start_poll = (poll * 3 / 2).min(START_POLL);
        }
        Ok(Step::Wait(poll))
    }

    /// One look at a started learner: alive? caught up? then the promotion.
    async fn step<C: Cluster>(
        &mut self,
        client: &C,
        url: &str,
        report: Reporter<'_>,
    ) -> Result<Step> {
        if let Some(step) = self.local_step(client, url, report).await? {
            return Ok(step);
        }
        // Boxed: the probe's calls make a large future, and `step` holds it beside the
        // local step's. Unboxed, promote's future was 44 KiB in a debug build and overflowed
        // a 2 MiB test thread stack; boxed it is 13 KiB.
        let status = match Box::pin(self.probe(client, url, report)).await? {
            Probe::Lost => return Ok(Step::Wait(NEAR_POLL)),
            Probe::Busy { moving } => {
                if moving {
                    self.progressed();
                }
                None
            }
            Probe::Status(s) => Some(s),
        };
        // The probe waits up to its bound for a learner that does not serve yet, long
        // enough for a small snapshot to arrive and be applied unseen: the data directory
        // is looked at again before anything is decided on the older look.
        if let Some(step) = self.local_step(client, url, report).await? {
            return Ok(step);
        }
        if let Some(status) = status {
            if !status.is_learner {
                report(Event::AlreadyVoter {
                    id: self.learner.id,
                });
                return Ok(Step::Done(PromoteOutcome::PromotedAfterError));
            }
            if let Some(wait) = self.behind(client, &status, report).await {
                return Ok(Step::Wait(wait));
            }
        }
        self.seen.ready_since.get_or_insert_with(Instant::now);
        if !self.quorum_after_promotion_holds(client, report).await {
            return Ok(Step::Wait(FAR_POLL));
        }
        // The last check, as close to the call as it can be: the learner itself must
        // answer. etcd judges readiness from the leader's record of how far the
        // learner's log goes, which stays "caught up" after the learner dies, and
        // promotes a dead learner (seen on 3.4.23): on a one-member cluster that makes
        // two voters, one of them dead, and quorum is gone. A learner that dies in the
        // few milliseconds between this check and the call cannot be caught by any
        // client.
        if let Err(reason) = self.fresh_evidence(client, url).await {
            self.lost(client, url, reason, report).await?;
            return Ok(Step::Wait(FAR_POLL));
        }
        self.attempt(client, report).await
    }

    /// Evidence taken now that the learner's process is alive and serving: its metrics
    /// listener reporting its member ID (on its own node, answered in milliseconds even
    /// while it applies a snapshot), else an answer on its client URL.
    async fn fresh_evidence<C: Cluster>(
        &self,
        client: &C,
        url: &str,
    ) -> std::result::Result<(), String> {
        let local = match &self.local {
            Some(l) => match l.alive().await {
                Ok(_) => return Ok(()),
                Err(e) => Some(e),
            },
            None => None,
        };
        client.answers(url).await.map_err(|e| match local {
            Some(m) => format!("{e}; nor on its metrics listener: {m}"),
            None => e.to_string(),
        })
    }

    /// On the learner's own node, while a snapshot streams into its data directory and
    /// for a while after it landed: progress in bytes, and the promotion tried at etcd's
    /// pace with the metrics listener as the evidence, since the client URL serves
    /// nothing until the snapshot is applied. `None`: the usual path decides.
    async fn local_step<C: Cluster>(
        &mut self,
        client: &C,
        url: &str,
        report: Reporter<'_>,
    ) -> Result<Option<Step>> {
        let Some(local) = self.local.as_mut() else {
            return Ok(None);
        };
        let receiving = matches!(local.observe(), SnapshotState::Receiving { .. });
        let landed = local.landed();
        let bytes = local.progress().map_or(0, |p| p.received);
        if bytes > self.seen.snapshot_bytes {
            self.seen.snapshot_bytes = bytes;
            self.progressed();
        }
        if !receiving && landed.is_none_or(|t| t.elapsed() > LANDED_FAST) {
            return Ok(None);
        }
        // Before every attempt, and while the bytes stream in, often enough to see the
        // learner die.
        let alive_due = !receiving
            || self
                .seen
                .alive_while_receiving
                .is_none_or(|t| t.elapsed() >= ALIVE_WHILE_RECEIVING);
        let all_arrived = receiving && self.all_arrived(bytes);
        let Some(local) = self.local.as_ref() else {
            return Ok(None);
        };
        let mut evidence_at = None;
        if alive_due {
            let asked = Instant::now();
            let answer = if all_arrived {
                // Every byte is in: etcd fsyncs and renames the file any moment, then
                // accepts the promotion within ms. A metrics page slow to come (the
                // learner is busy) must not hide the landing: the directory is looked at
                // meanwhile, and a landed snapshot's attempt takes its own evidence.
                tokio::select! {
                    answer = local.alive() => Some(answer),
                    () = local.until_not_receiving(LANDING_POLL) => None,
                }
            } else {
                Some(local.alive().await)
            };
            tracing::debug!(
                took_ms = asked.elapsed().as_millis() as u64,
                answered = answer.as_ref().map(Result::is_ok),
                "promote: the learner's metrics listener asked while it takes in a snapshot"
            );
            let Some(answer) = answer else {
                return Ok(Some(Step::Wait(Duration::ZERO)));
            };
            match answer {
                Err(reason) => {
                    let reason = format!("the learner is taking in a snapshot and its metrics listener does not answer: {reason}");
                    self.seen.alive_while_receiving = None;
                    self.lost(client, url, reason, report).await?;
                    return Ok(Some(Step::Wait(NEAR_POLL)));
                }
                Ok(vitals) => {
                    evidence_at = Some(Instant::now());
                    self.vitals(vitals);
                }
            }
            self.seen.alive_while_receiving = Some(Instant::now());
        }
        if self.seen.not_answering.take().is_some() {
            report(Event::Started {
                id: self.learner.id,
                name: self.learner.name.clone(),
                client_url: url.to_string(),
            });
        }
        self.snapshot_progress(client, report).await;
        if receiving {
            return Ok(Some(Step::Wait(if self.all_arrived(bytes) {
                LANDING_POLL
            } else {
                SNAPSHOT_POLL
            })));
        }
        self.seen.ready_since.get_or_insert_with(Instant::now);
        if !self.quorum_after_promotion_holds(client, report).await {
            return Ok(Some(Step::Wait(FAR_POLL)));
        }
        // The evidence again, right before the call, when the quorum check took more than
        // a moment.
        if evidence_at.is_none_or(|t| t.elapsed() > EVIDENCE_REUSE) {
            if let Err(reason) = self.fresh_evidence(client, url).await {
                self.lost(client, url, reason, report).await?;
                return Ok(Some(Step::Wait(NEAR_POLL)));
            }
        }
        self.attempt(client, report).await.map(Some)
    }

    /// Whether `bytes` of the snapshot in flight are all of it (99% of the leader's
    /// database size, which moves a little under writes).
    fn all_arrived(&self, bytes: u64) -> bool {
        self.snapshot_total
            .is_some_and(|total| total > 0 && bytes.saturating_mul(100) >= total * 99)
    }

    /// Reports the snapshot in the learner's data directory, as last observed.
    async fn snapshot_progress<C: Cluster>(&mut self, client: &C, report: Reporter<'_>) {
        let Some(p) = self.local.as_ref().and_then(LocalWatch::progress) else {
            return;
        };
        if self.snapshot_total.is_none() {
            self.snapshot_total = self.leader_db_size(client).await;
        }
        report(Event::SnapshotProgress {
            id: self.learner.id,
            received: p.received,
            total: self.snapshot_total.unwrap_or(0).max(p.received),
            bytes_per_sec: p.bytes_per_sec,
            complete: p.complete,
        });
    }

    /// The leader's Status `db_size`: the size of the snapshot it sends.
    async fn leader_db_size<C: Cluster>(&mut self, client: &C) -> Option<u64> {
        for endpoint in client.endpoints() {
            if let Ok(s) = client.status(&endpoint).await {
                let leader = if s.member_id == s.leader {
                    s
                } else {
                    self.leader_status(client, s.leader).await?
                };
                return u64::try_from(leader.db_size).ok();
            }
        }
        None
    }

    /// Status and a cheaper call at once, each bounded by [`BUSY_AFTER`]: Status for the
    /// progress, and a call the learner's gate refuses at once, which a learner busy
    /// applying a large log still answers when Status keeps it waiting. Either answer
    /// means the learner is alive; then etcd's own rule (the leader's record of the
    /// replicated log), not our estimate, decides whether it is ready.
    ///
    /// On the learner's own node its metrics listener is asked at the same time; once it
    /// has answered with the learner's ID, and the learner has not served a client call
    /// since it started, the client calls get only [`LOCAL_BUSY_AFTER`] more: a learner
    /// taking in a snapshot is known to be alive within milliseconds, and the data
    /// directory is looked at again that soon.
    async fn probe<C: Cluster>(
        &mut self,
        client: &C,
        url: &str,
        report: Reporter<'_>,
    ) -> Result<Probe> {
        let local = self.local.as_ref();
        let served = self.seen.served;
        let metrics_answered = tokio::sync::Notify::new();
        let calls = async {
            tokio::join!(
                tokio::time::timeout(BUSY_AFTER, client.status(url)),
                tokio::time::timeout(BUSY_AFTER, client.answers(url)),
            )
        };
        let (calls, local_alive) = tokio::join!(
            async {
                tokio::select! {
                    answered = calls => Some(answered),
                    () = async {
                        metrics_answered.notified().await;
                        if served {
                            std::future::pending::<()>().await;
                        }
                        tokio::time::sleep(LOCAL_BUSY_AFTER).await;
                    } => None,
                }
            },
            async {
                let alive = match local {
                    Some(l) => Some(l.alive().await),
                    None => None,
                };
                if matches!(alive, Some(Ok(_))) {
                    metrics_answered.notify_one();
                }
                alive
            },
        );
        let (status, alive) = match calls {
            Some((status, alive)) => (status.ok(), alive.ok()),
            None => (None, None),
        };
        let local_moved = match &local_alive {
            Some(Ok(vitals)) => Some(self.vitals(*vitals)),
            _ => None,
        };
        let probe = match (status, alive, local_alive) {
            (Some(Ok(s)), _, _) => {
                self.seen.served = true;
                if let Some(l) = self.local.as_mut() {
                    l.answered();
                }
                Probe::Status(s)
            }
            (_, Some(Ok(())), _) | (_, _, Some(Ok(_))) => Probe::Busy {
                moving: local_moved.unwrap_or(true),
            },
            (status, _, local) => {
                let mut reason = match status {
                    Some(Err(e)) => e.to_string(),
                    _ => RpcError::busy(BUSY_AFTER).to_string(),
                };
                if let Some(Err(m)) = local {
                    reason = format!("{reason}; nor on its metrics listener: {m}");
                }
                self.lost(client, url, reason, report).await?;
                return Ok(Probe::Lost);
            }
        };
        if let Some(reason) = self.seen.not_answering.take() {
            // Back after a refused call: the process was gone. A busy learner that was
            // merely slow to answer does not count.
            if !reason.starts_with(&RpcError::busy(BUSY_AFTER).to_string()) {
                self.seen.restarts += 1;
            }
            report(Event::Started {
                id: self.learner.id,
                name: self.learner.name.clone(),
                client_url: url.to_string(),
            });
        }
        Ok(probe)
    }

    /// Progress against the leader; `Some(pause)` while the learner's log is behind
    /// etcd's 90%.
    async fn behind<C: Cluster>(
        &mut self,
        client: &C,
        learner: &MemberStatus,
        report: Reporter<'_>,
    ) -> Option<Duration> {
        let Some(leader) = self.leader_status(client, learner.leader).await else {
            return Some(FAR_POLL);
        };
        // A restarted member replays from its last snapshot: its applied index goes back
        // even when no poll saw it down.
        if learner.raft_applied_index < self.seen.last_applied {
            self.seen.restarts += 1;
        }
        if learner.raft_applied_index > self.seen.last_applied {
            self.progressed();
        }
        self.seen.last_applied = learner.raft_applied_index;
        let percent = progress_percent(learner.raft_applied_index, leader.raft_index);
        if self.seen.percent != Some(percent) {
            report(Event::Progress {
                id: self.learner.id,
                applied: learner.raft_applied_index,
                leader_index: leader.raft_index,
                percent,
            });
        }
        self.seen.percent = Some(percent);
        // etcd's rule is about the replicated log (the leader's Match for the learner),
        // which the learner's committed index follows closely; applying lags behind it,
        // by seconds for a large database. Waiting for the applied index would delay a
        // promotion etcd already accepts, so the log decides when to try.
        let log_percent = progress_percent(learner.raft_index, leader.raft_index);
        if log_percent >= READY_PERCENT {
            // Caught up: on an idle cluster its index has nothing left to grow by.
            self.progressed();
            None
        } else if log_percent < 50.0 {
            Some(FAR_POLL)
        } else {
            Some(NEAR_POLL)
        }
    }

    /// The promotion call and what its answer means. Promotion raises the quorum (3
    /// voters need 2, 4 need 3), which is why it comes only now: the learner is alive,
    /// has the log, and the voters that are up plus the learner make the new quorum.
    async fn attempt<C: Cluster>(&mut self, client: &C, report: Reporter<'_>) -> Result<Step> {
        let id = self.learner.id;
        tracing::debug!(%id, "promote: MemberPromote");
        let e = match client.promote(id).await {
            Ok(()) => return Ok(Step::Done(self.promoted(false, report))),
            Err(e) => e,
        };
        match e.kind {
            EtcdErrorKind::LearnerNotReady => {
                if self.pace.not_ready_retries == 0 {
                    report(Event::Retrying {
                        reason: RetryReason::LearnerNotReady,
                        message: e.message.clone(),
                        elapsed: self.elapsed(),
                    });
                }
                self.seen.last_error = e.message;
                // A snapshot that has just landed is accepted any moment: no back-off.
                if self.local.as_ref().is_some_and(|l| l.landed().is_some()) {
                    return Ok(Step::Wait(LANDED_RETRY));
                }
                let backoff = NOT_READY_RETRY * 2u32.pow(self.pace.not_ready_retries.min(4));
                self.pace.not_ready_retries += 1;
                Ok(Step::Wait(backoff.min(FAR_POLL)))
            }
            EtcdErrorKind::MemberNotFound => Err(MembershipError::LearnerRemoved { id }),
            _ => self.after_failed_call(client, e, report).await,
        }
    }

    /// A failed call may have landed (a lost answer, a timeout, a leader change): what
    /// counts is whether the member is a voter now. Otherwise a passing refusal is
    /// retried and anything else is final.
    async fn after_failed_call<C: Cluster>(
        &mut self,
        client: &C,
        e: RpcError,
        report: Reporter<'_>,
    ) -> Result<Step> {
        let id = self.learner.id;
        if e.is_unavailable() {
            self.seen.promote_unknown = Some(Instant::now());
        }
        if let Ok(list) = client.member_list().await {
            match list.by_id(id) {
                None => return Err(MembershipError::LearnerRemoved { id }),
                Some(m) if !m.is_learner => return Ok(Step::Done(self.promoted(true, report))),
                Some(_) => {}
            }
        }
        let passing = e.is_unavailable()
            || matches!(
                e.kind,
                EtcdErrorKind::Unhealthy | EtcdErrorKind::NotEnoughStartedMembers
            );
        if !passing {
            return Err(MembershipError::Rpc {
                op: "MemberPromote",
                endpoint: client.endpoints().join(","),
                source: e,
            });
        }
        report(Event::Retrying {
            reason: if e.is_unavailable() {
                RetryReason::Unavailable
            } else {
                RetryReason::Unhealthy
            },
            message: e.message.clone(),
            elapsed: self.elapsed(),
        });
        self.seen.last_error = e.message;
        Ok(Step::Wait(FAR_POLL))
    }

    fn promoted(&self, after_error: bool, report: Reporter<'_>) -> PromoteOutcome {
        report(Event::Promoted {
            id: self.learner.id,
            after_error,
            since_ready: self
                .seen
                .ready_since
                .map_or(Duration::ZERO, |t| t.elapsed()),
        });
        if after_error {
            PromoteOutcome::PromotedAfterError
        } else {
            PromoteOutcome::Promoted
        }
    }

    /// The learner did not answer. A learner that was removed meanwhile (its process
    /// stops with it) is an error at once; any other stays a reason to wait.
    async fn lost<C: Cluster>(
        &mut self,
        client: &C,
        url: &str,
        reason: String,
        report: Reporter<'_>,
    ) -> Result<()> {
        let id = self.learner.id;
        if let Ok(list) = client.member_list_local().await {
            if list.by_id(id).is_none() {
                return Err(MembershipError::LearnerRemoved { id });
            }
        }
        if self.seen.not_answering.is_none() {
            report(Event::LearnerNotAnswering {
                id,
                url: url.to_string(),
                reason: reason.clone(),
            });
        }
        self.seen.last_error = format!("the learner does not answer on {url}: {reason}");
        self.seen.not_answering = Some(reason);
        self.seen.served = false;
        self.seen.vitals = None;
        Ok(())
    }

    /// The Status of the leader the learner follows, on the leader's client URL.
    async fn leader_status<C: Cluster>(
        &mut self,
        client: &C,
        leader: MemberId,
    ) -> Option<MemberStatus> {
        if leader.0 == 0 {
            self.seen.last_error = "the learner knows no leader".to_string();
            return None;
        }
        let cached = self
            .pace
            .leader_url
            .as_ref()
            .filter(|(id, _)| *id == leader)
            .map(|(_, u)| u.clone());
        let url = match cached {
            Some(url) => url,
            None => {
                let list = match client.member_list_local().await {
                    Ok(l) => l,
                    Err(e) => {
                        self.seen.last_error = e.to_string();
                        return None;
                    }
                };
                let url = list.by_id(leader)?.client_urls.first()?.clone();
                self.pace.leader_url = Some((leader, url.clone()));
                url
            }
        };
        match client.status(&url).await {
            Ok(s) => Some(s),
            Err(e) => {
                self.pace.leader_url = None;
                self.seen.last_error = format!("the leader does not answer on {url}: {e}");
                None
            }
        }
    }

    /// Whether the voters that are up, plus the learner, make the quorum of the larger
    /// cluster. etcd's strict reconfiguration check asks the same, but counts members the
    /// leader has heard from lately; asking them now is the fresher answer.
    async fn quorum_after_promotion_holds<C: Cluster>(
        &mut self,
        client: &C,
        report: Reporter<'_>,
    ) -> bool {
        if self
            .pace
            .quorum_checked
            .is_some_and(|t| t.elapsed() < QUORUM_RECHECK)
        {
            return true;
        }
        let Ok(list) = client.member_list_local().await else {
            return false;
        };
        let voters: Vec<MemberInfo> = list.voters().cloned().collect();
        let healthy = client
            .statuses(&voters)
            .await
            .iter()
            .filter(|s| s.as_ref().is_ok_and(|s| s.healthy()))
            .count();
        let needed = quorum(voters.len() + 1);
        if healthy + 1 < needed {
            let message = format!(
                "{healthy} of {} voting members are healthy; with the learner promoted {needed} of {} would be needed",
                voters.len(),
                voters.len() + 1
            );
            report(Event::Retrying {
                reason: RetryReason::Unhealthy,
                message: message.clone(),
                elapsed: self.elapsed(),
            });
            self.seen.last_error = message;
            return false;
        }
        self.pace.quorum_checked = Some(Instant::now());
        true
    }
}

/// Waits until a majority of the voters is healthy and `id` is among them as a voter.
pub async fn wait_healthy_with<C: Cluster>(
    client: &C,
    id: MemberId,
    timeout: Duration,
    report: Reporter<'_>,
) -> Result<()> {
    let start = Instant::now();
    let mut last_report: Option<Instant> = None;
    let mut last_error;
    loop {
        match client.member_list().await {
            Ok(list) => {
                client.sync_endpoints(&list)?;
                let voters: Vec<MemberInfo> = list.voters().cloned().collect();
                let statuses = client.statuses(&voters).await;
                let healthy = statuses
                    .iter()
                    .filter(|s| s.as_ref().is_ok_and(|s| s.healthy()))
                    .count();
                let new_one = voters
                    .iter()
                    .zip(&statuses)
                    .find(|(m, _)| m.id == id)
                    .map(|(_, s)| s.as_ref().is_ok_and(|s| s.healthy() && !s.is_learner));
                if healthy >= quorum(voters.len()) && new_one == Some(true) {
                    return Ok(());
                }
                last_error = match new_one {
                    None => format!("member {id} is not a voter in the member list"),
                    Some(false) => format!("member {id} is not healthy as a voter yet"),
                    Some(true) => {
                        format!("{healthy} of {} voting members are healthy", voters.len())
                    }
                };
                if last_report.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
                    last_report = Some(Instant::now());
                    report(Event::WaitingForHealth {
                        voters: voters.len(),
                        healthy,
                    });
                }
            }
            Err(e) => last_error = e.to_string(),
        }
        if start.elapsed() >= timeout {
            return Err(MembershipError::Timeout {
                what: format!("see the cluster healthy with member {id} as a voter"),
                waited: start.elapsed(),
                last_error,
            });
        }
        tokio::time::sleep(FAR_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alive is not progress: only indexes that grow or a snapshot being applied are, so
    /// `--stall-timeout` ends the wait for a learner that runs and receives nothing.
    #[test]
    fn only_a_learner_that_moves_makes_progress() {
        let mut w = watch(true);
        let idle = Vitals {
            committed: Some(0),
            applied: Some(0),
            applying_snapshot: false,
        };
        assert!(!w.vitals(idle));
        assert!(!w.vitals(idle));
        assert!(w.seen.last_progress.is_none());
        let applying = Vitals {
            applying_snapshot: true,
            ..idle
        };
        assert!(w.vitals(applying));
        assert!(w.seen.last_progress.is_some());
        w.seen.last_progress = None;
        let caught_up = Vitals {
            committed: Some(40),
            applied: Some(40),
            applying_snapshot: false,
        };
        assert!(w.vitals(caught_up));
        assert!(!w.vitals(caught_up));
    }

    fn watch(started: bool) -> Watch {
        let member = MemberInfo {
            id: MemberId(0xab),
            name: if started {
                "node2".into()
            } else {
                String::new()
            },
            peer_urls: vec!["https://10.0.0.2:2380".into()],
            client_urls: if started {
                vec!["https://10.0.0.2:2379".into()]
            } else {
                vec![]
            },
            is_learner: true,
        };
        Watch::new(member, Instant::now(), Duration::ZERO, None)
    }

    #[test]
    fn a_timeout_says_which_case_it_is() {
        let w = watch(false);
        assert!(matches!(
            w.timed_out(),
            MembershipError::NeverStarted { .. }
        ));

        let mut w = watch(true);
        w.seen.percent = Some(42.5);
        let err = w.timed_out();
        assert!(
            matches!(err, MembershipError::Stuck { percent: 42, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("stuck at 42%"), "{err}");

        w.seen.not_answering = Some("connection refused".into());
        let err = w.timed_out();
        assert!(matches!(err, MembershipError::Unreachable { .. }), "{err}");
        assert_eq!(err.rollback_id(), Some(MemberId(0xab)));
        assert!(!err.to_string().contains("restarted"), "{err}");

        // A learner that restarted during the wait: the diagnosis says so, and why.
        w.seen.restarts = 2;
        let err = w.timed_out();
        assert!(err.to_string().contains("restarted 2 times"), "{err}");
        assert!(err.to_string().contains("/readyz"), "{err}");
        w.seen.not_answering = None;
        let err = w.timed_out();
        assert!(
            matches!(err, MembershipError::Stuck { restarts: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("startup probe"), "{err}");

        // Alive on its metrics listener, never served, nothing received: the leader cannot
        // send it the snapshot. Said as such, with the peer URL to check.
        let mut w = watch(true);
        w.seen.vitals = Some(Vitals {
            committed: Some(0),
            applied: Some(0),
            applying_snapshot: false,
        });
        let err = w.timed_out();
        assert!(matches!(err, MembershipError::Starved { .. }), "{err}");
        assert_eq!(err.rollback_id(), Some(MemberId(0xab)));
        for part in ["https://10.0.0.2:2380", "failed to send database snapshot"] {
            assert!(err.to_string().contains(part), "{part:?}: {err}");
        }
        // Once bytes arrived it is not that.
        w.seen.snapshot_bytes = 1;
        assert!(matches!(w.timed_out(), MembershipError::Timeout { .. }));

        let mut w = watch(true);
        w.seen.percent = Some(95.0);
        w.seen.last_error =
            "etcdserver: can only promote a learner member which is in sync with leader".into();
        let err = w.timed_out();
        assert!(matches!(err, MembershipError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("in sync with leader"), "{err}");
    }
}
