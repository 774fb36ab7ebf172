//! `phase etcd local` and `phase etcd external-bundle`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use phases::config::Etcd;
use phases::manifest::{
    self, BundleHost, BundleOptions, BundlePaths, ManifestOptions, WriteOutcome,
};

use crate::commands::certs::print_events;
use crate::context::{say, warn, Context};
use crate::flags::Flag::{self, *};
use crate::phase::Phase;

/// Where kubeadm's kubelet reads static Pod manifests; what an external host needs.
const KUBELET_MANIFEST_DIR: &str = manifest::DEFAULT_MANIFEST_DIR;

pub fn local() -> Phase {
    const FLAGS: &[Flag] = &[
        Config,
        KubeadmVersion,
        CertDir,
        NodeName,
        AdvertiseAddress,
        ManifestDir,
        BackupDir,
        DryRun,
        Output,
    ];
    Phase::leaf("local", "Generate the static Pod manifest file for a local, single-node local etcd instance", FLAGS, run_local)
        .long("Write the etcd static Pod manifest for the first member of a new cluster (--initial-cluster with this member only). The output is deterministic: --dry-run prints exactly the bytes it would write.")
        .example("  kubeadm-etcd phase etcd local --config kubeadm.yaml --dry-run")
}

pub fn external_bundle() -> Phase {
    Phase::leaf("external-bundle", "Generate certificates, kubeadm configurations and static Pod manifests for the hosts of an external etcd cluster", &[Config, KubeadmVersion, Hosts, OutputDir], run_external_bundle)
        .long("For every host of an external etcd cluster, write <output-dir>/<host>/ with its kubeadm configuration (kubeadmcfg.yaml), its certificates (pki/) and its static Pod manifest (manifests/etcd.yaml; --initial-cluster lists every host, state new). One CA signs every host; its key stays in <output-dir>/ca/ and never in a host folder. Rerunning reuses the CA and valid certificates. The configuration file gives the cluster-wide settings (kubernetesVersion, etcd.local, ...).")
        .example("  kubeadm-etcd phase etcd external-bundle --config cluster.yaml --hosts etcd-0=10.0.1.10,etcd-1=10.0.1.11,etcd-2=10.0.1.12 --output-dir ./etcd-hosts")
}

enum Format {
    Text,
    Yaml,
    Json,
}

fn format(ctx: &Context) -> anyhow::Result<Format> {
    match ctx.value::<String>(Output).as_deref() {
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
///
/// With an external etcd cluster there is no local member: `init` skips this phase as
/// kubeadm does (as it skips the certificates); asked for by name, the library's error
/// says why it does not apply.
fn run_local(ctx: &Context) -> anyhow::Result<()> {
    let format = format(ctx)?;
    let cfg = ctx.config()?;
    if let (Etcd::External(_), true) = (&cfg.cluster.etcd, ctx.in_workflow()) {
        say(
            "etcd",
            "External etcd mode: Skipping the creation of a manifest for local etcd",
        );
        return Ok(());
    }
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

    let manifest_dir: PathBuf = ctx.required(ManifestDir);
    let backup_dir: PathBuf = ctx.required(BackupDir);
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

fn creating(manifest_dir: &Path) -> String {
    format!(
        "Creating static Pod manifest for local etcd in {:?}",
        manifest_dir.display().to_string()
    )
}

/// Makes one folder per external etcd host (kubeadm configuration, certificates from one
/// shared CA, static Pod manifest), the CA itself in `<output-dir>/ca`.
fn run_external_bundle(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let hosts = BundleHost::parse_list(&ctx.list(Hosts)).context("--hosts")?;
    let out_dir: PathBuf = ctx.required(OutputDir);
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
            KUBELET_MANIFEST_DIR
        ),
    );
    Ok(())
}
