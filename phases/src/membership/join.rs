//! `phase etcd join-learner`: announce this node to the cluster as a learner.
//!
//! Inputs: the cluster's client URLs, this node's name, peer URL and data directory.
//! Output: the member's ID and the `--initial-cluster` its manifest must carry; the
//! manifest itself is written by [`write_manifest`].
//!
//! Preconditions checked first, before anything changes: quorum, etcd 3.4 or newer on
//! every member that answers, the name is not used by another member, and the data
//! directory is empty or this member's own.
//!
//! Idempotent: a member with this peer URL is reused, learner or voter, started or not,
//! so rerunning after a crash (even between the add and the manifest write) converges,
//! and rerunning after success changes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::cluster::Cluster;
use super::datadir::{self, DataDirState};
use super::replace;
use super::version::{check_learner_support, learner_limit_configurable, AddRule};
use super::{
    member_label, quorum, EtcdErrorKind, Event, MemberId, MemberInfo, Membership, MembershipError,
    Reporter, Result, RetryReason, RpcError,
};
use crate::config::KubeadmConfig;
use crate::manifest::{self, ManifestOptions, Member, WriteOutcome};

/// kubeadm's `EtcdAPICallRetryInterval`: the pause between attempts that etcd refused for
/// a passing reason.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// What to join as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOptions {
    /// This node's name, which the member will publish when it starts.
    pub name: String,
    /// This node's peer URL, `https://<advertise address>:2380`.
    pub peer_url: String,
    /// `etcd.local.dataDir`.
    pub data_dir: PathBuf,
    /// Delete a data directory that belongs to someone else instead of refusing.
    pub wipe_data_dir: bool,
    /// This node replaces a member that stands for it (its name, or its peer URL with
    /// someone else's data): remove that member first, only when it is down and its
    /// removal keeps quorum ([`super::replace`]).
    pub replace: bool,
    /// Bounds the whole operation, waiting for another join included.
    pub timeout: Duration,
    /// Check everything, change nothing.
    pub dry_run: bool,
}

/// How the member came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// Added now, as a learner.
    Added,
    /// A member with this peer URL already existed (a rerun).
    Reused { is_learner: bool, started: bool },
    /// Dry run: it would be added.
    WouldAdd,
}

/// An `--initial-cluster` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_url: String,
}

/// The result of [`add_learner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// `None` only in a dry run.
    pub member_id: Option<MemberId>,
    pub outcome: AddOutcome,
    pub cluster_id: u64,
    /// Every member, this one under its node name and the others as kubeadm names them
    /// (their name, or their hex ID while they have not started), one entry per peer URL.
    pub initial_cluster: Vec<InitialMember>,
    /// The voters' client URLs used.
    pub endpoints: Vec<String>,
}

impl Joined {
    /// A rerun after the member already started: its manifest, if present, is the one it
    /// runs with and stays as it is (rewriting it with today's member list would restart
    /// etcd for nothing).
    pub fn already_running(&self) -> bool {
        matches!(self.outcome, AddOutcome::Reused { started: true, .. })
    }
}

/// Checks the preconditions and adds this node as a learner (or finds it added).
pub async fn add_learner<C: Cluster>(
    client: &C,
    opts: &JoinOptions,
    report: Reporter<'_>,
) -> Result<Joined> {
    let deadline = Instant::now() + opts.timeout;
    let mut membership = if opts.replace {
        replace::member_list(client, opts, deadline).await?
    } else {
        client.member_list_until(deadline).await?
    };
    client.sync_endpoints(&membership)?;
    if opts.replace {
        membership = replace::remove_stale_member(client, membership, opts, report).await?;
    }
    report(Event::Endpoints {
        endpoints: client.endpoints(),
    });

    let existing = membership.by_peer_url(&opts.peer_url).cloned();
    let version = preflight_cluster(client, &membership, existing.is_none(), report).await?;
    check_name(&membership, opts)?;
    check_data_dir(&membership, existing.as_ref(), opts, report).await?;

    let (member_id, outcome) = match &existing {
        Some(m) => {
            report(Event::MemberReused {
                id: m.id,
                is_learner: m.is_learner,
                started: m.started(),
            });
            (
                Some(m.id),
                AddOutcome::Reused {
                    is_learner: m.is_learner,
                    started: m.started(),
                },
            )
        }
        None if opts.dry_run => (None, AddOutcome::WouldAdd),
        None => add_until_accepted(client, opts, version.as_ref(), deadline, report).await?,
    };

    // The list again, through the leader: it now holds the new member and whatever else
    // changed meanwhile (another join that finished), which --initial-cluster must match.
    let membership = if opts.dry_run {
        membership
    } else {
        client.member_list().await?
    };
    let mut initial_cluster = initial_cluster(&membership.members, opts);
    if opts.dry_run && existing.is_none() {
        initial_cluster.push(InitialMember {
            name: opts.name.clone(),
            peer_url: opts.peer_url.clone(),
        });
    }
    Ok(Joined {
        member_id,
        outcome,
        cluster_id: membership.cluster_id,
        initial_cluster,
        endpoints: client.endpoints(),
    })
}

/// Quorum and versions. Every member is asked for its Status, like kubeadm's
/// quorum-based health check: a majority of healthy voters is enough to add a learner.
///
/// When a member is to be added (`will_add`) and voters are down, etcd's add check for
/// the version in front of us ([`AddRule`]) decides: where etcd would refuse until those
/// voters are back, the join is refused here at once, naming them; where it would
/// accept, the join goes on with a warning per voter that is down.
///
/// Returns the oldest version among the voters that answered: any of them may serve the
/// add, and the oldest has the strictest rule.
pub(super) async fn preflight_cluster<C: Cluster>(
    client: &C,
    membership: &Membership,
    will_add: bool,
    report: Reporter<'_>,
) -> Result<Option<(semver::Version, String)>> {
    let statuses = client.statuses(&membership.members).await;
    let voters = membership.voters().count();
    let mut healthy = 0;
    let mut details = Vec::new();
    let mut down = Vec::new();
    // Voters that took the connection but did not answer in time: busy, or down.
    let mut slow = Vec::new();
    let mut oldest: Option<(semver::Version, String)> = None;
    for (m, s) in membership.members.iter().zip(&statuses) {
        if let Ok(s) = s {
            let version = check_learner_support(&s.endpoint, &s.version)?;
            if !m.is_learner && oldest.as_ref().is_none_or(|(v, _)| version < *v) {
                oldest = Some((version, s.version.clone()));
            }
        }
        if m.is_learner {
            continue;
        }
        match s {
            Ok(s) if s.healthy() => healthy += 1,
            Ok(s) => {
                let reason = if s.errors.is_empty() {
                    "no leader".to_string()
                } else {
                    s.errors.join("; ")
                };
                details.push(format!("{}: {reason}", m.display_name()));
                down.push((m.id, m.display_name(), reason));
            }
            Err(e) => {
                if e.kind == EtcdErrorKind::Timeout {
                    slow.push(m.clone());
                }
                details.push(format!("{}: {e}", m.display_name()));
                down.push((m.id, m.display_name(), e.to_string()));
            }
        }
    }
    if healthy < quorum(voters) {
        return Err(MembershipError::NoQuorum {
            voters,
            healthy,
            needed: quorum(voters),
            details: details.join("; "),
        });
    }
    if let (true, false, Some((v, text))) = (will_add, down.is_empty(), &oldest) {
        let rule = AddRule::of(v);
        if !rule.accepts(voters, healthy) && !slow.is_empty() {
            let back = answer_again(client, &slow).await;
            healthy += back.len();
            down.retain(|(id, _, _)| !back.contains(id));
        }
        if !rule.accepts(voters, healthy) {
            return Err(MembershipError::VotersDown {
                down,
                version: text.clone(),
                voters,
                rule,
            });
        }
    }
    // Only when the join goes on: an error above names the members itself.
    for (id, name, reason) in down {
        report(Event::VoterDown { id, name, reason });
    }
    report(Event::ClusterHealthy {
        voters,
        healthy,
        learners: membership.learners().count(),
    });
    Ok(oldest)
}

/// How long voters that did not answer in time are asked again before a join is refused
/// for them.
const SLOW_VOTER_GRACE: Duration = Duration::from_secs(10);

/// The voters among `slow` that answer, healthy, within [`SLOW_VOTER_GRACE`]. A voter
/// promoted a moment ago (by a concurrent join) serves clients only once it has applied
/// what it received, which for a large database takes seconds, while etcd already counts
/// it as connected and would accept the add: it is busy, not down. A voter that is really
/// down (paused) costs the join this grace before it is refused; one whose connection is
/// refused (killed) is not asked again.
async fn answer_again<C: Cluster>(client: &C, slow: &[MemberInfo]) -> Vec<MemberId> {
    let until = Instant::now() + SLOW_VOTER_GRACE;
    let mut back = Vec::new();
    while Instant::now() < until {
        let left: Vec<MemberInfo> = slow
            .iter()
            .filter(|m| !back.contains(&m.id))
            .cloned()
            .collect();
        if left.is_empty() {
            break;
        }
        for (m, s) in left.iter().zip(client.statuses(&left).await) {
            if s.is_ok_and(|s| s.healthy()) {
                back.push(m.id);
            }
        }
        if back.len() < slow.len() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    back
}

fn check_name(membership: &Membership, opts: &JoinOptions) -> Result<()> {
    if let Some(other) = membership
        .members
        .iter()
        .find(|m| m.name == opts.name && !m.has_peer_url(&opts.peer_url))
    {
        return Err(MembershipError::NameTaken {
            name: opts.name.clone(),
            id: other.id,
            peer_urls: other.peer_urls.clone(),
            peer_url: opts.peer_url.clone(),
        });
    }
    Ok(())
}

async fn check_data_dir(
    membership: &Membership,
    existing: Option<&MemberInfo>,
    opts: &JoinOptions,
    report: Reporter<'_>,
) -> Result<()> {
    let dir = &opts.data_dir;
    let state = datadir::inspect(dir)?;
    let foreign = foreign_reason(&state, membership, existing);
    let mut empty = state == DataDirState::Empty;
    if let Some(reason) = foreign {
        if !opts.wipe_data_dir {
            return Err(MembershipError::ForeignDataDir {
                path: dir.clone(),
                reason,
            });
        }
        if !opts.dry_run {
            // Deleting a large data directory takes a while: off the async workers.
            let owned = dir.clone();
            tokio::task::spawn_blocking(move || datadir::wipe(&owned))
                .await
                .map_err(|e| MembershipError::DataDir {
                    action: "wipe",
                    path: dir.clone(),
                    source: std::io::Error::other(e),
                })??;
        }
        report(Event::DataDirWiped {
            path: dir.clone(),
            reason,
        });
        empty = true;
    }
    if let Some(m) = existing.filter(|m| m.started() && empty) {
        // A member that ran before and comes back without its log may have acknowledged
        // entries it no longer has: as a voter that breaks raft's guarantees.
        return Err(MembershipError::ForeignDataDir {
            path: dir.clone(),
            reason: format!(
                "is empty, but member {} with this peer URL has already run and would come back without its data; if this node was re-imaged, rerun the join with --replace (it removes that member when it is down and quorum allows), or roll it back with `kubeadm-etcd phase etcd remove-member --id {}` and join again (wiping does not help)",
                m.label(),
                m.id
            ),
        });
    }
    Ok(())
}

/// Why the data directory in `state` is not for the member this node joins as
/// (`existing`, the member with its peer URL, if any): `None` when it is empty or that
/// member's own.
pub(super) fn foreign_reason(
    state: &DataDirState,
    membership: &Membership,
    existing: Option<&MemberInfo>,
) -> Option<String> {
    match state {
        DataDirState::Empty => None,
        DataDirState::Member { member_id, cluster_id } if *cluster_id != membership.cluster_id => Some(format!(
            "belongs to another etcd cluster (cluster ID {cluster_id:x}, member {member_id}; this cluster is {:x})",
            membership.cluster_id
        )),
        DataDirState::Member { member_id, .. } if existing.is_some_and(|e| e.id == *member_id) => None,
        DataDirState::Member { member_id, .. } => Some(match membership.by_id(*member_id) {
            Some(other) => format!(
                "belongs to member {member_id} ({}) of this cluster, not to this node's member",
                other.display_name()
            ),
            None => format!("belongs to member {member_id}, which was removed from this cluster"),
        }),
        DataDirState::Unrecognised { reason } => Some(format!("holds etcd data of unknown origin: {reason}")),
    }
}

async fn add_until_accepted<C: Cluster>(
    client: &C,
    opts: &JoinOptions,
    version: Option<&(semver::Version, String)>,
    deadline: Instant,
    report: Reporter<'_>,
) -> Result<(Option<MemberId>, AddOutcome)> {
    let started = Instant::now();
    loop {
        // Adding a learner leaves quorum as it is: a learner does not vote, so if it never
        // starts the cluster loses nothing and the learner can be removed at any time.
        // That is the whole point of joining as a learner; a voting add would raise the
        // quorum before the new member can help reach it (1 -> 2 voters: no writes until
        // it starts).
        let error = match client.add_learner(&opts.peer_url).await {
            Ok(id) => {
                report(Event::LearnerAdded { id });
                return Ok((Some(id), AddOutcome::Added));
            }
            Err(e) => e,
        };
        let retry = why_retry(client, &error, version).await?;
        // Whatever happened, the add may have landed (a lost answer, a timeout): look
        // before trying again, or a second learner would be added for this node.
        if let Some(landed) = landed(client, opts, report).await {
            return Ok(landed);
        }
        // Another add with this peer URL landed first (ours, from an earlier attempt
        // whose answer was lost, or a concurrent run for this node) and is gone again:
        // try once more at once.
        let Some((reason, message, advice)) = retry else {
            continue;
        };
        if Instant::now() + RETRY_INTERVAL >= deadline {
            return Err(MembershipError::Timeout {
                what: format!("add {} as a learner", opts.peer_url),
                waited: started.elapsed(),
                last_error: match advice {
                    Some(advice) => format!("{message}; {advice}"),
                    None => message,
                },
            });
        }
        report(Event::Retrying {
            reason,
            message,
            elapsed: started.elapsed(),
        });
        tokio::time::sleep(RETRY_INTERVAL).await;
    }
}

/// Why a refused add is worth another attempt: the reason, etcd's message with what it
/// means here, and what to do if it lasts. `None` for a peer URL that exists already
/// (the caller looks for it); an error when etcd will keep refusing.
async fn why_retry<C: Cluster>(
    client: &C,
    error: &RpcError,
    version: Option<&(semver::Version, String)>,
) -> Result<Option<(RetryReason, String, Option<String>)>> {
    Ok(Some(match error.kind {
        EtcdErrorKind::PeerUrlExists => return Ok(None),
        EtcdErrorKind::TooManyLearners => {
            let learners: Vec<MemberInfo> = match client.member_list().await {
                Ok(list) => list.learners().cloned().collect(),
                Err(_) => Vec::new(),
            };
            too_many_learners(error, &learners, version)
        }
        EtcdErrorKind::Unhealthy | EtcdErrorKind::NotEnoughStartedMembers => {
            // etcd refuses for as long as voters are down, or for 5 s after the serving
            // member (re)connected to one (right after a promotion). Only the second
            // passes: the first fails now, as the preflight would have.
            let membership = client.member_list().await?;
            preflight_cluster(client, &membership, true, &mut |_: Event| {}).await?;
            (RetryReason::Unhealthy, error.message.clone(), None)
        }
        _ if error.is_unavailable() => (RetryReason::Unavailable, error.message.clone(), None),
        _ => {
            return Err(MembershipError::Rpc {
                op: "MemberAdd",
                endpoint: client.endpoints().join(","),
                source: error.clone(),
            })
        }
    }))
}

/// "too many learner members": the learners in the way, and etcd's limit. etcd 3.4 and
/// 3.5 allow one learner; 3.6 takes `--max-learners`, which no RPC reports, so the limit
/// is inferred: etcd refused one more, so the learners in the list are the limit.
fn too_many_learners(
    error: &RpcError,
    learners: &[MemberInfo],
    version: Option<&(semver::Version, String)>,
) -> (RetryReason, String, Option<String>) {
    let reason = match learners.first() {
        Some(o) => RetryReason::OtherLearner {
            id: o.id,
            name: o.display_name(),
        },
        None => RetryReason::OtherLearner {
            id: MemberId(0),
            name: String::new(),
        },
    };
    if learners.is_empty() {
        return (reason, error.message.clone(), None);
    }
    let who: Vec<String> = learners
        .iter()
        .map(|l| member_label(l.id, &l.display_name()))
        .collect();
    let limit = match version {
        Some((v, text)) if !learner_limit_configurable(v) => {
            format!("etcd {text} allows one learner at a time")
        }
        _ => format!(
            "etcd allows {} learner{} at a time here (its --max-learners, inferred from the learners in the member list: no RPC reports it)",
            learners.len(),
            if learners.len() == 1 { "" } else { "s" }
        ),
    };
    let (learner, is) = if learners.len() == 1 {
        ("learner", "is")
    } else {
        ("learners", "are")
    };
    let message = format!(
        "{} ({learner} {} {is} joining; {limit})",
        error.message,
        who.join(", ")
    );
    let remove: Vec<String> = learners
        .iter()
        .map(|l| format!("`kubeadm-etcd phase etcd remove-member --id {}`", l.id))
        .collect();
    let advice = format!(
        "if that join has failed, roll it back with {}",
        remove.join(" or ")
    );
    (reason, message, Some(advice))
}

/// The member with this node's peer URL, if an add landed after all.
async fn landed<C: Cluster>(
    client: &C,
    opts: &JoinOptions,
    report: Reporter<'_>,
) -> Option<(Option<MemberId>, AddOutcome)> {
    let list = client.member_list().await.ok()?;
    let m = list.by_peer_url(&opts.peer_url)?;
    report(Event::MemberReused {
        id: m.id,
        is_learner: m.is_learner,
        started: m.started(),
    });
    Some((
        Some(m.id),
        AddOutcome::Reused {
            is_learner: m.is_learner,
            started: m.started(),
        },
    ))
}

/// `--initial-cluster`: every member, each peer URL once. etcd checks on start that the
/// peer URLs here match the cluster's member by member, so a member with two peer URLs
/// needs both, under one name.
pub fn initial_cluster(members: &[MemberInfo], opts: &JoinOptions) -> Vec<InitialMember> {
    let mut out = Vec::new();
    for m in members {
        let name = if m.has_peer_url(&opts.peer_url) {
            opts.name.clone()
        } else {
            m.display_name()
        };
        for url in &m.peer_urls {
            out.push(InitialMember {
                name: name.clone(),
                peer_url: url.clone(),
            });
        }
    }
    out
}

/// What [`write_manifest`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestStep {
    /// The member has run before and has a manifest: left as it is.
    Kept { path: PathBuf },
    /// Dry run: the bytes that would be written.
    WouldWrite { path: PathBuf, yaml: String },
    Written {
        path: PathBuf,
        outcome: WriteOutcome,
    },
}

/// The static Pod manifest of the joining member: `--initial-cluster` from
/// [`Joined::initial_cluster`] and `--initial-cluster-state=existing`.
pub fn render_manifest(cfg: &KubeadmConfig, cert_dir: &Path, joined: &Joined) -> Result<String> {
    let members = joined
        .initial_cluster
        .iter()
        .map(|m| Member {
            name: m.name.clone(),
            peer_url: m.peer_url.clone(),
        })
        .collect();
    let pod = manifest::etcd_pod(
        cfg,
        &ManifestOptions::joining(cert_dir.to_path_buf(), members),
    )?;
    Ok(manifest::render_yaml(&pod)?)
}

/// Writes the manifest (and creates the data directory, mode 0700, as kubeadm's
/// `CreateDataDirectory` does), unless the member has already run with a manifest that is
/// there: rewriting it with today's member list would only restart etcd.
///
/// Call it right after [`add_learner`]: the cluster has a member that does not run until
/// this manifest is there (harmless for a learner, but it blocks other joins).
pub fn write_manifest(
    cfg: &KubeadmConfig,
    cert_dir: &Path,
    manifest_dir: &Path,
    backup_dir: &Path,
    joined: &Joined,
    dry_run: bool,
) -> Result<ManifestStep> {
    let path = manifest::manifest_path(manifest_dir);
    if joined.already_running() && path.exists() {
        return Ok(ManifestStep::Kept { path });
    }
    let yaml = render_manifest(cfg, cert_dir, joined)?;
    if dry_run {
        return Ok(ManifestStep::WouldWrite { path, yaml });
    }
    let data_dir = &cfg.require_local_etcd()?.data_dir;
    crate::fsutil::create_dir_all_with_mode(data_dir, 0o700).map_err(|source| {
        MembershipError::DataDir {
            action: "create",
            path: data_dir.clone(),
            source,
        }
    })?;
    let outcome = manifest::write_manifest(manifest_dir, backup_dir, &yaml)?;
    Ok(ManifestStep::Written { path, outcome })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> JoinOptions {
        JoinOptions {
            name: "node-b".into(),
            peer_url: "https://10.0.0.2:2380".into(),
            data_dir: PathBuf::from("/nonexistent"),
            wipe_data_dir: false,
            replace: false,
            timeout: Duration::from_secs(1),
            dry_run: false,
        }
    }

    #[test]
    fn unstarted_members_are_named_by_hex_id_and_this_node_by_its_name() {
        let members = [
            MemberInfo {
                id: MemberId(0xa1),
                name: "node-a".into(),
                peer_urls: vec!["https://10.0.0.1:2380".into()],
                client_urls: vec!["https://10.0.0.1:2379".into()],
                is_learner: false,
            },
            MemberInfo {
                id: MemberId(0xb2),
                name: String::new(),
                peer_urls: vec!["https://10.0.0.2:2380".into()],
                client_urls: vec![],
                is_learner: true,
            },
            MemberInfo {
                id: MemberId(0xc3),
                name: String::new(),
                peer_urls: vec![
                    "https://10.0.0.3:2380".into(),
                    "https://10.1.0.3:2380".into(),
                ],
                client_urls: vec![],
                is_learner: false,
            },
        ];
        let got: Vec<String> = initial_cluster(&members, &opts())
            .into_iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect();
        assert_eq!(
            got,
            [
                "node-a=https://10.0.0.1:2380",
                "node-b=https://10.0.0.2:2380",
                "c3=https://10.0.0.3:2380",
                "c3=https://10.1.0.3:2380"
            ]
        );
    }

    #[test]
    fn a_name_used_with_another_peer_url_is_refused() {
        let membership = Membership {
            cluster_id: 1,
            members: vec![MemberInfo {
                id: MemberId(0xa1),
                name: "node-b".into(),
                peer_urls: vec!["https://10.0.0.9:2380".into()],
                client_urls: vec![],
                is_learner: false,
            }],
            served_by: String::new(),
        };
        let err = check_name(&membership, &opts()).unwrap_err();
        assert!(
            err.to_string().contains("already taken by member a1"),
            "{err}"
        );
    }
}
