//! `phase certs ...`: one phase per certificate of the library's list, run together;
//! and the standalone `check-expiration` and `renew` (kubeadm's `kubeadm certs ...`).

use std::path::{Path, PathBuf};

use anyhow::bail;
use phases::config::{self, Etcd, GoDuration};
use phases::pki::expiry::{self, CertificateExpiry, ExpirationInfo, ExpiryStatus, HostExpiry};
use phases::pki::renew::{self, RenewOptions, RenewReport};
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
        .collect::<Vec<_>>();
    let mut children = children;
    children.push(check_expiration());
    children.push(renew());
    Phase::group("certs", "Certificate generation", children)
        .with_all("Generate all etcd certificates")
        .long("Generate the etcd certificates exactly as kubeadm does. Existing certificates that are signed by the etcd CA and cover every required name are reused; anything else on disk is an error, never overwritten. check-expiration and renew are kubeadm's `kubeadm certs check-expiration` and `kubeadm certs renew` for these certificates; `all` and the init workflow never run them.")
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

/// `phase certs check-expiration`: kubeadm's `kubeadm certs check-expiration`, for the
/// etcd certificates.
fn check_expiration() -> Phase {
    const FLAGS: &[Flag] = &[Config, CertDir, Output, WarnWithin, BundleDir];
    Phase::leaf(
        "check-expiration",
        "Check the expiration of the etcd certificates of this node or of an external bundle",
        FLAGS,
        run_check_expiration,
    )
    .standalone()
    .long("Lists every etcd certificate (etcd-server, etcd-peer, etcd-healthcheck-client, apiserver-etcd-client) and the etcd CA with its expiry, residual time, signing CA and whether it is externally managed (the CA key is absent), in kubeadm's `certs check-expiration` layout; -o json or yaml print kubeadm's output API (output.kubeadm.k8s.io/v1alpha3 CertificateExpirationInfo) with the file path and status added. A missing file is listed as missing. Exits 1, naming each certificate and the command that renews it, when one has expired, is not valid yet, or expires within --warn-within.")
    .example("  kubeadm-etcd phase certs check-expiration --config kubeadm.yaml\n  kubeadm-etcd phase certs check-expiration --bundle-dir ./bundle -o json")
}

/// `phase certs renew <name>|all`: kubeadm's `kubeadm certs renew`.
fn renew() -> Phase {
    const FLAGS: &[Flag] = &[
        Config,
        KubeadmVersion,
        CertDir,
        RenewTarget,
        BundleDir,
        BackupDir,
    ];
    Phase::leaf(
        "renew",
        "Renew etcd certificates with the etcd CA, keeping their names",
        FLAGS,
        run_renew,
    )
    .standalone()
    .long("Renews a certificate as kubeadm's `certs renew` does: the CommonName, Organization, SANs and usages of the certificate on disk, a new key of the configuration's encryptionAlgorithm, valid from now for certificateValidityPeriod, signed by the etcd CA. Pass the --config the certificates were made with (without one, each key keeps its current type, and the validity is kubeadm's default of one year). The old certificate and key are copied first into a new directory under --backup-dir (with --bundle-dir: DIR/backups/<host>), then the new pair is written atomically. Refused when the CA key is absent (externally managed CA). CAs are never renewed. etcd reads its server and peer certificates again for every new TLS connection, so members serve the renewed ones without a restart.")
    .example("  kubeadm-etcd phase certs renew all --config kubeadm.yaml\n  kubeadm-etcd phase certs renew etcd-peer --bundle-dir ./bundle")
}

fn run_check_expiration(ctx: &Context) -> anyhow::Result<()> {
    let warn_within = ctx.required::<GoDuration>(WarnWithin).0;
    // The one place the clock is read: the library takes `now`.
    let now = time::OffsetDateTime::now_utc();
    let format = ctx.value::<String>(Output).unwrap_or_else(|| "text".into());
    let renew_flags = renew_flags(ctx);
    let mut problems = Vec::new();
    match ctx.value::<PathBuf>(BundleDir) {
        Some(dir) => {
            let hosts = expiry::check_bundle(&dir, now, warn_within)?;
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&bundle_list(&hosts))?),
                "yaml" => print!("{}", serde_yaml::to_string(&bundle_list(&hosts))?),
                _ => {
                    for (i, h) in hosts.iter().enumerate() {
                        if i > 0 {
                            println!();
                        }
                        say(
                            "check-expiration",
                            format!("host {}: {}", h.host, h.cert_dir.display()),
                        );
                        print!("{}", expiry::render_table(&h.info));
                    }
                }
            }
            let flags = format!(" --bundle-dir {}", dir.display());
            for h in &hosts {
                problems.extend(findings(&h.info, &format!("host {}: ", h.host), &flags));
            }
        }
        None => {
            let cfg = ctx.config()?;
            if let Etcd::External(_) = cfg.cluster.etcd {
                bail!("the configuration uses an external etcd: this node has no etcd certificates of its own; check the bundle its hosts were made from with --bundle-dir");
            }
            let cert_dir = ctx.cert_dir()?;
            let info = expiry::check(&cert_dir, None, now, warn_within)?;
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&info)?),
                "yaml" => print!("{}", serde_yaml::to_string(&info)?),
                _ => print!("{}", expiry::render_table(&info)),
            }
            problems.extend(findings(&info, "", &renew_flags));
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} etcd certificate(s) expired, not valid yet, or expiring within {}:\n  - {}",
            problems.len(),
            GoDuration(warn_within),
            problems.join("\n  - ")
        );
    }
    Ok(())
}

/// The flags a suggested `renew` command needs to find the same certificates.
fn renew_flags(ctx: &Context) -> String {
    let mut flags = String::new();
    if let Some(config) = ctx.value::<PathBuf>(Config) {
        flags.push_str(&format!(" --config {}", config.display()));
    }
    if let Some(dir) = ctx.value::<PathBuf>(CertDir) {
        flags.push_str(&format!(" --cert-dir {}", dir.display()));
    }
    flags
}

/// `-o json|yaml` with `--bundle-dir`: one kubeadm `CertificateExpirationInfo` per host,
/// in a Kubernetes `List`, sorted by host.
fn bundle_list(hosts: &[HostExpiry]) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": hosts,
    })
}

/// What needs doing about each certificate of `info`, with the command that does it;
/// missing files are warned about but do not fail the check (kubeadm lists them too),
/// unless every one is missing: that is a wrong directory more likely than a node.
fn findings(info: &ExpirationInfo, host: &str, flags: &str) -> Vec<String> {
    let mut out = Vec::new();
    if info.rows().all(|r| r.missing) {
        let dir = info
            .certificate_authorities
            .first()
            .and_then(|ca| ca.path.parent()?.parent())
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        out.push(format!(
            "{host}no etcd certificate in {dir}: pass the certificate directory with --cert-dir or the configuration's certificatesDir with --config"
        ));
        return out;
    }
    for row in info.rows() {
        if row.status == ExpiryStatus::Missing {
            let make = if row.id.is_ca() {
                "copy the etcd CA from the first control-plane node, or create it with `kubeadm-etcd phase certs etcd-ca`".to_string()
            } else {
                format!("create it with `kubeadm-etcd phase certs {}`", row.name)
            };
            warn(format!(
                "{host}{} is missing ({}): {make}",
                row.name,
                row.path.display()
            ));
            continue;
        }
        if !row.status.needs_action() {
            continue;
        }
        out.push(format!("{host}{}", finding(row, flags)));
    }
    out
}

fn finding(row: &CertificateExpiry, flags: &str) -> String {
    let date = |t: Option<time::OffsetDateTime>| t.map(expiry::kubeadm_date).unwrap_or_default();
    let what = match row.status {
        ExpiryStatus::Expired => format!("expired on {}", date(row.expiration_date)),
        ExpiryStatus::NotYetValid => format!(
            "is not valid before {} (check this machine's clock)",
            date(row.not_before)
        ),
        _ => format!(
            "expires in {}, on {}",
            expiry::short_human_duration(row.residual_time_seconds),
            date(row.expiration_date)
        ),
    };
    let todo = if row.id.is_ca() {
        "kubeadm-etcd does not renew a CA (kubeadm does not either): a new etcd CA means new certificates for every member and client, and a restart of every member".to_string()
    } else if row.externally_managed {
        "the etcd CA key is absent (externally managed): sign a new certificate for the same names with your CA".to_string()
    } else {
        format!(
            "renew it with `kubeadm-etcd phase certs renew {}{flags}`",
            row.name
        )
    };
    format!("{} ({}) {what}: {todo}", row.name, row.path.display())
}

fn run_renew(ctx: &Context) -> anyhow::Result<()> {
    let target: String = ctx.required(RenewTarget);
    let (ids, all): (Vec<CertId>, bool) = if target == "all" {
        (
            CertId::ALL.into_iter().filter(|id| !id.is_ca()).collect(),
            true,
        )
    } else {
        let id = CertId::from_phase_name(&target)
            .filter(|id| !id.is_ca())
            .expect("clap accepts the listed names only");
        (vec![id], false)
    };
    let now = time::OffsetDateTime::now_utc();
    let mut renewed: Vec<CertId> = Vec::new();
    match ctx.value::<PathBuf>(BundleDir) {
        Some(dir) => {
            let (ca_dir, hosts) = expiry::bundle_hosts(&dir)?;
            // Each host's configuration says which key type and validity its
            // certificates get; read them all before renewing anything.
            let mut plans = Vec::new();
            for (host, host_dir) in hosts {
                let cfg = config::load_file_as(
                    &host_dir.join(phases::manifest::bundle::HOST_CONFIG_FILE_NAME),
                    ctx.value(KubeadmVersion),
                )?;
                plans.push((
                    host.clone(),
                    RenewOptions {
                        cert_dir: host_dir.join("pki"),
                        ca_dir: Some(ca_dir.clone()),
                        algorithm: Some(pki::key_algorithm(&cfg)),
                        validity: cfg.cluster.certificate_validity_period.0,
                        backup_root: dir.join("backups").join(&host),
                        now,
                    },
                ));
            }
            for (host, opts) in plans {
                let report = renew::renew(&opts, &ids, all)?;
                print_renewed(&format!("host {host}: "), &report);
                renewed.extend(report.renewed.iter().map(|r| r.id));
            }
            if !renewed.is_empty() {
                say(
                    "renew",
                    "Copy each host's pki/ folder to that host's certificatesDir (/etc/kubernetes/pki) again",
                );
            }
        }
        None => {
            let cfg = ctx.config()?;
            if let Etcd::External(_) = cfg.cluster.etcd {
                bail!("the configuration uses an external etcd: this node has no etcd certificates to renew; renew the bundle its hosts were made from with --bundle-dir");
            }
            // kubeadm takes the key type from the cluster's configuration; without
            // --config (this command does not read kubeadm-config) each key keeps its
            // current type rather than falling back to RSA-2048.
            let algorithm = ctx
                .value::<PathBuf>(Config)
                .map(|_| pki::key_algorithm(cfg));
            let opts = RenewOptions {
                cert_dir: ctx.cert_dir()?,
                ca_dir: None,
                algorithm,
                validity: cfg.cluster.certificate_validity_period.0,
                backup_root: ctx.required(BackupDir),
                now,
            };
            let report = renew::renew(&opts, &ids, all)?;
            print_renewed("", &report);
            renewed.extend(report.renewed.iter().map(|r| r.id));
        }
    }
    print_restart_advice(&renewed);
    Ok(())
}

/// kubeadm's wording (`certs.go` `renewCert`): "<long name> renewed", "MISSING! <long
/// name>"; here with the `[renew]` prefix of this tool's output.
fn print_renewed(host: &str, report: &RenewReport) {
    let long = |id: CertId| id.long_name().trim_start_matches("the ").to_string();
    for (id, path) in &report.missing {
        say(
            "renew",
            format!("{host}MISSING! {} ({})", long(*id), path.display()),
        );
    }
    for r in &report.renewed {
        say("renew", format!("{host}{} renewed", long(r.id)));
        tracing::info!(
            "{}: serial {}, valid until {}",
            r.cert.display(),
            r.serial,
            expiry::rfc3339(r.not_after)
        );
    }
    if let Some(dir) = &report.backup_dir {
        say(
            "renew",
            format!(
                "{host}The previous certificates and keys are in {}",
                display(dir)
            ),
        );
    }
}

fn display(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// Who must restart, per what was renewed. etcd itself need not: it reads its server and
/// peer certificate and key again for every new TLS connection. etcd's
/// `client/pkg/transport/listener.go` (`TLSInfo.baseConfig`: `cfg.GetCertificate` and
/// `cfg.GetClientCertificate` call `tlsutil.NewCert(info.CertFile, info.KeyFile, ...)`
/// on every handshake; `pkg/transport` in 3.4), at v3.4.23, v3.5.30, v3.6.14 and v3.7.1.
/// The CA pool (`ClientCAs`, `RootCAs`) is loaded once at start, which is why a CA change
/// would need restarts.
fn print_restart_advice(renewed: &[CertId]) {
    if renewed.is_empty() {
        return;
    }
    println!();
    say("renew", "Done renewing certificates.");
    if renewed
        .iter()
        .any(|id| matches!(id, CertId::EtcdServer | CertId::EtcdPeer))
    {
        say("renew", "etcd reads etcd/server.crt, etcd/peer.crt and their keys again for every new TLS connection (etcd's client/pkg/transport/listener.go, 3.4 to 3.7): the etcd members serve the renewed certificates from their next connection on, without a restart. Connections open now keep the old certificate until they reconnect; to move them at once, restart the member (take etcd.yaml out of the manifest directory and put it back).");
    }
    if renewed.contains(&CertId::ApiserverEtcdClient) {
        say("renew", "Restart kube-apiserver on this node so that it connects to etcd with the renewed apiserver-etcd-client certificate (kubeadm asks for the same restart after its renewal).");
    }
    if renewed.contains(&CertId::EtcdHealthcheckClient) {
        say("renew", "etcd/healthcheck-client is read by each kubeadm and kubeadm-etcd run: nothing to restart for it.");
    }
}

/// For `check-health`: what the members' TLS listeners serve, checked against the clock
/// (each address read within 2 s, all at once; see [`pki::served`]).
pub fn served_certificate_warnings(
    members: &[phases::membership::status::MemberRow],
    tls: &phases::membership::EtcdTls,
) -> Vec<String> {
    // The client's own credentials let the handshake finish cleanly; without them (they
    // were good enough for the health check, so this is rare) it is aborted.
    let identity = pki::served::ClientIdentity::load(&tls.ca, &tls.cert, &tls.key)
        .map_err(|e| tracing::info!("served certificates read without a client identity: {e}"))
        .ok();
    let endpoints: Vec<pki::served::MemberEndpoints> = members
        .iter()
        .map(|m| pki::served::MemberEndpoints {
            label: phases::membership::member_label(m.id, &m.name),
            client_urls: m.client_urls.clone(),
            peer_urls: m.peer_urls.clone(),
        })
        .collect();
    pki::served::served_certificate_warnings(
        &endpoints,
        identity.as_ref(),
        time::OffsetDateTime::now_utc(),
        expiry::DEFAULT_WARN_WITHIN,
        std::time::Duration::from_secs(2),
    )
}
