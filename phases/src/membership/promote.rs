//! `phase etcd promote`: make a learner a voter once it has caught up, and only if it is
//! alive.
//!
//! The learner is found by its ID, name or peer URL. The wait has three stages, each
//! reported: until it starts (publishes its name), while it catches up (its applied index
//! against the leader's raft index, from the Status RPC that learners serve), and the
//! promotion itself, retried while etcd says the learner is not in sync yet. After the
//! promotion the cluster must be healthy with the new voter.
//!
//! Idempotent: a member that is already a voter is success, also when the promotion
//! landed but its answer was lost.

use std::time::Duration;

use tokio::time::Instant;

use super::status::progress_percent;
use super::{
    quorum, EtcdClient, EtcdErrorKind, Event, MemberId, MemberInfo, Membership, MembershipError,
    Reporter, Result, RetryReason, RpcError, Selector,
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
/// raft round trip), per interval. The interval starts short, so that a learner the
/// kubelet starts at once is seen at once, and grows to [`START_POLL`] for one that takes
/// minutes (an image pull).
const START_POLL_FIRST: Duration = Duration::from_millis(20);
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
}

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
pub async fn find_member(client: &EtcdClient, selectors: &[Selector]) -> Result<MemberInfo> {
    let membership = client.member_list().await?;
    select_member(client, &membership, selectors)
}

fn select_member(
    client: &EtcdClient,
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
pub async fn promote(
    client: &EtcdClient,
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
    let mut w = Watch::new(member, start, opts.timeout);
    let outcome = w.run(client, report).await?;
    let promoted = Promoted {
        id,
        name: w.name.clone(),
        outcome,
        waited: start.elapsed(),
        since_ready: w.ready_since.map(|t| t.elapsed()),
    };
    wait_healthy_with(client, id, opts.health_timeout, report).await?;
    Ok(promoted)
}

/// What the promotion loop has seen so far; at a timeout it tells which case it is.
struct Watch {
    id: MemberId,
    name: String,
    peer_url: String,
    started: Instant,
    deadline: Instant,
    /// Known once the learner has started.
    client_url: Option<String>,
    leader_url: Option<(MemberId, String)>,
    /// `Some(reason)` while the learner does not answer on its client URL.
    not_answering: Option<String>,
    percent: Option<f64>,
    ready_since: Option<Instant>,
    not_ready_retries: u32,
    start_poll: Duration,
    quorum_checked: Option<Instant>,
    last_error: String,
    last_wait_report: Option<Instant>,
    /// Restarts of the learner seen during the wait: it answered again after not
    /// answering, or its applied index went back. The kubelet's startup probe is the
    /// usual cause (see `MembershipError::Stuck`).
    restarts: u32,
    last_applied: u64,
}

impl Watch {
    fn new(member: MemberInfo, started: Instant, timeout: Duration) -> Self {
        let client_url = member
            .client_urls
            .first()
            .cloned()
            .filter(|_| member.started());
        Self {
            id: member.id,
            peer_url: member.peer_urls.first().cloned().unwrap_or_default(),
            name: member.name,
            started,
            deadline: started + timeout,
            client_url,
            leader_url: None,
            not_answering: None,
            percent: None,
            ready_since: None,
            not_ready_retries: 0,
            start_poll: START_POLL_FIRST,
            quorum_checked: None,
            last_error: String::new(),
            last_wait_report: None,
            restarts: 0,
            last_applied: 0,
        }
    }

    fn due(&mut self) -> bool {
        let due = self
            .last_wait_report
            .is_none_or(|t| t.elapsed() >= REPORT_EVERY);
        if due {
            self.last_wait_report = Some(Instant::now());
        }
        due
    }

    /// Sleeps `d`, or less when the deadline is nearer, so that the timeout is exact.
    async fn pause(&self, d: Duration) {
        let left = self.deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(d.min(left)).await;
    }

    /// The error for a timeout: never started, unreachable, stuck, or etcd's last word.
    fn timed_out(&self) -> MembershipError {
        let waited = self.started.elapsed();
        let name = if self.name.is_empty() {
            self.id.to_string()
        } else {
            self.name.clone()
        };
        match (&self.client_url, &self.not_answering, self.percent) {
            (None, _, _) => MembershipError::NeverStarted {
                id: self.id,
                peer_url: self.peer_url.clone(),
                waited,
            },
            (Some(url), Some(reason), _) => MembershipError::Unreachable {
                id: self.id,
                name,
                url: url.clone(),
                reason: reason.clone(),
                waited,
                restarts: self.restarts,
            },
            (Some(_), None, Some(p)) if p < READY_PERCENT => MembershipError::Stuck {
                id: self.id,
                name,
                percent: p as u32,
                waited,
                restarts: self.restarts,
            },
            _ => MembershipError::Timeout {
                what: format!("promote the learner {} ({name})", self.id),
                waited,
                last_error: self.last_error.clone(),
            },
        }
    }

    async fn run(&mut self, client: &EtcdClient, report: Reporter<'_>) -> Result<PromoteOutcome> {
        loop {
            if Instant::now() >= self.deadline {
                return Err(self.timed_out());
            }
            let Some(url) = self.client_url.clone() else {
                if let Some(outcome) = self.poll_start(client, report).await? {
                    return Ok(outcome);
                }
                continue;
            };

            // Both questions at once, each bounded by BUSY_AFTER: Status for the progress,
            // and a call the learner's gate refuses at once, which a learner busy applying
            // a large log still answers when Status keeps it waiting. Either answer means
            // the learner is alive; then etcd's own rule (the leader's record of the
            // replicated log), not our estimate, decides whether it is ready.
            let (status, alive) = tokio::join!(
                tokio::time::timeout(BUSY_AFTER, client.status(&url)),
                tokio::time::timeout(BUSY_AFTER, client.answers(&url)),
            );
            let learner = match (status, alive) {
                (Ok(Ok(s)), _) => Some(s),
                (_, Ok(Ok(()))) => None,
                (status, _) => {
                    let reason = match status {
                        Ok(Err(e)) => e.to_string(),
                        _ => RpcError::busy(BUSY_AFTER).to_string(),
                    };
                    self.lost(&url, reason, report);
                    self.pause(NEAR_POLL).await;
                    continue;
                }
            };
            if let Some(reason) = self.not_answering.take() {
                // Back after a refused connection: the process was gone. A busy learner
                // that was merely slow to answer does not count.
                if reason != RpcError::busy(BUSY_AFTER).to_string() {
                    self.restarts += 1;
                }
                report(Event::Started {
                    id: self.id,
                    name: self.name.clone(),
                    client_url: url.clone(),
                });
            }
            if let Some(learner) = learner {
                if !learner.is_learner {
                    report(Event::AlreadyVoter { id: self.id });
                    return Ok(PromoteOutcome::PromotedAfterError);
                }
                // A restarted member replays from its last snapshot: its applied index
                // goes back even when no poll saw it down.
                if learner.raft_applied_index < self.last_applied {
                    self.restarts += 1;
                }
                self.last_applied = learner.raft_applied_index;
                let Some(leader) = self.leader_status(client, learner.leader).await else {
                    self.pause(FAR_POLL).await;
                    continue;
                };
                let percent = progress_percent(learner.raft_applied_index, leader.raft_index);
                if self.percent != Some(percent) {
                    report(Event::Progress {
                        id: self.id,
                        applied: learner.raft_applied_index,
                        leader_index: leader.raft_index,
                        percent,
                    });
                }
                self.percent = Some(percent);
                // etcd's rule is about the replicated log (the leader's Match for the learner),
                // which the learner's committed index follows closely; applying lags behind
                // it, by seconds for a large database. Waiting for the applied index would
                // delay a promotion etcd already accepts, so the log decides when to try.
                let log_percent = progress_percent(learner.raft_index, leader.raft_index);
                if log_percent < READY_PERCENT {
                    self.pause(if log_percent < 50.0 {
                        FAR_POLL
                    } else {
                        NEAR_POLL
                    })
                    .await;
                    continue;
                }
            }
            self.ready_since.get_or_insert_with(Instant::now);

            if !self.quorum_after_promotion_holds(client, report).await {
                self.pause(FAR_POLL).await;
                continue;
            }
            // The last check, as close to the call as it can be: the learner itself must
            // answer. etcd judges readiness from the leader's record of how far the
            // learner's log goes, which stays "caught up" after the learner dies, and
            // promotes a dead learner (seen on 3.4.23): on a one-member cluster that
            // makes two voters, one of them dead, and quorum is gone. A learner that
            // dies in the few milliseconds between this check and the call cannot be
            // caught by any client.
            if let Err(e) = client.answers(&url).await {
                self.lost(&url, e.to_string(), report);
                self.pause(FAR_POLL).await;
                continue;
            }
            // Promotion raises the quorum (3 voters need 2, 4 need 3), which is why it
            // comes only now: the learner is alive, has the log, and the voters that are
            // up plus the learner make the new quorum.
            match client.promote(self.id).await {
                Ok(()) => {
                    report(Event::Promoted {
                        id: self.id,
                        after_error: false,
                        since_ready: self.ready_since.map_or(Duration::ZERO, |t| t.elapsed()),
                    });
                    return Ok(PromoteOutcome::Promoted);
                }
                Err(e) if e.kind == EtcdErrorKind::LearnerNotReady => {
                    if self.not_ready_retries == 0 {
                        report(Event::Retrying {
                            reason: RetryReason::LearnerNotReady,
                            message: e.message.clone(),
                            elapsed: self.started.elapsed(),
                        });
                    }
                    self.last_error = e.message;
                    let backoff = NOT_READY_RETRY * 2u32.pow(self.not_ready_retries.min(4));
                    self.not_ready_retries += 1;
                    self.pause(backoff.min(FAR_POLL)).await;
                }
                Err(e) if e.kind == EtcdErrorKind::MemberNotFound => {
                    return Err(MembershipError::LearnerRemoved { id: self.id })
                }
                Err(e) => {
                    // A failed call may have landed (a lost answer, a timeout, a leader
                    // change): what counts is whether the member is a voter now.
                    if let Ok(list) = client.member_list().await {
                        match list.by_id(self.id) {
                            None => return Err(MembershipError::LearnerRemoved { id: self.id }),
                            Some(m) if !m.is_learner => {
                                report(Event::Promoted {
                                    id: self.id,
                                    after_error: true,
                                    since_ready: self
                                        .ready_since
                                        .map_or(Duration::ZERO, |t| t.elapsed()),
                                });
                                return Ok(PromoteOutcome::PromotedAfterError);
                            }
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
                        elapsed: self.started.elapsed(),
                    });
                    self.last_error = e.message;
                    self.pause(FAR_POLL).await;
                }
            }
        }
    }

    /// One look at the member list while the learner has not started. Returns an outcome
    /// when the member turned out to be a voter already.
    async fn poll_start(
        &mut self,
        client: &EtcdClient,
        report: Reporter<'_>,
    ) -> Result<Option<PromoteOutcome>> {
        match client.member_list_local().await {
            Ok(list) => match list.by_id(self.id) {
                None => return Err(MembershipError::LearnerRemoved { id: self.id }),
                Some(m) if !m.is_learner => {
                    report(Event::AlreadyVoter { id: self.id });
                    return Ok(Some(PromoteOutcome::PromotedAfterError));
                }
                Some(m) if m.started() && !m.client_urls.is_empty() => {
                    self.name = m.name.clone();
                    self.client_url = Some(m.client_urls[0].clone());
                    report(Event::Started {
                        id: self.id,
                        name: m.name.clone(),
                        client_url: m.client_urls[0].clone(),
                    });
                    return Ok(None);
                }
                Some(_) => {
                    if self.due() {
                        report(Event::WaitingForStart {
                            id: self.id,
                            elapsed: self.started.elapsed(),
                        });
                    }
                }
            },
            Err(e) => self.last_error = e.to_string(),
        }
        self.pause(self.start_poll).await;
        self.start_poll = (self.start_poll * 3 / 2).min(START_POLL);
        Ok(None)
    }

    fn lost(&mut self, url: &str, reason: String, report: Reporter<'_>) {
        if self.not_answering.is_none() {
            report(Event::LearnerNotAnswering {
                id: self.id,
                url: url.to_string(),
                reason: reason.clone(),
            });
        }
        self.last_error = format!("the learner does not answer on {url}: {reason}");
        self.not_answering = Some(reason);
    }

    /// The Status of the leader the learner follows, on the leader's client URL.
    async fn leader_status(
        &mut self,
        client: &EtcdClient,
        leader: MemberId,
    ) -> Option<super::MemberStatus> {
        if leader.0 == 0 {
            self.last_error = "the learner knows no leader".to_string();
            return None;
        }
        // The leader's URL from the last member list while the leader stays the same:
        // one call less per poll.
        let cached = self
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
                        self.last_error = e.to_string();
                        return None;
                    }
                };
                let url = list.by_id(leader)?.client_urls.first()?.clone();
                self.leader_url = Some((leader, url.clone()));
                url
            }
        };
        match client.status(&url).await {
            Ok(s) => Some(s),
            Err(e) => {
                self.leader_url = None;
                self.last_error = format!("the leader does not answer on {url}: {e}");
                None
            }
        }
    }

    /// Whether the voters that are up, plus the learner, make the quorum of the larger
    /// cluster. etcd's strict reconfiguration check asks the same, but counts members the
    /// leader has heard from lately; asking them now is the fresher answer.
    async fn quorum_after_promotion_holds(
        &mut self,
        client: &EtcdClient,
        report: Reporter<'_>,
    ) -> bool {
        if self
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
                elapsed: self.started.elapsed(),
            });
            self.last_error = message;
            return false;
        }
        self.quorum_checked = Some(Instant::now());
        true
    }
}

/// Waits until a majority of the voters is healthy and `id` is among them as a voter.
pub async fn wait_healthy_with(
    client: &EtcdClient,
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
                what: format!("the cluster to be healthy with member {id} as a voter"),
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
        Watch::new(member, Instant::now(), Duration::ZERO)
    }

    #[test]
    fn a_timeout_says_which_case_it_is() {
        let w = watch(false);
        assert!(matches!(
            w.timed_out(),
            MembershipError::NeverStarted { .. }
        ));

        let mut w = watch(true);
        w.percent = Some(42.5);
        let err = w.timed_out();
        assert!(
            matches!(err, MembershipError::Stuck { percent: 42, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("stuck at 42%"), "{err}");

        w.not_answering = Some("connection refused".into());
        let err = w.timed_out();
        assert!(matches!(err, MembershipError::Unreachable { .. }), "{err}");
        assert_eq!(err.rollback_id(), Some(MemberId(0xab)));
        assert!(!err.to_string().contains("restarted"), "{err}");

        // A learner that restarted during the wait: the diagnosis says so, and why.
        w.restarts = 2;
        let err = w.timed_out();
        assert!(err.to_string().contains("restarted 2 times"), "{err}");
        assert!(err.to_string().contains("/readyz"), "{err}");
        w.not_answering = None;
        let err = w.timed_out();
        assert!(
            matches!(err, MembershipError::Stuck { restarts: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("startup probe"), "{err}");

        let mut w = watch(true);
        w.percent = Some(95.0);
        w.last_error =
            "etcdserver: can only promote a learner member which is in sync with leader".into();
        let err = w.timed_out();
        assert!(matches!(err, MembershipError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("in sync with leader"), "{err}");
    }
}
