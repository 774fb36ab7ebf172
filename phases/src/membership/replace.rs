//! `join-learner --replace`: a node re-imaged under the same name takes the place of its
//! old member in one step: the old member is removed, then the node joins as a learner as
//! any join does.
//!
//! Which member stands for this node: one with this node's name and another peer URL (a
//! new address), or one with this node's peer URL that has run and whose data this node
//! does not hold (the same address, a wiped disk). A member with this peer URL that never
//! started is not replaced but reused, as every join reuses it: it is the learner an
//! interrupted run added, or one exactly like it, and it has no data to lose.
//!
//! It is removed only when all of this holds, checked right before the removal, and
//! refused otherwise, naming the member and the check:
//! - **down**, on two looks [`CONFIRM_AFTER`] apart: it does not answer on any of its
//!   client URLs (connection refused, no route, no answer in time; any other answer,
//!   even an error, means something is there), and no other member that answers has an
//!   active raft connection to it (their `etcd_network_active_peers`; a member that cannot
//!   say is a refusal): a member this node cannot reach but its peers still talk to is
//!   alive;
//! - **quorum now**: the removal is a raft entry that the voters as they are must commit,
//!   so a majority of them answers (2 voters with one down: refused, whatever the count
//!   after the removal would be);
//! - **quorum after**: the voters that remain and answer are a majority of the voters
//!   that remain, and the add that follows would be accepted (etcd's add rule for the
//!   release, see [`super::version::AddRule`]): nothing is removed for a join that would
//!   then be refused;
//! - **data directory**: this node's is empty or would be accepted for the new member
//!   (`--wipe-data-dir` as for any join). The old member's own data refuses: the node was
//!   not re-imaged, and starting its etcd again brings it back as itself.
//!
//! Crash-safe: a rerun after the removal finds nothing to replace and joins; a rerun after
//! the add finds the new learner by its peer URL (never started, or started with this
//! node's data) and reuses it.

use std::time::Duration;

use super::cluster::Cluster;
use super::datadir::{self, DataDirState};
use super::join::{foreign_reason, preflight_cluster, JoinOptions};
use super::{
    member_label, quorum, EtcdErrorKind, Event, MemberInfo, MemberStatus, Membership,
    MembershipError, Reporter, Result, RpcError,
};

/// The pause between the two looks that must both find the member down: a member that
/// restarts (the kubelet) is down for a moment and then answers again.
pub const CONFIRM_AFTER: Duration = Duration::from_secs(1);

/// The member list for a replacing join. Without a leader, [`Cluster::member_list_until`]
/// waits out an election; but when fewer voters answer at all than a quorum, no election
/// can end, and no removal can be committed: that is refused at once, naming the member
/// this node would replace.
pub async fn member_list<C: Cluster>(
    client: &C,
    opts: &JoinOptions,
    deadline: tokio::time::Instant,
) -> Result<Membership> {
    const POLL: Duration = Duration::from_millis(250);
    loop {
        match client.member_list().await {
            Err(e @ MembershipError::NoLeader { .. }) => {
                if let Some(refusal) = lost_quorum(client, opts).await {
                    return Err(refusal);
                }
                if tokio::time::Instant::now() + POLL >= deadline {
                    return Err(e);
                }
                tokio::time::sleep(POLL).await;
            }
            other => return other,
        }
    }
}

/// The refusal when too few voters answer (even without a leader) to ever commit the
/// removal, if this node has a member to replace.
async fn lost_quorum<C: Cluster>(client: &C, opts: &JoinOptions) -> Option<MembershipError> {
    let local = client.member_list_local().await.ok()?;
    let statuses = client.statuses(&local.members).await;
    let voters = local.voters().count();
    let answering = local
        .members
        .iter()
        .zip(&statuses)
        .filter(|(m, s)| !m.is_learner && s.is_ok())
        .count();
    if answering >= quorum(voters) {
        return None;
    }
    let state = datadir::inspect(&opts.data_dir).ok()?;
    let target = find_target(&local, opts, &state).ok()??;
    Some(MembershipError::ReplaceRefused {
        id: target.id,
        name: target.display_name(),
        reason: no_quorum(answering, voters),
    })
}

fn no_quorum(answering: usize, voters: usize) -> String {
    format!(
        "the cluster has no quorum: {answering} of {voters} voting members answer and {} are needed to commit the removal (a membership change is a raft entry the current voters must agree on, whatever the count after it). Bring a voting member back first, or recover from a snapshot (kubeadm-etcd phase etcd snapshot restore)",
        quorum(voters)
    )
}

/// Removes the member that stands for this node when it is safe (see the module
/// documentation) and returns the member list to join with. Without such a member,
/// `membership` as it is. In a dry run nothing is removed and the list is returned
/// without that member.
pub async fn remove_stale_member<C: Cluster>(
    client: &C,
    membership: Membership,
    opts: &JoinOptions,
    report: Reporter<'_>,
) -> Result<Membership> {
    let state = datadir::inspect(&opts.data_dir)?;
    let Some(target) = find_target(&membership, opts, &state)? else {
        return Ok(membership);
    };
    let refuse = |reason: String| MembershipError::ReplaceRefused {
        id: target.id,
        name: target.display_name(),
        reason,
    };

    let mut evidence = String::new();
    for look in 0..2 {
        if look > 0 {
            tokio::time::sleep(CONFIRM_AFTER).await;
        }
        let statuses = client.statuses(&membership.members).await;
        evidence = down_evidence(client, &membership, &target, &statuses)
            .await
            .map_err(|why| refuse(format!("it is not known to be down: {why}")))?;
        quorum_now(&membership, &target, &statuses).map_err(refuse)?;
    }

    let after = without(&membership, &target);
    let existing_after = after.by_peer_url(&opts.peer_url).cloned();
    // What the join will check once the member is gone, checked before it goes: the
    // remaining voters keep quorum, and etcd would accept the add.
    preflight_cluster(client, &after, existing_after.is_none(), &mut |_: Event| {})
        .await
        .map_err(|e| {
            refuse(format!(
                "once it is removed, the join would be refused anyway: {e}"
            ))
        })?;
    if let Some(reason) = data_dir_problem(&state, &after, existing_after.as_ref(), &target) {
        if !opts.wipe_data_dir {
            return Err(refuse(format!(
                "this node's data directory {} {reason}",
                opts.data_dir.display()
            )));
        }
    }

    if !opts.dry_run {
        remove(client, &target).await.map_err(|e| {
            refuse(format!(
                "etcd refused the removal ({e}); see the member list with `kubeadm-etcd phase etcd status`"
            ))
        })?;
    }
    report(Event::StaleMemberRemoved {
        id: target.id,
        name: target.display_name(),
        was_learner: target.is_learner,
        evidence,
        dry_run: opts.dry_run,
    });
    if opts.dry_run {
        return Ok(after);
    }
    let membership = client.member_list().await?;
    client.sync_endpoints(&membership)?;
    Ok(membership)
}

/// The member that stands for this node, if any; several are an error (which one this
/// node replaces is not for this tool to guess).
fn find_target(
    membership: &Membership,
    opts: &JoinOptions,
    state: &DataDirState,
) -> Result<Option<MemberInfo>> {
    let mut targets: Vec<&MemberInfo> = membership
        .members
        .iter()
        .filter(|m| !m.name.is_empty() && m.name == opts.name && !m.has_peer_url(&opts.peer_url))
        .collect();
    if let Some(m) = membership.by_peer_url(&opts.peer_url) {
        let ours = matches!(state, DataDirState::Member { member_id, cluster_id }
            if *member_id == m.id && *cluster_id == membership.cluster_id);
        if m.started() && !ours && !targets.iter().any(|t| t.id == m.id) {
            targets.push(m);
        }
    }
    match targets.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        [first, ..] => Err(MembershipError::ReplaceRefused {
            id: first.id,
            name: first.display_name(),
            reason: format!(
                "several members stand for this node ({}): remove the ones that are not this node's with `kubeadm-etcd phase etcd remove-member --id <id>` first",
                targets
                    .iter()
                    .map(|m| format!("{} with peer URLs [{}]", m.label(), m.peer_urls.join(",")))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }),
    }
}

/// Why `target` counts as down, or why it does not.
async fn down_evidence<C: Cluster>(
    client: &C,
    membership: &Membership,
    target: &MemberInfo,
    statuses: &[std::result::Result<MemberStatus, RpcError>],
) -> std::result::Result<String, String> {
    let mut silent = Vec::new();
    for url in &target.client_urls {
        match client.answers(url).await {
            Ok(()) => return Err(format!("it answers on its client URL {url}")),
            Err(e) if no_answer(&e) => silent.push(format!("{url}: {e}")),
            Err(e) => {
                return Err(format!(
                    "its client URL {url} gives an answer that does not prove it down ({e})"
                ))
            }
        }
    }
    let mut reported = 0;
    for (m, status) in membership.members.iter().zip(statuses) {
        if m.id == target.id {
            continue;
        }
        let Ok(status) = status else {
            // Down itself: it can say nothing about anyone.
            continue;
        };
        match client.active_peers(&status.endpoint).await {
            Ok(peers) if peers.contains(&target.id) => {
                return Err(format!(
                    "member {} has an active raft connection to it",
                    m.label()
                ))
            }
            Ok(_) => reported += 1,
            Err(e) => {
                return Err(format!(
                    "member {} answers but its peer connections could not be read ({e})",
                    m.label()
                ))
            }
        }
    }
    if reported == 0 {
        return Err("no other member answers to report on it".to_string());
    }
    let own = if target.client_urls.is_empty() {
        "it has never started (the member list has no name or client URL for it)".to_string()
    } else {
        format!("no answer on its client URL ({})", silent.join("; "))
    };
    Ok(format!(
        "{own}, and none of the {reported} other member(s) that answer has a raft connection to it"
    ))
}

/// Transport failures that mean nothing answers at that address. Anything else (a TLS
/// failure, an etcd error such as "no leader") comes from something that is running.
fn no_answer(e: &RpcError) -> bool {
    match e.kind {
        EtcdErrorKind::Timeout => true,
        EtcdErrorKind::Unavailable => [
            "Connection refused",
            "connection refused",
            "No route to host",
            "Network is unreachable",
            "timed out",
            "no answer within",
        ]
        .iter()
        .any(|m| e.message.contains(m)),
        _ => false,
    }
}

/// The removal is committed by the voters as they are now: a majority must answer. And
/// the voters that remain, those that answer, must be a majority of the voters that
/// remain.
fn quorum_now(
    membership: &Membership,
    target: &MemberInfo,
    statuses: &[std::result::Result<MemberStatus, RpcError>],
) -> std::result::Result<(), String> {
    let voters = membership.voters().count();
    let healthy = membership
        .members
        .iter()
        .zip(statuses)
        .filter(|(m, s)| !m.is_learner && s.as_ref().is_ok_and(|s| s.healthy()))
        .count();
    if healthy < quorum(voters) {
        return Err(no_quorum(healthy, voters));
    }
    if target.is_learner {
        return Ok(());
    }
    let remaining = voters - 1;
    let remaining_healthy = membership
        .members
        .iter()
        .zip(statuses)
        .filter(|(m, s)| {
            !m.is_learner && m.id != target.id && s.as_ref().is_ok_and(|s| s.healthy())
        })
        .count();
    if remaining == 0 {
        return Err(
            "it is the only voting member: without it the cluster has no member to keep its data"
                .to_string(),
        );
    }
    if remaining_healthy < quorum(remaining) {
        return Err(format!(
            "of the {remaining} voting members that would remain, {remaining_healthy} answer and {} are needed for quorum",
            quorum(remaining)
        ));
    }
    Ok(())
}

/// The member list without `target`, as it will be once it is removed.
fn without(membership: &Membership, target: &MemberInfo) -> Membership {
    Membership {
        members: membership
            .members
            .iter()
            .filter(|m| m.id != target.id)
            .cloned()
            .collect(),
        ..membership.clone()
    }
}

/// What the join would say about the data directory once `target` is gone; the old
/// member's own data is named as such.
fn data_dir_problem(
    state: &DataDirState,
    after: &Membership,
    existing_after: Option<&MemberInfo>,
    target: &MemberInfo,
) -> Option<String> {
    if let DataDirState::Member {
        member_id,
        cluster_id,
    } = state
    {
        if *member_id == target.id && *cluster_id == after.cluster_id {
            return Some(format!(
                "holds the data of member {} itself: this node still has it (it was not re-imaged). Start its etcd again (its static Pod manifest) and it rejoins with its data; or pass --wipe-data-dir as well to discard that data and join as a new member",
                member_label(target.id, &target.name)
            ));
        }
    }
    foreign_reason(state, after, existing_after)
        .map(|r| format!("{r}; pass --wipe-data-dir to delete its contents"))
}

/// MemberRemove, success when it landed although the answer was lost.
async fn remove<C: Cluster>(client: &C, target: &MemberInfo) -> std::result::Result<(), RpcError> {
    match client.remove(target.id).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind == EtcdErrorKind::MemberNotFound => Ok(()),
        Err(e) => {
            let gone = client
                .member_list()
                .await
                .is_ok_and(|l| l.by_id(target.id).is_none());
            if gone {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::MemberId;
    use std::path::PathBuf;

    fn member(id: u64, name: &str, ip: u8, learner: bool) -> MemberInfo {
        MemberInfo {
            id: MemberId(id),
            name: name.into(),
            peer_urls: vec![format!("https://10.0.0.{ip}:2380")],
            client_urls: if name.is_empty() {
                vec![]
            } else {
                vec![format!("https://10.0.0.{ip}:2379")]
            },
            is_learner: learner,
        }
    }

    fn opts(name: &str, ip: u8) -> JoinOptions {
        JoinOptions {
            name: name.into(),
            peer_url: format!("https://10.0.0.{ip}:2380"),
            data_dir: PathBuf::from("/nonexistent"),
            wipe_data_dir: false,
            replace: true,
            timeout: Duration::from_secs(1),
            dry_run: false,
        }
    }

    fn list(members: Vec<MemberInfo>) -> Membership {
        Membership {
            cluster_id: 7,
            members,
            served_by: String::new(),
        }
    }

    fn status(id: u64, healthy: bool) -> std::result::Result<MemberStatus, RpcError> {
        if !healthy {
            return Err(RpcError {
                kind: EtcdErrorKind::Unavailable,
                message: "tcp connect error: Connection refused (os error 111)".into(),
            });
        }
        Ok(MemberStatus {
            endpoint: String::new(),
            member_id: MemberId(id),
            cluster_id: 7,
            version: "3.6.14".into(),
            db_size: 0,
            db_size_in_use: 0,
            leader: MemberId(1),
            raft_index: 1,
            raft_term: 1,
            raft_applied_index: 1,
            is_learner: false,
            errors: vec![],
            storage_version: String::new(),
            db_size_quota: 0,
        })
    }

    #[test]
    fn the_member_standing_for_this_node_is_found_by_name_or_by_peer_url() {
        let empty = DataDirState::Empty;
        let m = list(vec![member(1, "a", 1, false), member(2, "b", 2, false)]);
        // Same name, new address.
        let t = find_target(&m, &opts("b", 9), &empty).unwrap().unwrap();
        assert_eq!(t.id, MemberId(2));
        // Same address, wiped disk.
        let t = find_target(&m, &opts("b", 2), &empty).unwrap().unwrap();
        assert_eq!(t.id, MemberId(2));
        // Same address, its own data: a rerun after the join, nothing to replace.
        let ours = DataDirState::Member {
            member_id: MemberId(2),
            cluster_id: 7,
        };
        assert_eq!(find_target(&m, &opts("b", 2), &ours).unwrap(), None);
        // A learner with this peer URL that never started: reused, not replaced.
        let m = list(vec![member(1, "a", 1, false), member(3, "", 2, true)]);
        assert_eq!(find_target(&m, &opts("b", 2), &empty).unwrap(), None);
        // Nobody of that name.
        assert_eq!(find_target(&m, &opts("c", 5), &empty).unwrap(), None);
        // Two candidates: refused.
        let m = list(vec![member(1, "b", 1, false), member(2, "x", 2, false)]);
        let err = find_target(&m, &opts("b", 2), &empty).unwrap_err();
        assert!(
            err.to_string()
                .contains("several members stand for this node"),
            "{err}"
        );
    }

    #[test]
    fn quorum_is_counted_before_and_after_the_removal() {
        let three = list(vec![
            member(1, "a", 1, false),
            member(2, "b", 2, false),
            member(3, "c", 3, false),
        ]);
        let target = three.members[2].clone();
        // 3 voters, the target down: 2 of 3 now, 2 of 2 after.
        assert!(quorum_now(
            &three,
            &target,
            &[status(1, true), status(2, true), status(3, false)]
        )
        .is_ok());
        // 3 voters, the target and another down: no quorum now.
        let err = quorum_now(
            &three,
            &target,
            &[status(1, true), status(2, false), status(3, false)],
        )
        .unwrap_err();
        assert!(
            err.contains("1 of 3 voting members answer and 2 are needed"),
            "{err}"
        );
        // 2 voters, the target down: 1 of 1 after, but the removal itself needs 2 of 2.
        let two = list(vec![member(1, "a", 1, false), member(2, "b", 2, false)]);
        let err = quorum_now(
            &two,
            &two.members[1].clone(),
            &[status(1, true), status(2, false)],
        )
        .unwrap_err();
        assert!(
            err.contains("1 of 2 voting members answer and 2 are needed"),
            "{err}"
        );
        // The only voter.
        let one = list(vec![member(1, "a", 1, false)]);
        let err = quorum_now(&one, &one.members[0].clone(), &[status(1, true)]).unwrap_err();
        assert!(err.contains("only voting member"), "{err}");
        // A learner: only quorum now.
        let with_learner = list(vec![member(1, "a", 1, false), member(2, "b", 2, true)]);
        assert!(quorum_now(
            &with_learner,
            &with_learner.members[1].clone(),
            &[status(1, true), status(2, false)]
        )
        .is_ok());
    }

    #[test]
    fn only_a_silent_address_counts_as_down() {
        let e = |kind, message: &str| RpcError {
            kind,
            message: message.into(),
        };
        assert!(no_answer(&e(EtcdErrorKind::Timeout, "no answer within 2s")));
        assert!(no_answer(&e(
            EtcdErrorKind::Unavailable,
            "transport error: tcp connect error: Connection refused (os error 111)"
        )));
        assert!(!no_answer(&e(
            EtcdErrorKind::NoLeader,
            "etcdserver: no leader"
        )));
        assert!(!no_answer(&e(
            EtcdErrorKind::Unavailable,
            "invalid peer certificate: UnknownIssuer"
        )));
    }
}
