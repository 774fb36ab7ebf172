//! `phase upgrade ...`

use std::io::Write;

use anyhow::bail;
use phases::upgrade::{self, MigrateOptions, Source};

use crate::context::{warn, Context};

/// Carries the stored featureGates across to `--target-version`. Progress goes to
/// standard error, so that `--from-file` without `--to-file` (and `--dry-run`'s diff)
/// can be piped.
pub fn migrate_feature_gates(ctx: &Context) -> anyhow::Result<()> {
    let flags = &ctx.flags;
    let target = flags
        .target_version
        .clone()
        .expect("clap requires --target-version");
    let source = match (&flags.from_file, &flags.to_file) {
        (Some(from), to) => Source::File {
            from: from.clone(),
            to: to.clone(),
        },
        (None, Some(_)) => bail!(
            "--to-file needs --from-file: the live ConfigMap is written back to the API server"
        ),
        (None, None) => Source::Live {
            kubeconfig: flags.kubeconfig.clone(),
        },
    };
    let opts = MigrateOptions {
        api_version: flags.api_version.clone(),
        enable_learner_mode: flags.enable_learner_mode,
        force: flags.force,
        dry_run: flags.dry_run,
        backup_dir: flags
            .backup_dir
            .clone()
            .unwrap_or_else(|| upgrade::DEFAULT_BACKUP_DIR.into()),
        ..MigrateOptions::new(target)
    };
    let report = ctx.block_on(upgrade::migrate_feature_gates(&source, &opts))?;
    for warning in &report.warnings {
        warn(warning);
    }
    for line in &report.lines {
        eprintln!("{line}");
    }
    let mut stdout = std::io::stdout().lock();
    if let (true, Some(diff)) = (flags.dry_run, &report.diff) {
        stdout.write_all(diff.as_bytes())?;
    } else if let Some(output) = &report.output {
        stdout.write_all(output.as_bytes())?;
    }
    if let Some(place) = &report.written {
        eprintln!("[upgrade/feature-gates] Wrote {place}");
    }
    Ok(())
}
