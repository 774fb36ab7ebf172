//! `phase etcd defrag`: give the free pages of a member's database file back to the
//! file system, one member at a time.
//!
//! etcd's Defragment rewrites the whole bbolt file while holding the backend's lock: the
//! member applies nothing and answers no read or write until it is done (seconds per GiB),
//! and a leader that defragments stops sending heartbeats, which can start an election.
//! So:
//! - never two members at once: the next call is sent only after the previous member
//!   answered, is healthy again and has caught up with the log;
//! - learners first (they do not vote), then followers, the leader last, the leader
//!   looked up again before each member (a defragmentation can move leadership);
//! - a voter only while the other voters that serve are a quorum, and nothing at all
//!   while a member is down, unless `--force`;
//! - the Defragment call alone gets a generous bound (`rpc_timeout`); when it runs out
//!   the operation stops, since etcd goes on defragmenting after the client gave up.

use std::time::Duration;

use tokio::time::Instant;

use crate::membership::{quorum, EtcdClient, EtcdErrorKind, MemberId, MemberInfo, Selector};

use super::{Event, MaintenanceError, Observed, Reporter, Result, POLL};

/// The default bound of one Defragment call: etcd rewrites the file at disk speed, and an
/// 8 GiB database (etcd's suggested maximum) on a slow disk takes minutes.
pub const DEFAULT_DEFRAG_TIMEOUT: Duration = Duration::from_secs(600);

/// How long to wait, between two members, for the cluster to be healthy again.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

/// Which members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The member the first selector that matches names (this node's).
    Member(Vec<Selector>),
    /// Every member.
    Cluster,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefragOptions {
    pub scope: Scope,
    /// Go ahead with members down, or when a voter's defragmentation pauses quorum.
    pub force: bool,
    /// The bound of each Defragment call.
    pub rpc_timeout: Duration,
    /// The bound of each wait for health between members (and for the member list).
    pub health_timeout: Duration,
    pub dry_run: bool,
}

/// One member's part of a defragmentation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberDefrag {
    pub id: MemberId,
    pub name: String,
    /// `learner`, `follower` or `leader`, when its turn came.
    pub role: &'static str,
    pub endpoint: String,
    pub outcome: Outcome,
}

/// What happened to one member.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum Outcome {
    /// Sizes from Status before and after.
    Defragmented {
        db_size_before: i64,
        db_size_in_use_before: i64,
        db_size_after: i64,
        db_size_in_use_after: i64,
        /// What the Defragment call took, in milliseconds.
        took_ms: u64,
    },
    /// Not touched, and why.
    Skipped { reason: String },
    /// Dry run: it would be defragmented in this place of the order.
    WouldDefragment { db_size: i64, db_size_in_use: i64 },
}

impl Outcome {
    /// Bytes the file shrank by.
    pub fn reclaimed(&self) -> Option<i64> {
        match self {
            Outcome::Defragmented {
                db_size_before,
                db_size_after,
                ..
            } => Some(db_size_before - db_size_after),
            _ => None,
        }
    }
}

/// Every member's part, in the order they were done.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DefragReport {
    pub members: Vec<MemberDefrag>,
}

impl DefragReport {
    pub fn reclaimed(&self) -> i64 {
        self.members
            .iter()
            .filter_map(|m| m.outcome.reclaimed())
            .sum()
    }
}

/// Defragments the members `opts.scope` names, one at a time (see the module docs).
pub async fn defrag(
    client: &EtcdClient,
    opts: &DefragOptions,
    report: Reporter<'_>,
) -> Result<DefragReport> {
    let seen = Observed::collect(client, Instant::now() + opts.health_timeout).await?;
    let targets: Vec<MemberInfo> = match &opts.scope {
        Scope::Cluster => seen.membership.members.clone(),
        Scope::Member(selectors) => {
            let mut found = None;
            for s in selectors {
                if let Some(m) = s.find(&seen.membership.members)? {
                    found = Some(m.clone());
                    break;
                }
            }
            let member = found.ok_or_else(|| MaintenanceError::NotFound {
                selector: selectors
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            })?;
            vec![member]
        }
    };

    // Down members: refused, or (--force) left out with a note.
    let down: Vec<(MemberId, String, String)> = seen.down();
    if !down.is_empty() {
        if !opts.force {
            return Err(MaintenanceError::MembersDown {
                down: down
                    .iter()
                    .map(|(_, l, w)| (l.clone(), w.clone()))
                    .collect(),
            });
        }
        for (_, label, why) in &down {
            report(Event::Forced {
                what: format!("{label} {why}; going ahead without it (--force)"),
            });
        }
    }
    let mut done = DefragReport::default();
    let mut pending: Vec<MemberInfo> = Vec::new();
    for m in targets {
        if let Some((_, _, why)) = down.iter().find(|(id, _, _)| *id == m.id) {
            done.members.push(MemberDefrag {
                id: m.id,
                name: m.display_name(),
                role: role_of(&m, seen.leader),
                endpoint: m.client_urls.first().cloned().unwrap_or_default(),
                outcome: Outcome::Skipped {
                    reason: format!("{why} (--force)"),
                },
            });
        } else {
            pending.push(m);
        }
    }
    report(Event::DefragPlan {
        order: order(&pending, seen.leader)
            .iter()
            .map(|m| with_role(m.id, &m.name, role_of(m, seen.leader)))
            .collect(),
    });

    let mut seen = seen;
    let mut first = true;
    while !pending.is_empty() {
        if !first {
            seen = wait_healthy(
                client,
                opts,
                &down,
                None,
                "before the next member",
                &mut *report,
            )
            .await?;
        }
        first = false;
        // The leader may have moved since the plan (a defragmenting leader can lose it):
        // the order is decided again for each member.
        let next = order(&pending, seen.leader)[0].clone();
        pending.retain(|m| m.id != next.id);
        let role = role_of(&next, seen.leader);
        let label = next.label();
        let Some(status) = seen.status_of(next.id).cloned() else {
            done.members.push(MemberDefrag {
                id: next.id,
                name: next.display_name(),
                role,
                endpoint: String::new(),
                outcome: Outcome::Skipped {
                    reason: "does not answer".to_string(),
                },
            });
            continue;
        };
        if !next.is_learner {
            let voters = seen.voters();
            let others = seen.serving_voters_except(next.id);
            if others < quorum(voters) {
                if !opts.force {
                    return Err(MaintenanceError::QuorumAtRisk {
                        member: label,
                        others,
                        voters,
                        needed: quorum(voters),
                    });
                }
                report(Event::Forced {
                    what: format!(
                        "while {label} defragments, {others} of {voters} voting members serve: the cluster takes no writes until it is done (--force)"
                    ),
                });
            }
        }
        let endpoint = status.endpoint.clone();
        let mut entry = MemberDefrag {
            id: next.id,
            name: next.display_name(),
            role,
            endpoint: endpoint.clone(),
            outcome: Outcome::WouldDefragment {
                db_size: status.db_size,
                db_size_in_use: status.db_size_in_use,
            },
        };
        if opts.dry_run {
            done.members.push(entry);
            continue;
        }
        report(Event::DefragStarted {
            id: next.id,
            member: label.clone(),
            endpoint: endpoint.clone(),
        });
        let started = std::time::Instant::now();
        match client.defragment(&endpoint, opts.rpc_timeout).await {
            Ok(()) => {}
            Err(e) if e.kind == EtcdErrorKind::NotSupportedForLearner => {
                // etcd's learner gate lets only Status and serializable reads through.
                let reason = "etcd refuses Defragment on a learner (rpc not supported for learner); defragment it once promoted".to_string();
                report(Event::DefragSkipped {
                    member: label,
                    reason: reason.clone(),
                });
                entry.outcome = Outcome::Skipped { reason };
                done.members.push(entry);
                continue;
            }
            Err(e) if e.kind == EtcdErrorKind::Timeout => {
                return Err(MaintenanceError::DefragTimedOut {
                    member: label,
                    waited: opts.rpc_timeout,
                    db_size: super::size(status.db_size),
                })
            }
            Err(source) => {
                return Err(MaintenanceError::DefragFailed {
                    member: label,
                    source,
                })
            }
        }
        let took = started.elapsed();
        report(Event::DefragFinished {
            id: next.id,
            member: label.clone(),
            took,
        });
        // Healthy and caught up with what was committed while it was busy, before
        // anything else happens.
        seen = wait_healthy(
            client,
            opts,
            &down,
            Some((next.id, seen.committed_index())),
            &format!("after defragmenting {label}"),
            &mut *report,
        )
        .await?;
        let after = seen
            .status_of(next.id)
            .expect("wait_healthy returns once the member answers");
        entry.outcome = Outcome::Defragmented {
            db_size_before: status.db_size,
            db_size_in_use_before: status.db_size_in_use,
            db_size_after: after.db_size,
            db_size_in_use_after: after.db_size_in_use,
            took_ms: took.as_millis() as u64,
        };
        done.members.push(entry);
    }
    Ok(done)
}

/// Learners, then followers, then the leader; by name within each.
fn order(members: &[MemberInfo], leader: Option<MemberId>) -> Vec<MemberInfo> {
    let mut sorted = members.to_vec();
    sorted.sort_by_key(|m| {
        let rank = if m.is_learner {
            0
        } else if Some(m.id) == leader {
            2
        } else {
            1
        };
        (rank, m.display_name(), m.id)
    });
    sorted
}

fn role_of(m: &MemberInfo, leader: Option<MemberId>) -> &'static str {
    if m.is_learner {
        "learner"
    } else if Some(m.id) == leader {
        "leader"
    } else {
        "follower"
    }
}

/// Waits (bounded by `opts.health_timeout`) until every member but those known down
/// serves, a leader is agreed on, and `caught_up`'s member (if any) has applied the
/// given index.
async fn wait_healthy(
    client: &EtcdClient,
    opts: &DefragOptions,
    known_down: &[(MemberId, String, String)],
    caught_up: Option<(MemberId, u64)>,
    after: &str,
    report: Reporter<'_>,
) -> Result<Observed> {
    let deadline = Instant::now() + opts.health_timeout;
    let mut reported = false;
    loop {
        let problem = match Observed::collect(client, deadline).await {
            Ok(seen) => {
                let mut problems: Vec<String> = seen
                    .down()
                    .into_iter()
                    .filter(|(id, _, _)| !known_down.iter().any(|(d, _, _)| d == id))
                    .map(|(_, label, why)| format!("{label} {why}"))
                    .collect();
                if seen.leader.is_none() {
                    problems.push("no leader is agreed on".to_string());
                }
                if let Some((id, index)) = caught_up {
                    match seen.status_of(id) {
                        Some(s) if s.raft_applied_index >= index => {}
                        Some(s) => problems.push(format!(
                            "{id} has applied {} of {index} entries",
                            s.raft_applied_index
                        )),
                        None => {}
                    }
                }
                if problems.is_empty() {
                    return Ok(seen);
                }
                problems.join("; ")
            }
            Err(MaintenanceError::Membership(e)) => e.to_string(),
            Err(e) => return Err(e),
        };
        if Instant::now() + POLL >= deadline {
            return Err(MaintenanceError::Unhealthy {
                after: after.to_string(),
                problem,
                waited: opts.health_timeout,
            });
        }
        if !reported {
            // Said once: a member that just defragmented needs a moment to catch up.
            reported = true;
            report(Event::WaitingForHealth {
                reason: format!("{after}: {problem}"),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `8e9e05c52164694d (node2, leader)`.
pub fn with_role(id: MemberId, name: &str, role: &str) -> String {
    if name.is_empty() || name == id.to_string() {
        format!("{id} ({role})")
    } else {
        format!("{id} ({name}, {role})")
    }
}

/// `1.2 MB (in use 800 kB)`.
pub fn sizes(db_size: i64, in_use: i64) -> String {
    format!("{} (in use {})", super::size(db_size), super::size(in_use))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, name: &str, learner: bool) -> MemberInfo {
        MemberInfo {
            id: MemberId(id),
            name: name.into(),
            peer_urls: vec![],
            client_urls: vec![],
            is_learner: learner,
        }
    }

    #[test]
    fn learners_then_followers_then_the_leader() {
        let members = [
            m(1, "c", false),
            m(2, "a", false),
            m(3, "z", true),
            m(4, "b", false),
        ];
        let names: Vec<String> = order(&members, Some(MemberId(2)))
            .iter()
            .map(|m| m.name.clone())
            .collect();
        assert_eq!(names, ["z", "b", "c", "a"]);
    }
}
