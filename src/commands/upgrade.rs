//! `phase upgrade ...`

use std::io::Write;

use anyhow::bail;
use phases::upgrade::{self, MigrateOptions, Source};

use crate::context::{warn, Context};
use crate::flags::Flag::*;
use crate::phase::Phase;

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
        ..MigrateOptions::new(ctx.required::<String>(TargetVersion))
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
