//! `phase upgrade ...`

use std::io::Write;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use phases::etcd_upgrade::{self, Outcome, UpgradeEvent, UpgradeOptions};
use phases::manifest;
use phases::membership::status::human_bytes;
use phases::snapshot::{SaveEvent, SaveOptions};
use phases::upgrade::{self, MigrateOptions, Source};

use super::membership::{connect, timeout};
use crate::context::{say, warn, Context};
use crate::flags::Flag::{self, *};
use crate::phase::{Phase, Workflow};

/// `kubeadm-etcd upgrade`: one control-plane node at upgrade time.
pub fn workflow() -> Workflow {
    Workflow {
        name: "upgrade",
        short: "Upgrade this node's etcd for a Kubernetes upgrade: preflight, snapshot, feature gates, then the etcd member",
        long: "Runs the phases upgrade/preflight, etcd/snapshot/save, upgrade/migrate-feature-gates and upgrade/etcd in order, for --target-version v1.X.Y (etcd: the release kubeadm of that version deploys, unless --etcd-version). Run it on one control-plane node at a time. Select what runs with --skip-phases (a parent selects its children; skipping wins).",
        phases: &[
            "upgrade/preflight",
            "etcd/snapshot/save",
            "upgrade/migrate-feature-gates",
            "upgrade/etcd",
        ],
    }
}

/// What the preflight takes.
const PREFLIGHT_FLAGS: &[Flag] = &[
    Config,
    CertDir,
    NodeName,
    AdvertiseAddress,
    Endpoints,
    Kubeconfig,
    EtcdCaFile,
    EtcdCertFile,
    EtcdKeyFile,
    TargetVersion,
    EtcdVersion,
    ManifestDir,
];

pub fn preflight() -> Phase {
    Phase::leaf("preflight", "Check that this node's etcd member can move to the target release", PREFLIGHT_FLAGS, run_preflight)
        .long("Changes nothing. Refuses unless this node is a member, no learner is in flight, every voting member is healthy, and the version path is one etcd supports: no downgrade, no skipped minor, every 3.5 member on 3.5.26 or newer before 3.6 (a warning below 3.5.32), every 3.6 member on 3.6.11 or newer before 3.7. For a move to 3.6 or 3.7 it also reads this member's data directory (from the manifest in --manifest-dir) for what the new release could not replay: etcd 3.5's v2 requests after the last raft snapshot (etcd 3.7 crashes on them), v2 API data (etcd 3.6 refuses it). Each refusal names the member and the release to move it to first, or what to wait for.")
        .example("  kubeadm-etcd phase upgrade preflight --config kubeadm.yaml --target-version v1.34.2")
}

pub fn etcd() -> Phase {
    const FLAGS: &[Flag] = &[
        Config,
        CertDir,
        NodeName,
        AdvertiseAddress,
        Endpoints,
        Kubeconfig,
        EtcdCaFile,
        EtcdCertFile,
        EtcdKeyFile,
        TargetVersion,
        EtcdVersion,
        SnapshotDir,
        Keep,
        ManifestDir,
        BackupDir,
        Timeout,
        DryRun,
    ];
    Phase::leaf("etcd", "Move this node's etcd member to a new release through its static Pod manifest", FLAGS, run_etcd)
        .long("The preflight, then a snapshot into --dir, leadership moved away when this member leads, this node's manifest rewritten for the new image (the old one backed up in --backup-dir), and a wait (--timeout) until the kubelet has restarted the member on the new release, it has caught up and every voter is healthy. On failure or timeout the old manifest is put back and the member waited for on its old release. --dry-run prints the plan and the manifest diff. A rerun after success changes nothing.")
        .example("  kubeadm-etcd phase upgrade etcd --config kubeadm.yaml --target-version v1.34.2 --dry-run\n  kubeadm-etcd phase upgrade etcd --config kubeadm.yaml --etcd-version 3.6.14-0 --timeout 10m")
}

/// The target etcd: `--etcd-version`, else kubeadm's tag for `--target-version`.
fn target_tag(ctx: &Context) -> anyhow::Result<String> {
    if let Some(tag) = ctx.value::<String>(EtcdVersion) {
        etcd_upgrade::target_version(&tag)?;
        return Ok(tag);
    }
    let Some(k8s) = ctx.value::<String>(TargetVersion) else {
        bail!("give --etcd-version (like 3.6.14-0) or --target-version (the Kubernetes version, like v1.34.2, whose etcd kubeadm deploys)");
    };
    let k8s = phases::versions::parse_kubernetes_version(&k8s)?;
    let (tag, warning) = phases::versions::etcd_version_for_kubernetes(&k8s);
    if let Some(w) = warning {
        warn(w);
    }
    Ok(tag)
}

/// `phase upgrade preflight`
fn run_preflight(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let tag = target_tag(ctx)?;
    let to = etcd_upgrade::target_version(&tag)?;
    let peer_url = manifest::peer_url(cfg.require_advertise_address()?);
    let (client, _) = connect(ctx, cfg)?;
    let plan = ctx.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let membership = client.member_list_until(deadline).await?;
        client.sync_endpoints(&membership)?;
        anyhow::Ok(etcd_upgrade::preflight(&client, &membership.members, &peer_url, &to).await?)
    })?;
    etcd_upgrade::check_data_dir(
        &plan,
        &manifest::manifest_path(&ctx.required::<PathBuf>(ManifestDir)),
    )?;
    for w in &plan.warnings {
        warn(w);
    }
    say(
        "upgrade/etcd",
        format!(
            "Preflight passed: member {} ({}) can move from etcd {} to {} ({:?}); {} voting member(s) healthy",
            plan.member.display_name(),
            plan.member.id,
            plan.from,
            plan.to,
            plan.step,
            plan.voters
        ),
    );
    Ok(())
}

/// `phase upgrade etcd`
fn run_etcd(ctx: &Context) -> anyhow::Result<()> {
    const P: &str = "upgrade/etcd";
    let cfg = ctx.config()?;
    let dry_run = ctx.dry_run();
    let target_tag = target_tag(ctx)?;
    let peer_url = manifest::peer_url(cfg.require_advertise_address()?);
    let (client, _) = connect(ctx, cfg)?;
    let tls = super::membership::tls(ctx, cfg)?;
    let opts = UpgradeOptions {
        target_tag,
        peer_url,
        cert_dir: ctx.cert_dir()?,
        manifest_dir: ctx.required(ManifestDir),
        backup_dir: ctx.required(BackupDir),
        snapshot: SaveOptions {
            keep: ctx.value(Keep),
            ..SaveOptions::new(ctx.required::<PathBuf>(SnapshotDir))
        },
        taken_snapshot: ctx.snapshot_taken(),
        timeout: timeout(ctx, cfg),
        dry_run,
    };
    let mut last_wait: Option<std::time::Instant> = None;
    let outcome = ctx.block_on(etcd_upgrade::upgrade(&client, &tls, cfg, &opts, &mut |e| {
        print_upgrade_event(e, &mut last_wait)
    }))?;
    match outcome {
        Outcome::Unchanged { version } => say(P, format!("This member runs etcd {version} from the manifest this tool renders already; nothing to do")),
        Outcome::DryRun { plan, diff } => {
            for w in &plan.warnings {
                warn(w);
            }
            say(P, format!(
                "[dry-run] Would move member {} ({}) from etcd {} to {} ({:?}): snapshot into {}, {}rewrite the manifest, wait up to {:.0}s",
                plan.member.display_name(),
                plan.member.id,
                plan.from,
                plan.to,
                plan.step,
                opts.snapshot.dir.display(),
                if plan.transfer_to.is_some() { "move the leadership, " } else { "" },
                opts.timeout.as_secs_f64()
            ));
            std::io::stdout().lock().write_all(diff.as_bytes())?;
        }
        Outcome::Upgraded { from, to, elapsed, .. } => say(P, format!(
            "This member moved from etcd {from} to {to} in {:.1}s and the cluster is healthy",
            elapsed.as_secs_f64()
        )),
    }
    Ok(())
}

/// One line per step of `upgrade etcd`; the wait for the member at most every 5 s.
fn print_upgrade_event(e: UpgradeEvent, last_wait: &mut Option<std::time::Instant>) {
    const P: &str = "upgrade/etcd";
    match e {
        UpgradeEvent::Planned {
            from,
            to,
            step,
            warnings,
        } => {
            for w in warnings {
                warn(w);
            }
            say(
                P,
                format!("Preflight passed: etcd {from} to {to} ({step:?})"),
            );
        }
        UpgradeEvent::Snapshot(SaveEvent::Source {
            id, name, endpoint, ..
        }) => say(
            P,
            format!("Taking a snapshot from {id} ({name}) at {endpoint}"),
        ),
        UpgradeEvent::Snapshot(_) => {}
        UpgradeEvent::SnapshotSaved {
            path,
            revision,
            size,
            taken_before,
        } => say(
            P,
            format!(
                "{} {} (revision {revision}, {})",
                if taken_before {
                    "Using the snapshot this run saved before the feature-gate migration:"
                } else {
                    "Saved the snapshot"
                },
                path.display(),
                human_bytes(size as i64)
            ),
        ),
        UpgradeEvent::LeadershipMoved { from, to } => {
            say(P, format!("Moved the leadership from {from} to {to}"))
        }
        UpgradeEvent::ManifestWritten { path, backup } => say(
            P,
            format!(
                "Wrote {}{}",
                path.display(),
                backup
                    .map(|b| format!(" (the old one is in {})", b.display()))
                    .unwrap_or_default()
            ),
        ),
        UpgradeEvent::Waiting { seen, elapsed } => {
            if last_wait.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                *last_wait = Some(std::time::Instant::now());
                say(
                    P,
                    format!(
                        "Waiting for the member on the new release: {seen} [{:.0}s]",
                        elapsed.as_secs_f64()
                    ),
                );
            }
        }
        UpgradeEvent::RollingBack { reason } => {
            warn(format!("{reason}; putting the old manifest back"))
        }
    }
}

pub fn migrate_feature_gates() -> Phase {
    Phase::leaf(
        "migrate-feature-gates",
        "Carry the stored featureGates across to a target Kubernetes version",
        &[Kubeconfig, FromFile, ToFile, TargetVersion, ApiVersion, EnableLearnerMode, Force, BackupDir, DryRun],
        run,
    )
    .long("Rewrite the featureGates of the ClusterConfiguration stored in kube-system/kubeadm-config so that kubeadm of the target version accepts it: drop gates it no longer knows, drop locked GA values, keep every explicit choice it still accepts. Writes with optimistic concurrency and keeps a backup.")
    .example("  kubeadm-etcd phase upgrade migrate-feature-gates --target-version v1.33.0 --dry-run\n  kubectl -n kube-system get cm kubeadm-config -o yaml > cm.yaml\n  kubeadm-etcd phase upgrade migrate-feature-gates --target-version v1.33.0 --from-file cm.yaml --to-file new.yaml")
}

/// Carries the stored featureGates across to `--target-version`. Progress goes to
/// standard error, so that `--from-file` without `--to-file` (and `--dry-run`'s diff)
/// can be piped.
fn run(ctx: &Context) -> anyhow::Result<()> {
    let dry_run = ctx.dry_run();
    let source = match (ctx.value(FromFile), ctx.value(ToFile)) {
        (Some(from), to) => Source::File { from, to },
        (None, Some(_)) => bail!(
            "--to-file needs --from-file: the live ConfigMap is written back to the API server"
        ),
        (None, None) => Source::Live {
            kubeconfig: ctx.value(Kubeconfig),
        },
    };
    let opts = MigrateOptions {
        api_version: ctx.value(ApiVersion),
        enable_learner_mode: ctx.switch(EnableLearnerMode),
        force: ctx.switch(Force),
        dry_run,
        backup_dir: ctx.required(BackupDir),
        ..MigrateOptions::new(target_version(ctx)?)
    };
    let report = ctx.block_on(upgrade::migrate_feature_gates(&source, &opts))?;
    for warning in &report.warnings {
        warn(warning);
    }
    for line in &report.lines {
        eprintln!("{line}");
    }
    let mut stdout = std::io::stdout().lock();
    if let (true, Some(diff)) = (dry_run, &report.diff) {
        stdout.write_all(diff.as_bytes())?;
    } else if let Some(output) = &report.output {
        stdout.write_all(output.as_bytes())?;
    }
    if let Some(place) = &report.written {
        eprintln!("[upgrade/feature-gates] Wrote {place}");
    }
    Ok(())
}

/// `--target-version`, which the upgrade's phases need but `upgrade etcd` can do without
/// (`--etcd-version`), so clap cannot require it.
pub(crate) fn target_version(ctx: &Context) -> anyhow::Result<String> {
    ctx.value::<String>(TargetVersion).ok_or_else(|| {
        anyhow::anyhow!(
            "--target-version is required: the Kubernetes version being upgraded to, like v1.33.0"
        )
    })
}
