//! `phase etcd alarm list | disarm`: etcd's two alarms, and what to do about each.
//!
//! - **NOSPACE**: a member's database reached `--quota-backend-bytes`; the whole cluster
//!   refuses writes (reads and deletes go on). Disarming alone only brings it back at the
//!   next write: the space has to be found first, by compacting the key history to the
//!   current revision and defragmenting every member, as etcd's maintenance guide says.
//!   `disarm` refuses while a member's file is still fragmented or over the quota, and
//!   `disarm --compact-and-defrag` does the compaction and the (one member at a time)
//!   defragmentation itself, then disarms. It never deletes keys: when the data in use
//!   itself does not fit, the message says to raise the quota.
//! - **CORRUPT**: the corruption check found members whose data differ; writes are refused.
//!   Disarming it would let the diverged member serve and spread its data, so `disarm`
//!   refuses unless `--corrupt-resolved` says the member was replaced or the cluster
//!   restored (etcd's data corruption guide: purge or replace the member, or restore the
//!   whole cluster, and only then remove the alarm).

use std::time::Duration;

use tokio::time::Instant;

use crate::membership::{Alarm, AlarmKind, EtcdClient, MemberId};

use super::defrag::{self, DefragOptions, DefragReport, Scope};
use super::{size, Event, MaintenanceError, Observed, Reporter, Result};

/// One alarm, with the member's name and what to do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmEntry {
    pub member_id: MemberId,
    /// Empty when the member is not in the list (a CORRUPT alarm of member 0).
    pub member: String,
    pub alarm: AlarmKind,
    pub advice: String,
}

/// The active alarms.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmReport {
    pub alarms: Vec<AlarmEntry>,
}

/// What to do about an alarm, as `alarm list` says it.
pub fn advice(kind: AlarmKind) -> &'static str {
    match kind {
        AlarmKind::NoSpace => "the database reached --quota-backend-bytes and the cluster refuses writes: compact to the current revision and defragment every member, then disarm (`kubeadm-etcd phase etcd alarm disarm --compact-and-defrag` does all three, one member at a time); if the data in use itself is near the quota, raise --quota-backend-bytes (etcd.local.extraArgs) instead",
        AlarmKind::Corrupt => "members hold different data and the cluster refuses writes: never disarm blindly. Find the diverged member in etcd's log (\"found data inconsistency with peers\"), replace it (remove-member, empty its data directory, join-learner, promote) or restore the cluster from a snapshot, check `etcdctl endpoint hashkv --cluster` agrees, then `alarm disarm --corrupt-resolved`",
    }
}

/// The cluster's alarms, with names from the member list (a serializable one: a CORRUPT
/// cluster may refuse the linearizable read the usual list starts with).
pub async fn list(client: &EtcdClient) -> Result<AlarmReport> {
    let alarms = client
        .alarms()
        .await
        .map_err(|source| MaintenanceError::Rpc {
            op: "Alarm (list)",
            endpoint: client.endpoints().join(","),
            source,
        })?;
    let members = client
        .member_list_local()
        .await
        .map(|l| l.members)
        .unwrap_or_default();
    Ok(AlarmReport {
        alarms: alarms
            .into_iter()
            .map(|a| AlarmEntry {
                member_id: a.member,
                member: members
                    .iter()
                    .find(|m| m.id == a.member)
                    .map(|m| m.display_name())
                    .unwrap_or_default(),
                alarm: a.kind,
                advice: advice(a.kind).to_string(),
            })
            .collect(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisarmOptions {
    /// Compact to the current revision and defragment every member before disarming
    /// NOSPACE.
    pub compact_and_defrag: bool,
    /// The operator says the corrupt member was replaced or the cluster restored.
    pub corrupt_resolved: bool,
    /// Disarm NOSPACE although the members' files do not show the space was found, and
    /// let the defragmentation go ahead with members down.
    pub force: bool,
    /// The bound of each Defragment call and of the compaction.
    pub rpc_timeout: Duration,
    pub health_timeout: Duration,
    pub dry_run: bool,
}

/// What `disarm` did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DisarmReport {
    /// The alarms deactivated (dry run: that would be).
    pub disarmed: Vec<AlarmEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compacted_to: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defrag: Option<DefragReport>,
}

/// A member's file counts as defragmented when at most this share of it is free pages
/// (a fresh defragmentation leaves a few pages free; a write or two after it adds some).
const FREE_SHARE_AFTER_DEFRAG: f64 = 0.25;
/// ... or at most this many bytes.
const FREE_BYTES_AFTER_DEFRAG: i64 = 4 << 20;
/// The data in use must leave this share of the quota free, or the alarm comes back.
const QUOTA_HEADROOM: f64 = 0.95;

/// Deactivates the cluster's alarms, after the checks in the module docs.
pub async fn disarm(
    client: &EtcdClient,
    opts: &DisarmOptions,
    report: Reporter<'_>,
) -> Result<DisarmReport> {
    let listed = list(client).await?;
    let mut done = DisarmReport::default();
    if listed.alarms.is_empty() {
        return Ok(done);
    }
    let corrupt: Vec<&AlarmEntry> = listed
        .alarms
        .iter()
        .filter(|a| a.alarm == AlarmKind::Corrupt)
        .collect();
    if !corrupt.is_empty() && !opts.corrupt_resolved {
        return Err(MaintenanceError::CorruptNotResolved {
            members: corrupt
                .iter()
                .map(|a| entry_label(a))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let nospace = listed.alarms.iter().any(|a| a.alarm == AlarmKind::NoSpace);
    if nospace {
        if opts.compact_and_defrag {
            let revision = client
                .current_revision()
                .await
                .map_err(|source| rpc("Range (current revision)", client, source))?;
            if !opts.dry_run {
                client
                    .compact(revision, opts.rpc_timeout)
                    .await
                    .or_else(|e| {
                        // Compacted already to this revision (a rerun): nothing to do.
                        if e.message.contains("required revision has been compacted") {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|source| rpc("Compact", client, source))?;
                report(Event::Compacted { revision });
            }
            done.compacted_to = Some(revision);
            let defragged = defrag::defrag(
                client,
                &DefragOptions {
                    scope: Scope::Cluster,
                    force: opts.force,
                    rpc_timeout: opts.rpc_timeout,
                    health_timeout: opts.health_timeout,
                    dry_run: opts.dry_run,
                },
                &mut *report,
            )
            .await?;
            done.defrag = Some(defragged);
        }
        if !opts.force && !opts.dry_run {
            check_space(client, opts.health_timeout).await?;
        }
    }
    // Members raise NOSPACE on their own, a moment after they apply a write the quota
    // refused: one that lagged raises it after the others were disarmed. So after each
    // round, once every member has applied what was committed, the list is read again
    // (a few rounds at most).
    let mut current = listed.alarms.clone();
    for round in 0..DISARM_ROUNDS {
        if round > 0 {
            settle(client, opts.health_timeout).await?;
            current = list(client).await?.alarms;
            if current.iter().any(|a| a.alarm == AlarmKind::Corrupt) && !opts.corrupt_resolved {
                return Err(MaintenanceError::CorruptNotResolved {
                    members: current
                        .iter()
                        .filter(|a| a.alarm == AlarmKind::Corrupt)
                        .map(entry_label)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        if current.is_empty() {
            break;
        }
        for entry in &current {
            if !opts.dry_run {
                let alarm = Alarm {
                    member: entry.member_id,
                    kind: entry.alarm,
                };
                client
                    .disarm(alarm)
                    .await
                    .map_err(|source| rpc("Alarm (deactivate)", client, source))?;
                report(Event::Disarmed {
                    alarm: entry.alarm.to_string(),
                    member: entry_label(entry),
                });
            }
            done.disarmed.push(entry.clone());
        }
        if opts.dry_run {
            break;
        }
    }
    Ok(done)
}

/// How many times `disarm` reads the alarms again after disarming them.
const DISARM_ROUNDS: usize = 3;

/// Waits until every member that answers has applied what was committed, then a moment
/// more for the alarms those applies raise to be committed too.
async fn settle(client: &EtcdClient, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let target = Observed::collect(client, deadline).await?.committed_index();
    loop {
        let seen = Observed::collect(client, deadline).await?;
        let behind = seen
            .statuses
            .iter()
            .flatten()
            .any(|s| s.raft_applied_index < target);
        if !behind || Instant::now() + super::POLL >= deadline {
            break;
        }
        tokio::time::sleep(super::POLL).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// Refuses to disarm NOSPACE until the space is found: the key history compacted to
/// (about) the current revision, every member's file without a large share of free pages
/// (defragmented since), and, where etcd reports the quota (3.6 and newer), the data in
/// use fitting it. Otherwise the next write raises the alarm again.
async fn check_space(client: &EtcdClient, timeout: Duration) -> Result<()> {
    const HOW: &str = "Run `kubeadm-etcd phase etcd alarm disarm --compact-and-defrag` (compacts to the current revision, defragments every member one at a time, then disarms); --force disarms anyway, and the alarm returns at the next write";
    let revision = client
        .current_revision()
        .await
        .map_err(|source| rpc("Range (current revision)", client, source))?;
    if revision > 1
        && !client
            .compacted_through(revision - 1)
            .await
            .map_err(|source| rpc("Range (compaction check)", client, source))?
    {
        return Err(MaintenanceError::NoSpaceNotResolved {
            why: format!(
                "the key history is not compacted (revision {} still reads back; the current one is {revision}): the space the alarm is about is mostly old revisions, which only a compaction to the current revision frees and a defragmentation then gives back. {HOW}",
                revision - 1
            ),
        });
    }
    let seen = Observed::collect(client, Instant::now() + timeout).await?;
    let mut fragmented = Vec::new();
    let mut full = Vec::new();
    for (m, s) in seen.members() {
        let Ok(s) = s else { continue };
        let free = s.db_size - s.db_size_in_use;
        if free > FREE_BYTES_AFTER_DEFRAG
            && free as f64 > s.db_size as f64 * FREE_SHARE_AFTER_DEFRAG
        {
            fragmented.push(format!(
                "{} ({} of which {} in use)",
                m.label(),
                size(s.db_size),
                size(s.db_size_in_use)
            ));
        }
        if s.db_size_quota > 0 && s.db_size_in_use as f64 >= s.db_size_quota as f64 * QUOTA_HEADROOM
        {
            full.push(format!(
                "{} ({} in use, quota {})",
                m.label(),
                size(s.db_size_in_use),
                size(s.db_size_quota)
            ));
        }
    }
    if !fragmented.is_empty() {
        return Err(MaintenanceError::NoSpaceNotResolved {
            why: format!(
                "the database files are not defragmented: {}; the space compaction freed is given back only by defragmenting. {HOW}",
                fragmented.join(", ")
            ),
        });
    }
    if !full.is_empty() {
        return Err(MaintenanceError::NoSpaceNotResolved {
            why: format!(
                "compacted and defragmented, the data in use still does not fit the quota on {}. Raise --quota-backend-bytes (etcd.local.extraArgs, then restart each member) or delete data first; --force disarms anyway and the alarm returns at the next write",
                full.join(", ")
            ),
        });
    }
    Ok(())
}

fn entry_label(a: &AlarmEntry) -> String {
    if a.member.is_empty() {
        format!("member {}", a.member_id)
    } else {
        crate::membership::member_label(a.member_id, &a.member)
    }
}

fn rpc(
    op: &'static str,
    client: &EtcdClient,
    source: crate::membership::RpcError,
) -> MaintenanceError {
    MaintenanceError::Rpc {
        op,
        endpoint: client.endpoints().join(","),
        source,
    }
}
