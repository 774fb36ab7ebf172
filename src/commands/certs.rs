//! `phase certs ...`: one phase per certificate of the library's list, run together.

use phases::config::Etcd;
use phases::pki::{self, CertId, Event, PkiConfig};

use crate::context::{say, warn, Context};
use crate::flags::Flag::{self, *};
use crate::phase::Phase;

const FLAGS: &[Flag] = &[
    Config,
    KubeadmVersion,
    CertDir,
    NodeName,
    AdvertiseAddress,
    DryRun,
];

/// `phase certs`: a child per [`CertId`], in the library's order, and `all`.
pub fn phase() -> Phase {
    let children = CertId::ALL
        .iter()
        .map(|id| {
            Phase::batch(
                id.phase_name(),
                format!("Generate {}", id.long_name()),
                FLAGS,
                run,
            )
        })
        .collect();
    Phase::group("certs", "Certificate generation", children)
        .with_all("Generate all etcd certificates")
        .long("Generate the etcd certificates exactly as kubeadm does. Existing certificates that are signed by the etcd CA and cover every required name are reused; anything else on disk is an error, never overwritten.")
        .example("  # Make every missing etcd certificate for this node\n  kubeadm-etcd phase certs all --config kubeadm.yaml")
}

/// Makes the selected certificates (phase names like `etcd-server`) in one go, so that
/// their keys are generated concurrently.
fn run(ctx: &Context, selected: &[&'static str]) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    // The names are the phases' own, made from CertId::phase_name above.
    let ids: Vec<CertId> = CertId::ALL
        .into_iter()
        .filter(|id| selected.contains(&id.phase_name()))
        .collect();
    if let Etcd::External(_) = cfg.cluster.etcd {
        for id in &ids {
            say(
                "certs",
                format!(
                    "External etcd mode: Skipping {} certificate generation",
                    id.base_name()
                ),
            );
        }
        return Ok(());
    }
    let cert_dir = ctx.cert_dir()?;
    say(
        "certs",
        format!(
            "Using certificateDir folder {:?}",
            cert_dir.display().to_string()
        ),
    );
    let report =
        pki::ensure_certificates(&PkiConfig::from_kubeadm(cfg, cert_dir), &ids, ctx.dry_run())?;
    print_events(&report.events);
    Ok(())
}

pub fn print_events(events: &[Event]) {
    for event in events {
        match event {
            Event::Generating { base_name } => say(
                "certs",
                format!("Generating {base_name:?} certificate and key"),
            ),
            Event::SignedFor {
                base_name,
                dns_names,
                ip_addresses,
            } => say(
                "certs",
                format!(
                    "{base_name} serving cert is signed for DNS names [{}] and IPs [{}]",
                    dns_names.join(" "),
                    ip_addresses
                        .iter()
                        .map(|ip| ip.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ),
            Event::UsingExistingCa {
                base_name,
                keyless: false,
            } => say(
                "certs",
                format!("Using existing {base_name} certificate authority"),
            ),
            Event::UsingExistingCa {
                base_name,
                keyless: true,
            } => say(
                "certs",
                format!("Using existing {base_name} keyless certificate authority"),
            ),
            Event::UsingExisting { base_name } => say(
                "certs",
                format!("Using existing {base_name} certificate and key on disk"),
            ),
            Event::WouldWrite { path, mode } => say(
                "dryrun",
                format!(
                    "Would write file {:?} with mode {mode:04o}",
                    path.display().to_string()
                ),
            ),
            Event::Warning(message) => warn(message),
        }
    }
}
