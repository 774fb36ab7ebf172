//! `phase etcd local` and `phase etcd external-bundle`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use phases::manifest::{
    self, BundleHost, BundleOptions, BundlePaths, ManifestOptions, WriteOutcome,
};

use crate::commands::certs::print_events;
use crate::context::{say, warn, Context};

const DEFAULT_MANIFEST_DIR: &str = "/etc/kubernetes/manifests";
const DEFAULT_BACKUP_DIR: &str = "/etc/kubernetes/tmp";

enum Format {
    Text,
    Yaml,
    Json,
}

fn format(ctx: &Context) -> anyhow::Result<Format> {
    match ctx.flags.output.as_deref() {
        None | Some("text") => Ok(Format::Text),
        Some("yaml") => Ok(Format::Yaml),
        Some("json") => Ok(Format::Json),
        Some(other) => {
            bail!("-o {other} is not supported by this phase; use yaml or json to print the Pod")
        }
    }
}

/// A progress line on standard error, for when standard output carries the manifest.
fn note(prefix: &str, message: impl std::fmt::Display) {
    eprintln!("[{prefix}] {message}");
}

fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("failed to write to standard output")?;
    out.flush().context("failed to write to standard output")
}

/// Writes the static Pod manifest of the first member of a new cluster. Everything is
/// rendered and checked before the first byte is written.
///
/// Standard output: the kubeadm-style progress lines; with `--dry-run` exactly the bytes
/// that would be written instead (progress then goes to standard error); with `-o
/// yaml|json` the Pod in that format (also progress on standard error).
pub fn local(ctx: &Context) -> anyhow::Result<()> {
    let format = format(ctx)?;
    let cfg = ctx.config()?;
    let cert_dir = ctx.cert_dir()?;
    let (_, _, warning) = manifest::etcd_version_of(cfg)?;
    if let Some(warning) = warning {
        warn(warning);
    }
    let pod = manifest::etcd_pod(cfg, &ManifestOptions::first_member(cert_dir))?;
    let yaml = manifest::render_yaml(&pod)?;
    let printed = match format {
        Format::Text if ctx.dry_run() => Some(yaml.clone()),
        Format::Text => None,
        Format::Yaml => Some(yaml.clone()),
        Format::Json => Some(manifest::render_json(&pod)?),
    };

    let manifest_dir = ctx
        .flags
        .manifest_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MANIFEST_DIR));
    let backup_dir = ctx
        .flags
        .backup_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BACKUP_DIR));
    let path = manifest::manifest_path(&manifest_dir);
    let progress = |message: String| {
        if printed.is_some() {
            note("etcd", message)
        } else {
            say("etcd", message)
        }
    };

    if ctx.dry_run() {
        note(
            "dryrun",
            format!("Would write file {:?}", path.display().to_string()),
        );
    } else {
        match manifest::write_manifest(&manifest_dir, &backup_dir, &yaml)? {
            WriteOutcome::Created => progress(creating(&manifest_dir)),
            WriteOutcome::Unchanged => progress(format!(
                "Static Pod manifest {:?} is unchanged",
                path.display().to_string()
            )),
            WriteOutcome::Replaced { backup } => {
                progress(creating(&manifest_dir));
                progress(format!(
                    "Backed up the previous static Pod manifest to {:?}",
                    backup.display().to_string()
                ));
            }
        }
    }
    if let Some(text) = printed {
        print_stdout(&text)?;
    }
    Ok(())
}

fn creating(manifest_dir: &std::path::Path) -> String {
    format!(
        "Creating static Pod manifest for local etcd in {:?}",
        manifest_dir.display().to_string()
    )
}

/// Makes one folder per external etcd host (kubeadm configuration, certificates from one
/// shared CA, static Pod manifest), the CA itself in `<output-dir>/ca`.
pub fn external_bundle(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let hosts = BundleHost::parse_list(&ctx.flags.hosts).context("--hosts")?;
    let out_dir = ctx
        .flags
        .output_dir
        .clone()
        .context("--output-dir is required")?;
    let (_, _, warning) = manifest::etcd_version_of(cfg)?;
    if let Some(warning) = warning {
        warn(warning);
    }
    let report = manifest::write_external_bundle(
        cfg,
        &hosts,
        &BundleOptions {
            out_dir,
            paths: BundlePaths::OnHost,
        },
    )?;
    say(
        "certs",
        format!(
            "Using certificateDir folder {:?} for the etcd CA",
            report.ca_dir.display().to_string()
        ),
    );
    print_events(&report.ca_events);
    for host in &report.hosts {
        say(
            "etcd",
            format!(
                "Host {:?} ({}): writing {:?}",
                host.host.name,
                host.host.address,
                host.dir.display().to_string()
            ),
        );
        print_events(&host.cert_events);
    }
    let ca_key = phases::pki::CertId::EtcdCa.key_path(&report.ca_dir);
    say(
        "etcd",
        format!(
            "The etcd CA key is only in {:?}: keep it off the etcd hosts. On each host, copy <host>/pki/ to {:?} and <host>/manifests/etcd.yaml to {:?}",
            ca_key.display().to_string(),
            cfg.cluster.certificates_dir.display().to_string(),
            DEFAULT_MANIFEST_DIR
        ),
    );
    Ok(())
}
