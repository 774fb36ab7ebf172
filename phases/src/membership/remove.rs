//! `phase etcd remove-member`: roll a learner back, or take a voter out when the rest can
//! carry on without it.
//!
//! Idempotent: a member that is not (or no longer) in the list is success.

use super::cluster::Cluster;
use super::{quorum, EtcdErrorKind, MemberId, MemberInfo, MembershipError, Result, Selector};

/// What was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveOutcome {
    Removed {
        id: MemberId,
        name: String,
        was_learner: bool,
    },
    /// No member matched: nothing to do.
    NotAMember { selector: String },
    /// Dry run: this member would be removed.
    WouldRemove {
        id: MemberId,
        name: String,
        was_learner: bool,
    },
}

/// Which member, and whether to override the quorum check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveOptions {
    pub selector: Selector,
    pub force: bool,
    pub dry_run: bool,
    /// How long to wait while the cluster has no leader (an election) before giving up.
    pub timeout: std::time::Duration,
}

/// Removes the member `opts.selector` names.
pub async fn remove<C: Cluster>(client: &C, opts: &RemoveOptions) -> Result<RemoveOutcome> {
    remove_reporting(client, opts, &mut |_| {}).await
}

/// [`remove`], reporting to `report` the leadership move that comes first when the member
/// leads: a removed leader steps down only once its removal is committed, and the others
/// then wait out an election timeout before electing another; a move first is one quick
/// election (what Cluster API does before deleting a leader's machine).
pub async fn remove_reporting<C: Cluster>(
    client: &C,
    opts: &RemoveOptions,
    report: crate::maintenance::Reporter<'_>,
) -> Result<RemoveOutcome> {
    let membership = client
        .member_list_until(tokio::time::Instant::now() + opts.timeout)
        .await?;
    client.sync_endpoints(&membership)?;
    let Some(member) = opts.selector.find(&membership.members)?.cloned() else {
        return Ok(RemoveOutcome::NotAMember {
            selector: opts.selector.to_string(),
        });
    };
    if !member.is_learner && !opts.force {
        check_quorum_without(client, &membership.members, &member).await?;
    }
    if opts.dry_run {
        return Ok(RemoveOutcome::WouldRemove {
            id: member.id,
            name: member.display_name(),
            was_learner: member.is_learner,
        });
    }
    if !member.is_learner {
        let moved =
            crate::maintenance::leader::move_away(client, &member, opts.timeout, &mut *report)
                .await;
        match moved {
            Ok(_) => {}
            Err(e) if opts.force => report(crate::maintenance::Event::Forced {
                what: format!(
                    "moving leadership away from {} failed ({e}); removing it anyway (--force)",
                    member.label()
                ),
            }),
            Err(e) => {
                return Err(MembershipError::LeaderTransfer {
                    member: member.label(),
                    source: Box::new(e),
                })
            }
        }
    }
    // Removing a learner never touches quorum: it has no vote, so this is always safe and
    // is how a failed join is rolled back. Removing a voter lowers the number of voters
    // and so the quorum, but it also removes one of the members that could reach it;
    // `check_quorum_without` made sure the healthy voters that stay are enough.
    match client.remove(member.id).await {
        Ok(()) => {}
        Err(e) if e.kind == EtcdErrorKind::MemberNotFound => {}
        Err(e) => {
            // The removal may have landed even though the answer was lost.
            let gone = client
                .member_list()
                .await
                .is_ok_and(|l| l.by_id(member.id).is_none());
            if !gone {
                return Err(MembershipError::Rpc {
                    op: "MemberRemove",
                    endpoint: client.endpoints().join(","),
                    source: e,
                });
            }
        }
    }
    Ok(RemoveOutcome::Removed {
        id: member.id,
        name: member.display_name(),
        was_learner: member.is_learner,
    })
}

/// Refuses when the healthy voters other than `target` would not make a quorum of the
/// remaining voters.
async fn check_quorum_without<C: Cluster>(
    client: &C,
    members: &[MemberInfo],
    target: &MemberInfo,
) -> Result<()> {
    let others: Vec<MemberInfo> = members
        .iter()
        .filter(|m| !m.is_learner && m.id != target.id)
        .cloned()
        .collect();
    let refuse = |detail: String| MembershipError::QuorumAtRisk {
        action: "remove",
        id: target.id,
        name: target.display_name(),
        detail,
    };
    if others.is_empty() {
        return Err(refuse(
            "it is the only voting member; without it the cluster has no member to keep its data"
                .to_string(),
        ));
    }
    let healthy = client
        .statuses(&others)
        .await
        .iter()
        .filter(|s| s.as_ref().is_ok_and(|s| s.healthy()))
        .count();
    let needed = quorum(others.len());
    if healthy < needed {
        return Err(refuse(format!(
            "of the {} voting members that would remain, {healthy} are started and healthy but {needed} are needed for quorum",
            others.len()
        )));
    }
    Ok(())
}
