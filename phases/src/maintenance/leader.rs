//! `phase etcd move-leader`, and moving leadership away from a member about to leave.
//!
//! MoveLeader is served by the leader only ("not leader" elsewhere): raft sends the target
//! a TimeoutNow, the target campaigns at once in the next term, and etcd answers when it
//! leads. One election, without the election timeout's pause a dead or removed leader
//! costs. etcd refuses a learner or unknown target ("bad leader transferee"); a target
//! that is down would only make raft give up after an election timeout, so the target is
//! checked first: a started voter that serves.

use std::time::Duration;

use tokio::time::Instant;

use crate::membership::{Cluster, EtcdErrorKind, MemberId, MemberInfo, Selector};

use super::{serving, Event, MaintenanceError, Observed, Reporter, Result, POLL};

/// Leadership moved (or was where it was asked to be already).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderMoved {
    pub from: MemberId,
    pub from_name: String,
    pub to: MemberId,
    pub to_name: String,
    /// The target led already; nothing was done.
    pub already: bool,
    /// The raft term the target leads in.
    pub term: u64,
    pub took_ms: u64,
}

/// Moves leadership to the member `target` names, waiting up to `timeout` (elections
/// included) until the target is seen leading.
pub async fn move_leader<C: Cluster>(
    client: &C,
    target: &Selector,
    timeout: Duration,
    report: Reporter<'_>,
) -> Result<LeaderMoved> {
    let deadline = Instant::now() + timeout;
    let seen = Observed::collect(client, deadline).await?;
    let member = target
        .find(&seen.membership.members)?
        .cloned()
        .ok_or_else(|| MaintenanceError::NotFound {
            selector: target.to_string(),
        })?;
    check_target(&seen, &member)?;
    transfer(client, seen, &member, deadline, timeout, report).await
}

/// Refuses a target that cannot lead: a learner, a member that has not started, or one
/// that does not serve.
fn check_target(seen: &Observed, member: &MemberInfo) -> Result<()> {
    let bad = |why: String| MaintenanceError::BadTarget {
        target: member.label(),
        why,
    };
    if member.is_learner {
        return Err(bad(format!(
            "it is a learner, and a learner has no vote and cannot lead (etcd: bad leader transferee); promote it first (kubeadm-etcd phase etcd promote --id {})",
            member.id
        )));
    }
    if let Some(problem) = seen.problem(member.id) {
        return Err(bad(format!(
            "it {problem}; leadership only goes to a started voting member that serves"
        )));
    }
    Ok(())
}

/// MoveLeader on the current leader, then waits until `member` is seen leading. The
/// leader is looked up again when etcd says the call reached a follower (the leader
/// changed in between).
async fn transfer<C: Cluster>(
    client: &C,
    mut seen: Observed,
    member: &MemberInfo,
    deadline: Instant,
    timeout: Duration,
    report: Reporter<'_>,
) -> Result<LeaderMoved> {
    let started = std::time::Instant::now();
    let label = |id: MemberId, seen: &Observed| {
        seen.membership
            .by_id(id)
            .map_or_else(|| id.to_string(), |m| m.label())
    };
    let name = |id: MemberId, seen: &Observed| {
        seen.membership
            .by_id(id)
            .map_or_else(|| id.to_string(), |m| m.display_name())
    };
    loop {
        let Some(leader) = seen.leader else {
            if Instant::now() + POLL >= deadline {
                return Err(MaintenanceError::NoLeader {
                    detail: describe(&seen),
                });
            }
            tokio::time::sleep(POLL).await;
            seen = Observed::collect(client, deadline).await?;
            continue;
        };
        if leader == member.id {
            let term = seen.status_of(leader).map_or(0, |s| s.raft_term);
            return Ok(LeaderMoved {
                from: leader,
                from_name: name(leader, &seen),
                to: member.id,
                to_name: member.display_name(),
                already: true,
                term,
                took_ms: 0,
            });
        }
        let leader_url = seen
            .status_of(leader)
            .map(|s| s.endpoint.clone())
            .unwrap_or_default();
        report(Event::MovingLeader {
            from: label(leader, &seen),
            to: member.label(),
        });
        match client.move_leader(&leader_url, member.id).await {
            Ok(()) => {}
            // The leader changed between the look-up and the call: look again.
            Err(e) if matches!(e.kind, EtcdErrorKind::NotLeader | EtcdErrorKind::NoLeader) => {
                if Instant::now() + POLL >= deadline {
                    return Err(MaintenanceError::LeaderNotMoved {
                        target: member.label(),
                        waited: timeout,
                        detail: e.to_string(),
                    });
                }
                tokio::time::sleep(POLL).await;
                seen = Observed::collect(client, deadline).await?;
                continue;
            }
            Err(source) => {
                return Err(MaintenanceError::Rpc {
                    op: "MoveLeader",
                    endpoint: leader_url,
                    source,
                })
            }
        }
        // etcd answered once the target's own node knows it leads; wait until the
        // target's Status and a majority say so too, as every later step relies on it.
        loop {
            seen = Observed::collect(client, deadline).await?;
            let target_leads = seen
                .status_of(member.id)
                .is_some_and(|s| serving(s) && s.leader == member.id);
            if target_leads && seen.leader == Some(member.id) {
                let term = seen.status_of(member.id).map_or(0, |s| s.raft_term);
                let took = started.elapsed();
                report(Event::LeaderMoved {
                    from: label(leader, &seen),
                    to: member.label(),
                    took,
                });
                return Ok(LeaderMoved {
                    from: leader,
                    from_name: name(leader, &seen),
                    to: member.id,
                    to_name: member.display_name(),
                    already: false,
                    term,
                    took_ms: took.as_millis() as u64,
                });
            }
            if Instant::now() + POLL >= deadline {
                return Err(MaintenanceError::LeaderNotMoved {
                    target: member.label(),
                    waited: timeout,
                    detail: describe(&seen),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn describe(seen: &Observed) -> String {
    let down = seen.down();
    let leader = match seen.leader {
        Some(l) => format!(
            "the members agree {} leads",
            seen.membership
                .by_id(l)
                .map_or_else(|| l.to_string(), |m| m.label())
        ),
        None => "no leader is agreed on".to_string(),
    };
    if down.is_empty() {
        leader
    } else {
        format!(
            "{leader}; {}",
            down.iter()
                .map(|(_, label, why)| format!("{label} {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}

/// When `leaving` leads, moves leadership to the serving voter that has applied the most
/// (ties: by name) and returns the move; `None` when it does not lead. For taking the
/// leader out of the cluster: its removal then costs no election timeout.
pub async fn move_away<C: Cluster>(
    client: &C,
    leaving: &MemberInfo,
    timeout: Duration,
    report: Reporter<'_>,
) -> Result<Option<LeaderMoved>> {
    let deadline = Instant::now() + timeout;
    let seen = Observed::collect(client, deadline).await?;
    if seen.leader != Some(leaving.id) {
        return Ok(None);
    }
    let target = heir(&seen, leaving.id).ok_or_else(|| MaintenanceError::BadTarget {
        target: "another voting member".to_string(),
        why: format!("no voting member other than {} serves", leaving.label()),
    })?;
    transfer(client, seen, &target, deadline, timeout, report)
        .await
        .map(Some)
}

/// The voter that would lead next if `leaving` went: serving, most applied, by name.
pub fn heir(seen: &Observed, leaving: MemberId) -> Option<MemberInfo> {
    seen.members()
        .filter(|(m, s)| {
            !m.is_learner && m.id != leaving && s.as_ref().is_ok_and(serving) && m.started()
        })
        .max_by(|(a, sa), (b, sb)| {
            let applied = |s: &std::result::Result<crate::membership::MemberStatus, _>| {
                s.as_ref().map_or(0, |s| s.raft_applied_index)
            };
            applied(sa)
                .cmp(&applied(sb))
                .then_with(|| b.display_name().cmp(&a.display_name()))
        })
        .map(|(m, _)| m.clone())
}
