//! `phase certs ...`

use phases::config::Etcd;
use phases::pki::{self, CertId, Event, PkiConfig};

use crate::context::{say, warn, Context};

/// Makes the selected certificates (phase names like `etcd-server`) in one go, so that
/// their keys are generated concurrently.
pub fn run(ctx: &Context, selected: &[&'static str]) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let ids: Vec<CertId> = selected
        .iter()
        .map(|name| CertId::from_phase_name(name).expect("the phase tree names known certificates"))
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
