//! `upgrade etcd`: move this node's etcd member to another release, safely.
//!
//! 1. **Preflight** ([`plan::evaluate`]), before anything changes: this node is a member,
//!    no learner is in flight, every voter answers and is healthy (so quorum survives the
//!    restart), and the version path is one etcd supports: no downgrade, no skipped minor,
//!    every member on the minimum release of its minor ([`plan::MINOR_UPGRADE_MINIMUMS`]).
//!    Then, for a move to 3.6 or 3.7, what the new release would replay from this
//!    member's data directory ([`check_data_dir`], [`wal`]).
//! 2. **Snapshot** of the cluster ([`crate::snapshot::save`]).
//! 3. **Leadership** moves to the healthy voter furthest along when this member leads,
//!    so its restart costs no election under load.
//! 4. **Manifest**: this node's static Pod manifest re-rendered for the new image tag by
//!    the manifest renderer (flags spelled as that release expects), keeping its initial
//!    cluster; the old one is backed up first.
//! 5. **Wait** until the member answers on the new release (its Status says so), has
//!    applied what the leader had committed when it came back, and every voter is
//!    healthy.
//!
//! On a failure or timeout in 5, the old manifest is written back and the member is
//! waited for on its old release; the error says what happened and names the snapshot.
//! Rerunning after success changes nothing: the member already runs the target and the
//! rendered manifest is byte-identical.
//!
//! The kubelet restarts the member when the manifest changes; nothing here starts or stops
//! etcd.

mod error;
pub mod plan;
pub mod wal;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use semver::Version;

pub use error::{UpgradeEtcdError, V2RequestsBefore37, DOWNGRADE_DOC};
pub use plan::{Plan, Step};

use crate::config::{Etcd, KubeadmConfig};
use crate::manifest::{self, ManifestOptions, Member, WriteOutcome};
use crate::membership::{EtcdClient, EtcdTls, MemberId, MemberInfo};
use crate::snapshot::{self, SaveEvent, SaveOptions, Saved};

/// How often the member is polled while it restarts.
const POLL: Duration = Duration::from_millis(500);
/// How long a leadership transfer may take to show.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(15);

/// What `upgrade etcd` needs besides the kubeadm configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct UpgradeOptions {
    /// The target, as an image tag (`3.6.14-0`) or a release (`v3.6.14`).
    pub target_tag: String,
    /// This node's peer URL: which member is this node's.
    pub peer_url: String,
    pub cert_dir: PathBuf,
    pub manifest_dir: PathBuf,
    /// Where the replaced manifest is backed up (`/etc/kubernetes/tmp`).
    pub backup_dir: PathBuf,
    pub snapshot: SaveOptions,
    /// A snapshot this run took already (the `upgrade` workflow's `etcd/snapshot/save`,
    /// before the feature-gate migration): used instead of taking a second one.
    pub taken_snapshot: Option<Saved>,
    /// How long the member may take to come back on the new release (and, after a
    /// rollback, on the old one).
    pub timeout: Duration,
    /// Preflight and render only; write nothing.
    pub dry_run: bool,
}

/// What an upgrade is doing, for display.
#[derive(Debug, Clone, PartialEq)]
pub enum UpgradeEvent {
    /// Preflight passed.
    Planned {
        from: Version,
        to: Version,
        step: Step,
        warnings: Vec<String>,
    },
    Snapshot(SaveEvent),
    SnapshotSaved {
        path: PathBuf,
        revision: i64,
        size: u64,
        /// Taken earlier in this run ([`UpgradeOptions::taken_snapshot`]), not now.
        taken_before: bool,
    },
    LeadershipMoved {
        from: MemberId,
        to: MemberId,
    },
    ManifestWritten {
        path: PathBuf,
        backup: Option<PathBuf>,
    },
    /// Polling the member; `seen` is what it last said (its version, or why not).
    Waiting {
        seen: String,
        elapsed: Duration,
    },
    RollingBack {
        reason: String,
    },
}

/// How an upgrade ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The member runs the target and its manifest is what this tool renders: nothing
    /// was touched.
    Unchanged { version: Version },
    /// `dry_run`: what would change.
    DryRun { plan: Box<Plan>, diff: String },
    Upgraded {
        from: Version,
        to: Version,
        snapshot: Box<Saved>,
        /// The previous manifest.
        backup: Option<PathBuf>,
        leadership_moved_to: Option<MemberId>,
        elapsed: Duration,
    },
}

/// The target tag's release.
pub fn target_version(tag: &str) -> Result<Version, UpgradeEtcdError> {
    crate::versions::etcd_semver_from_tag(tag).map_err(|e| UpgradeEtcdError::Target {
        given: tag.to_string(),
        reason: e.to_string(),
    })
}

/// This node's etcd manifest.
pub fn read_manifest(path: &Path) -> Result<String, UpgradeEtcdError> {
    std::fs::read_to_string(path).map_err(|e| UpgradeEtcdError::ManifestUnusable {
        path: path.to_path_buf(),
        reason: format!(
            "{e}; `upgrade etcd` runs on the node whose member runs from this static Pod manifest"
        ),
    })
}

/// The etcd command of a static Pod manifest.
fn manifest_command(manifest: &str, path: &Path) -> Result<Vec<String>, UpgradeEtcdError> {
    let unusable = |reason: String| UpgradeEtcdError::ManifestUnusable {
        path: path.to_path_buf(),
        reason,
    };
    let pod: Pod =
        serde_yaml::from_str(manifest).map_err(|e| unusable(format!("not a Pod: {e}")))?;
    pod.spec
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.command)
        .ok_or_else(|| unusable("its first container has no command".to_string()))
}

/// What etcd `plan.to` would replay from this member's data directory (named by the
/// `--data-dir` and `--wal-dir` of the manifest at `manifest_path`, the one it runs from) must be something that
/// release reads ([`wal`]): for 3.7, no v2 request after the last raft snapshot; for 3.6,
/// none but the two it converts, and no custom v2 store. Other steps need no check.
pub fn check_data_dir(plan: &Plan, manifest_path: &Path) -> Result<(), UpgradeEtcdError> {
    let to_minor = (plan.to.major, plan.to.minor);
    if plan.step != Step::Minor || !matches!(to_minor, (3, 6) | (3, 7)) {
        return Ok(());
    }
    let manifest = read_manifest(manifest_path)?;
    let command = manifest_command(&manifest, manifest_path)?;
    let flag = |name: &str| snapshot::restore::command_flag(&command, name);
    let data_dir = PathBuf::from(flag("data-dir").unwrap_or("/var/lib/etcd"));
    let wal_dir = flag("wal-dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir.join("member").join("wal"));
    let (id, name, to) = (
        plan.member.id,
        plan.member.display_name(),
        plan.to.to_string(),
    );
    let unreadable = |source| UpgradeEtcdError::DataDirUnreadable {
        id,
        name: name.clone(),
        to: to.clone(),
        source,
    };
    let scan = wal::scan(&wal_dir).map_err(unreadable)?;
    if let Some(index) = scan.undecodable.first() {
        return Err(unreadable(wal::WalError::Format {
            path: wal_dir,
            offset: 0,
            reason: format!(
                "entry {index} (one of {} after the last raft snapshot) is no etcd request",
                scan.undecodable.len()
            ),
        }));
    }
    if to_minor == (3, 7) {
        let Some(first) = scan.v2_requests.first() else {
            return Ok(());
        };
        // etcd snapshots once `applied - last snapshot > --snapshot-count`
        // (`EtcdServer.snapshotIfNeeded`); the running release's default otherwise.
        let snapshot_count = flag("snapshot-count")
            .and_then(|v| v.parse().ok())
            .unwrap_or(if plan.from.minor >= 6 {
                10_000
            } else {
                100_000
            });
        let next_snapshot_at = scan.snapshot_index + snapshot_count + 1;
        return Err(UpgradeEtcdError::V2RequestsBefore37(Box::new(
            V2RequestsBefore37 {
                id,
                name,
                to,
                wal_dir,
                count: scan.v2_requests.len(),
                first: first.to_string(),
                snapshot_index: scan.snapshot_index,
                snapshot_count,
                applied: plan.status.raft_applied_index,
                remaining: next_snapshot_at.saturating_sub(plan.status.raft_applied_index),
            },
        )));
    }
    let refused: Vec<&wal::V2Request> = scan
        .v2_requests
        .iter()
        .filter(|r| !r.replayable_by_3_6())
        .collect();
    if let Some(first) = refused.first() {
        return Err(UpgradeEtcdError::V2ContentBefore36 {
            id,
            name,
            to,
            what: format!(
                "its write-ahead log ({}) holds {} v2 request(s) after its last raft snapshot that etcd 3.6 cannot replay, the first {first}",
                wal_dir.display(),
                refused.len()
            ),
        });
    }
    let snap_dir = data_dir.join("member").join("snap");
    if let Some(key) = wal::v2store_custom_content(&snap_dir, &scan).map_err(unreadable)? {
        return Err(UpgradeEtcdError::V2ContentBefore36 {
            id,
            name,
            to,
            what: format!(
                "the v2 store of its last raft snapshot ({}) holds data under {key}",
                snap_dir.display()
            ),
        });
    }
    Ok(())
}

/// This node's manifest re-rendered for `target_tag`, keeping the initial cluster it
/// was started with (`--initial-cluster`, and `--initial-cluster-state=existing` for a
/// member that joined).
pub fn render_manifest(
    cfg: &KubeadmConfig,
    cert_dir: &Path,
    current: &str,
    manifest_path: &Path,
    target_tag: &str,
) -> Result<String, UpgradeEtcdError> {
    let unusable = |reason: String| UpgradeEtcdError::ManifestUnusable {
        path: manifest_path.to_path_buf(),
        reason,
    };
    let command = manifest_command(current, manifest_path)?;
    let flag = |name: &str| snapshot::restore::command_flag(&command, name);
    let options = match flag("initial-cluster-state") {
        Some("existing") => {
            let list = flag("initial-cluster")
                .ok_or_else(|| unusable("no --initial-cluster".to_string()))?;
            let members = list
                .split(',')
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(name, url)| Member {
                            name: name.to_string(),
                            peer_url: url.to_string(),
                        })
                        .ok_or_else(|| {
                            unusable(format!("--initial-cluster entry {pair:?} is not NAME=URL"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            ManifestOptions::joining(cert_dir.to_path_buf(), members)
        }
        _ => ManifestOptions::first_member(cert_dir.to_path_buf()),
    };
    let mut cfg = cfg.clone();
    match &mut cfg.cluster.etcd {
        Etcd::Local(local) => local.image_tag = Some(target_tag.to_string()),
        Etcd::External(_) => {
            cfg.require_local_etcd()?;
        }
    }
    let pod = manifest::etcd_pod(&cfg, &options)?;
    Ok(manifest::render_yaml(&pod)?)
}

fn diff(old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header("etcd.yaml (current)", "etcd.yaml (upgraded)")
        .to_string()
}

/// Upgrades this node's member; see the module documentation.
pub async fn upgrade(
    client: &EtcdClient,
    tls: &EtcdTls,
    cfg: &KubeadmConfig,
    opts: &UpgradeOptions,
    report: &mut (dyn FnMut(UpgradeEvent) + Send),
) -> Result<Outcome, UpgradeEtcdError> {
    let started = Instant::now();
    let to = target_version(&opts.target_tag)?;
    let deadline = tokio::time::Instant::now() + client.rpc_timeout().max(Duration::from_secs(10));
    let membership = client.member_list_until(deadline).await?;
    client.sync_endpoints(&membership)?;
    let plan = preflight(client, &membership.members, &opts.peer_url, &to).await?;

    let manifest_path = manifest::manifest_path(&opts.manifest_dir);
    let current = read_manifest(&manifest_path)?;
    check_data_dir(&plan, &manifest_path)?;
    let new = render_manifest(
        cfg,
        &opts.cert_dir,
        &current,
        &manifest_path,
        &opts.target_tag,
    )?;
    if plan.step == Step::AlreadyThere && new == current {
        return Ok(Outcome::Unchanged { version: plan.from });
    }
    if opts.dry_run {
        return Ok(Outcome::DryRun {
            diff: diff(&current, &new),
            plan: Box::new(plan),
        });
    }
    report(UpgradeEvent::Planned {
        from: plan.from.clone(),
        to: to.clone(),
        step: plan.step,
        warnings: plan.warnings.clone(),
    });

    let saved = match &opts.taken_snapshot {
        Some(taken) => taken.clone(),
        None => {
            snapshot::save(client, tls, &opts.snapshot, &mut |e| {
                report(UpgradeEvent::Snapshot(e))
            })
            .await?
        }
    };
    report(UpgradeEvent::SnapshotSaved {
        path: saved.path.clone(),
        revision: saved.revision,
        size: saved.file_size,
        taken_before: opts.taken_snapshot.is_some(),
    });

    let mut moved_to = None;
    if let Some(target) = plan.transfer_to {
        move_leader(client, tls, &plan.member, target).await?;
        report(UpgradeEvent::LeadershipMoved {
            from: plan.member.id,
            to: target,
        });
        moved_to = Some(target);
    }

    let written = manifest::write_manifest(&opts.manifest_dir, &opts.backup_dir, &new)?;
    let backup = match &written {
        WriteOutcome::Replaced { backup } => Some(backup.clone()),
        _ => None,
    };
    report(UpgradeEvent::ManifestWritten {
        path: manifest_path.clone(),
        backup: backup.clone(),
    });

    let wait_deadline = tokio::time::Instant::now() + opts.timeout;
    if let Err(reason) = wait_for_member(
        client,
        &membership.members,
        &plan.member,
        &to,
        wait_deadline,
        report,
    )
    .await
    {
        return Err(roll_back(
            client,
            opts,
            &membership.members,
            &plan,
            RolledOut {
                to: &to,
                current: &current,
                new: &new,
                snapshot: saved.path,
                reason,
            },
            report,
        )
        .await);
    }
    Ok(Outcome::Upgraded {
        from: plan.from,
        to,
        snapshot: Box::new(saved),
        backup,
        leadership_moved_to: moved_to,
        elapsed: started.elapsed(),
    })
}

/// [`plan::evaluate`] on fresh Status answers, asked again for a bounded while in two
/// cases that pass by themselves:
/// - right after the last member moved to 3.6 its storage version follows within etcd's
///   version-monitor period (about 4 s);
/// - the only voter not answering is this node's own member: the kubelet restarting it,
///   as when a rerun follows an upgrade interrupted after the manifest was written (it
///   would otherwise refuse, naming this very member, and never converge).
///
/// Any other refusal is at once.
pub async fn preflight(
    client: &EtcdClient,
    members: &[MemberInfo],
    peer_url: &str,
    to: &Version,
) -> Result<plan::Plan, UpgradeEtcdError> {
    const PASSING_REFUSAL_WAIT: Duration = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + PASSING_REFUSAL_WAIT;
    loop {
        let statuses = client.statuses(members).await;
        let result = plan::evaluate(members, &statuses, peer_url, to);
        let passing = match &result {
            Err(UpgradeEtcdError::StorageVersionBehind { .. }) => true,
            Err(UpgradeEtcdError::VotersDown { down }) => {
                down.len() == 1
                    && members
                        .iter()
                        .any(|m| m.id == down[0].0 && m.has_peer_url(peer_url))
            }
            _ => false,
        };
        if !passing || tokio::time::Instant::now() >= deadline {
            return result;
        }
        if let Err(e) = &result {
            tracing::info!("{e}; asking again");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What `upgrade` had done when the member did not come back on the new version.
struct RolledOut<'a> {
    to: &'a Version,
    /// The manifest before the upgrade, and the one written for it.
    current: &'a str,
    new: &'a str,
    snapshot: PathBuf,
    reason: String,
}

/// Puts the old manifest back and waits for the member to return on the old version; the
/// error says what happened either way, and what the snapshot is for.
async fn roll_back(
    client: &EtcdClient,
    opts: &UpgradeOptions,
    members: &[MemberInfo],
    plan: &plan::Plan,
    out: RolledOut<'_>,
    report: &mut (dyn FnMut(UpgradeEvent) + Send),
) -> UpgradeEtcdError {
    let RolledOut {
        to,
        current,
        new,
        snapshot,
        reason,
    } = out;
    report(UpgradeEvent::RollingBack {
        reason: reason.clone(),
    });
    let restored = match manifest::write_manifest(&opts.manifest_dir, &opts.backup_dir, current) {
        Ok(restored) => restored,
        Err(e) => return e.into(),
    };
    let failed_manifest = match restored {
        WriteOutcome::Replaced { backup } => backup,
        _ => manifest::backup_path(&opts.backup_dir, new.as_bytes()),
    };
    let back_deadline = tokio::time::Instant::now() + opts.timeout;
    match wait_for_member(
        client,
        members,
        &plan.member,
        &plan.from,
        back_deadline,
        report,
    )
    .await
    {
        Ok(()) => UpgradeEtcdError::RolledBack {
            from: plan.from.to_string(),
            to: to.to_string(),
            reason,
            snapshot,
            failed_manifest,
        },
        Err(rollback) => UpgradeEtcdError::RollbackFailed {
            to: to.to_string(),
            reason,
            rollback,
            snapshot,
            old_manifest: manifest::manifest_path(&opts.manifest_dir),
        },
    }
}

/// MoveLeader, sent to the leader (this member), then waits until the leadership shows
/// on `target`'s Status.
async fn move_leader(
    client: &EtcdClient,
    tls: &EtcdTls,
    leader: &MemberInfo,
    target: MemberId,
) -> Result<(), UpgradeEtcdError> {
    let failed = |message: String| UpgradeEtcdError::MoveLeader {
        from: leader.id,
        to: target,
        message,
    };
    let url = leader
        .client_urls
        .first()
        .ok_or_else(|| failed("this member has no client URL".to_string()))?;
    let mut etcd = snapshot::save::connect(url, tls, client.rpc_timeout())
        .await
        .map_err(|e| failed(e.to_string()))?;
    match tokio::time::timeout(TRANSFER_TIMEOUT, etcd.move_leader(target.0)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(failed(crate::membership::RpcError::from(e).to_string())),
        Err(_) => return Err(failed("no answer in time".to_string())),
    }
    let deadline = tokio::time::Instant::now() + TRANSFER_TIMEOUT;
    loop {
        if let Ok(s) = client.status(url).await {
            if s.leader == target {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(failed(
                "etcd accepted the transfer but the leadership did not move in time".to_string(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `member` answers on release `want`, has applied what the leader had
/// committed when it first answered, and every member is healthy. `Err` says what was
/// last seen.
async fn wait_for_member(
    client: &EtcdClient,
    members: &[MemberInfo],
    member: &MemberInfo,
    want: &Version,
    deadline: tokio::time::Instant,
    report: &mut (dyn FnMut(UpgradeEvent) + Send),
) -> Result<(), String> {
    let started = Instant::now();
    let url = member.client_urls.first().cloned().unwrap_or_default();
    let mut leader_index_when_back: Option<u64> = None;
    let mut seen;
    let mut last_report = Instant::now() - Duration::from_secs(10);
    loop {
        match client.status(&url).await {
            Ok(s) => {
                let version = crate::versions::etcd_semver_from_tag(&s.version).ok();
                let on_target = version.as_ref().is_some_and(|v| {
                    (v.major, v.minor, v.patch) == (want.major, want.minor, want.patch)
                });
                seen = format!("etcd {}", s.version);
                if on_target && s.healthy() {
                    let leader_index = match leader_index_when_back {
                        Some(i) => i,
                        None => {
                            let leader = members.iter().find(|m| m.id == s.leader);
                            let index = match leader.and_then(|l| l.client_urls.first()) {
                                Some(u) => client.status(u).await.map(|l| l.raft_index).ok(),
                                None => None,
                            };
                            let i = index.unwrap_or(s.raft_index);
                            leader_index_when_back = Some(i);
                            i
                        }
                    };
                    if s.raft_applied_index >= leader_index {
                        let all = client.statuses(members).await;
                        let unhealthy: Vec<String> = members
                            .iter()
                            .zip(&all)
                            .filter_map(|(m, r)| match r {
                                Ok(st) if st.healthy() => None,
                                Ok(st) => {
                                    Some(format!("{}: {}", m.display_name(), st.errors.join(", ")))
                                }
                                Err(e) => Some(format!("{}: {e}", m.display_name())),
                            })
                            .collect();
                        if unhealthy.is_empty() {
                            return Ok(());
                        }
                        seen = format!(
                            "etcd {}, caught up; cluster not healthy yet ({})",
                            s.version,
                            unhealthy.join("; ")
                        );
                    } else {
                        seen = format!(
                            "etcd {}, applied index {} of {leader_index}",
                            s.version, s.raft_applied_index
                        );
                    }
                } else if on_target {
                    seen = format!(
                        "etcd {}, no leader yet ({})",
                        s.version,
                        s.errors.join(", ")
                    );
                }
            }
            Err(e) => seen = format!("not answering: {e}"),
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            report(UpgradeEvent::Waiting {
                seen: seen.clone(),
                elapsed: started.elapsed(),
            });
        }
        if tokio::time::Instant::now() + POLL >= deadline {
            return Err(format!(
                "member {} did not come back on etcd {want} within {}: last seen {seen}",
                member.display_name(),
                crate::config::GoDuration(Duration::from_secs(started.elapsed().as_secs()))
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
