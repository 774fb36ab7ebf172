//! The certificates, checked by independent tools (`openssl verify`, `openssl x509
//! -text`) and by snapshots of every profile parsed back from the written PEM.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use phases::config::{load_file, GoDuration};
use phases::pki::{describe_certificate, ensure_certificates, CertId, Event, PkiConfig, PkiError};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pki_for(config: &str, cert_dir: &Path) -> PkiConfig {
    let cfg = load_file(&repo().join("testdata/config").join(config)).unwrap();
    PkiConfig::from_kubeadm(&cfg, cert_dir.to_path_buf())
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (hack/install-deps.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// kubeadm's `NewSignedCert`: a serial drawn uniformly from [1, MaxInt64). The snapshots
/// redact it, so it is checked here: in range, and different for every certificate.
fn check_serials(dir: &Path) {
    let mut seen = std::collections::BTreeSet::new();
    for id in CertId::ALL {
        let pem = std::fs::read(id.cert_path(dir)).unwrap();
        let desc = describe_certificate(&pem).unwrap();
        let hex: String = desc
            .serial
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect();
        let serial = u128::from_str_radix(&hex, 16)
            .unwrap_or_else(|e| panic!("{}: serial {:?}: {e}", id.base_name(), desc.serial));
        assert!(
            (1..i64::MAX as u128).contains(&serial),
            "{}: serial {serial} is outside kubeadm's [1, MaxInt64)",
            id.base_name()
        );
        assert!(
            seen.insert(serial),
            "{}: serial {serial} repeated",
            id.base_name()
        );
    }
}

/// kubeadm's key PEM forms (`keyutil.MarshalPrivateKeyToPEM`): PKCS#1 for RSA, SEC1 for
/// ECDSA.
fn check_key_forms(dir: &Path) {
    for id in CertId::ALL {
        let text = std::fs::read_to_string(id.key_path(dir)).unwrap();
        let first = text.lines().next().unwrap();
        assert!(
            first == "-----BEGIN RSA PRIVATE KEY-----" || first == "-----BEGIN EC PRIVATE KEY-----",
            "{}: {first}",
            id.base_name()
        );
    }
}

fn snapshot_all(dir: &Path) -> String {
    check_serials(dir);
    check_key_forms(dir);
    let mut out = String::new();
    for id in CertId::ALL {
        let pem = std::fs::read(id.cert_path(dir)).unwrap();
        let desc = describe_certificate(&pem).unwrap();
        let mut value = serde_yaml::to_value(&desc).unwrap();
        let map = value.as_mapping_mut().unwrap();
        for redacted in ["serial", "notBefore", "notAfter"] {
            map.insert(redacted.into(), "[redacted]".into());
        }
        out.push_str(&format!(
            "# {}\n{}",
            id.base_name(),
            serde_yaml::to_string(&value).unwrap()
        ));
    }
    out
}

/// Every profile for every configuration: subject, issuer, usages, SANs, key type,
/// lifetime; and, independently, `openssl verify` against the CA.
#[test]
fn every_profile_matches_kubeadm() {
    insta::glob!("../../testdata/config", "*.yaml", |path| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = pki_for(path.file_name().unwrap().to_str().unwrap(), dir.path());
        ensure_certificates(&cfg, &CertId::ALL, false).unwrap();
        insta::assert_snapshot!(snapshot_all(dir.path()));

        let ca = CertId::EtcdCa.cert_path(dir.path());
        for id in &CertId::ALL[1..] {
            let cert = id.cert_path(dir.path());
            let verified = openssl(&[
                "verify",
                "-CAfile",
                ca.to_str().unwrap(),
                cert.to_str().unwrap(),
            ]);
            assert_eq!(verified.trim(), format!("{}: OK", cert.display()));
        }
        // The leaf's not-before is backdated 5 minutes and its lifetime is the configured one.
        let server =
            describe_certificate(&std::fs::read(CertId::EtcdServer.cert_path(dir.path())).unwrap())
                .unwrap();
        assert_eq!(
            server.lifetime,
            GoDuration(cfg.validity + std::time::Duration::from_secs(300)).to_string()
        );
    });
}

#[test]
fn openssl_sees_the_sans_and_usages() {
    let dir = tempfile::tempdir().unwrap();
    ensure_certificates(
        &pki_for("v1beta4-extra-sans.yaml", dir.path()),
        &CertId::ALL,
        false,
    )
    .unwrap();
    let text = |id: CertId| {
        openssl(&[
            "x509",
            "-noout",
            "-text",
            "-in",
            id.cert_path(dir.path()).to_str().unwrap(),
        ])
    };

    let server = text(CertId::EtcdServer);
    assert!(server.contains("Subject: CN = cp-2"), "{server}");
    assert!(server.contains(
        "DNS:*.etcd.example.internal, DNS:cp-2, DNS:etcd.example.internal, DNS:localhost, IP Address:10.0.0.12, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:192.168.10.5"
    ), "{server}");
    assert!(server.contains("TLS Web Server Authentication, TLS Web Client Authentication"));
    assert!(server.contains("Digital Signature, Key Encipherment"));
    assert!(server.contains("CA:FALSE"));

    let peer = text(CertId::EtcdPeer);
    assert!(peer.contains("DNS:cp-2, DNS:localhost, DNS:peer.example.internal, IP Address:10.0.0.12, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:10.0.0.99"), "{peer}");

    let ca = text(CertId::EtcdCa);
    assert!(ca.contains("Subject: CN = etcd-ca"));
    assert!(ca.contains("CA:TRUE"));
    assert!(ca.contains("Digital Signature, Key Encipherment, Certificate Sign"));

    for (id, cn) in [
        (
            CertId::EtcdHealthcheckClient,
            "kube-etcd-healthcheck-client",
        ),
        (CertId::ApiserverEtcdClient, "kube-apiserver-etcd-client"),
    ] {
        let client = text(id);
        assert!(
            client.contains(&format!("Subject: CN = {cn}\n")),
            "{client}"
        );
        assert!(client.contains("TLS Web Client Authentication"));
        assert!(!client.contains("TLS Web Server Authentication"));
        assert!(!client.contains("Subject Alternative Name"));
    }
}

#[test]
fn files_have_kubeadms_paths_and_modes() {
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("pki");
    ensure_certificates(
        &pki_for("v1beta4-ipv4.yaml", &cert_dir),
        &CertId::ALL,
        false,
    )
    .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // kubeadm's certutil.WriteCert and keyutil.WriteKey: os.MkdirAll(dir, 0755).
    assert_eq!(mode(&cert_dir), 0o755);
    assert_eq!(mode(&cert_dir.join("etcd")), 0o755);
    let mut files: Vec<String> = walk(&cert_dir)
        .into_iter()
        .map(|p| {
            format!(
                "{:o} {}",
                mode(&p),
                p.strip_prefix(&cert_dir).unwrap().display()
            )
        })
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "600 apiserver-etcd-client.key",
            "600 etcd/ca.key",
            "600 etcd/healthcheck-client.key",
            "600 etcd/peer.key",
            "600 etcd/server.key",
            "644 apiserver-etcd-client.crt",
            "644 etcd/ca.crt",
            "644 etcd/healthcheck-client.crt",
            "644 etcd/peer.crt",
            "644 etcd/server.crt",
        ]
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn snapshot_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut files: Vec<_> = walk(dir)
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).unwrap();
            (
                p.clone(),
                std::fs::read(&p).unwrap(),
                meta.modified().unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_second_run_changes_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = pki_for("v1beta4-ecdsa-p256.yaml", dir.path());
    ensure_certificates(&cfg, &CertId::ALL, false).unwrap();
    let before = snapshot_bytes(dir.path());
    let report = ensure_certificates(&cfg, &CertId::ALL, false).unwrap();
    assert!(report.written.is_empty());
    assert_eq!(
        report.events,
        vec![
            Event::UsingExistingCa {
                base_name: "etcd/ca",
                keyless: false
            },
            Event::UsingExisting {
                base_name: "etcd/server"
            },
            Event::UsingExisting {
                base_name: "etcd/peer"
            },
            Event::UsingExisting {
                base_name: "etcd/healthcheck-client"
            },
            Event::UsingExisting {
                base_name: "apiserver-etcd-client"
            },
        ]
    );
    assert_eq!(snapshot_bytes(dir.path()), before);
}

#[test]
fn a_certificate_from_another_ca_is_refused_and_left_alone() {
    let ours = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let cfg = pki_for("v1beta4-ecdsa-p256.yaml", ours.path());
    ensure_certificates(&cfg, &[CertId::EtcdCa], false).unwrap();
    ensure_certificates(
        &pki_for("v1beta4-ecdsa-p256.yaml", other.path()),
        &CertId::ALL,
        false,
    )
    .unwrap();
    for ext in ["crt", "key"] {
        std::fs::copy(
            other.path().join(format!("etcd/server.{ext}")),
            ours.path().join(format!("etcd/server.{ext}")),
        )
        .unwrap();
    }
    let foreign = std::fs::read(CertId::EtcdServer.cert_path(ours.path())).unwrap();
    let err = ensure_certificates(&cfg, &CertId::ALL, false).unwrap_err();
    assert!(matches!(err, PkiError::NotSignedByCa { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "{}: certificate is not signed by the etcd CA",
            CertId::EtcdServer.cert_path(ours.path()).display()
        )),
        "{message}"
    );
    assert!(
        message.contains("remove it to have it regenerated, or restore the CA that signed it"),
        "{message}"
    );
    assert_eq!(
        std::fs::read(CertId::EtcdServer.cert_path(ours.path())).unwrap(),
        foreign
    );
    assert!(
        !CertId::EtcdPeer.cert_path(ours.path()).exists(),
        "nothing else was written"
    );
}

#[test]
fn a_certificate_missing_a_san_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = pki_for("v1beta4-ecdsa-p256.yaml", dir.path());
    ensure_certificates(&cfg, &CertId::ALL, false).unwrap();
    cfg.advertise_address = Some("10.0.0.99".parse().unwrap());
    let err = ensure_certificates(&cfg, &[CertId::EtcdServer], false).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: certificate is not valid for IP address 10.0.0.99; it must cover DNS names [cp-4 localhost] and IPs [10.0.0.99 127.0.0.1 ::1]; remove it to have it regenerated",
            CertId::EtcdServer.cert_path(dir.path()).display()
        )
    );
}

#[test]
fn an_external_ca_needs_every_leaf_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = pki_for("v1beta4-ecdsa-p256.yaml", dir.path());
    ensure_certificates(&cfg, &CertId::ALL, false).unwrap();
    std::fs::remove_file(CertId::EtcdCa.key_path(dir.path())).unwrap();

    let report = ensure_certificates(&cfg, &CertId::ALL, false).unwrap();
    assert_eq!(
        report.events[0],
        Event::UsingExistingCa {
            base_name: "etcd/ca",
            keyless: true
        }
    );

    std::fs::remove_file(CertId::EtcdPeer.cert_path(dir.path())).unwrap();
    std::fs::remove_file(CertId::EtcdPeer.key_path(dir.path())).unwrap();
    let err = ensure_certificates(&cfg, &CertId::ALL, false).unwrap_err();
    assert!(
        err.to_string().contains("missing, and the etcd CA is external (ca.crt without ca.key), so it cannot be generated here"),
        "{err}"
    );
}

#[test]
fn half_a_pair_is_never_completed_by_overwriting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = pki_for("v1beta4-ecdsa-p256.yaml", dir.path());
    ensure_certificates(&cfg, &CertId::ALL, false).unwrap();
    std::fs::remove_file(CertId::EtcdPeer.cert_path(dir.path())).unwrap();
    let key = std::fs::read(CertId::EtcdPeer.key_path(dir.path())).unwrap();
    let err = ensure_certificates(&cfg, &CertId::ALL, false).unwrap_err();
    assert!(
        err.to_string()
            .contains("never overwrites a file it did not make"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(CertId::EtcdPeer.key_path(dir.path())).unwrap(),
        key
    );
}

#[test]
fn a_leaf_needs_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let err = ensure_certificates(
        &pki_for("v1beta4-ecdsa-p256.yaml", dir.path()),
        &[CertId::EtcdServer],
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("the etcd certificate authority is missing; create it first with `kubeadm-etcd phase certs etcd-ca`"), "{err}");
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = pki_for("v1beta4-ecdsa-p256.yaml", dir.path());
    ensure_certificates(&cfg, &CertId::ALL, false).unwrap();
    std::fs::copy(
        CertId::EtcdPeer.key_path(dir.path()),
        CertId::EtcdServer.key_path(dir.path()),
    )
    .unwrap();
    let err = ensure_certificates(&cfg, &CertId::ALL, false).unwrap_err();
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err:?}");
}

#[test]
fn dry_run_writes_nothing_and_lists_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("pki");
    let report = ensure_certificates(
        &pki_for("v1beta4-ecdsa-p256.yaml", &cert_dir),
        &CertId::ALL,
        true,
    )
    .unwrap();
    assert!(!cert_dir.exists());
    let would: Vec<_> = report
        .events
        .iter()
        .filter_map(|e| match e {
            Event::WouldWrite { path, mode } => Some((
                path.strip_prefix(&cert_dir).unwrap().display().to_string(),
                *mode,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(would.len(), 10);
    assert_eq!(would[0], ("etcd/ca.key".to_string(), 0o600));
    assert_eq!(would[1], ("etcd/ca.crt".to_string(), 0o644));
}

/// Keys kubeadm wrote (PKCS#1 "RSA PRIVATE KEY") are reused, so a cluster that kubeadm
/// bootstrapped can be taken over.
#[test]
fn reuses_a_kubeadm_style_pkcs1_ca() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = dir.path().join("etcd");
    std::fs::create_dir_all(&etcd).unwrap();
    let key = etcd.join("ca.key");
    let cert = etcd.join("ca.crt");
    openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        key.to_str().unwrap(),
        "2048",
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        "/CN=etcd-ca",
        "-days",
        "3650",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
        "-out",
        cert.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let report = ensure_certificates(
        &pki_for("v1beta4-ipv4.yaml", dir.path()),
        &CertId::ALL,
        false,
    )
    .unwrap();
    assert_eq!(
        report.events[0],
        Event::UsingExistingCa {
            base_name: "etcd/ca",
            keyless: false
        }
    );
    let verified = openssl(&[
        "verify",
        "-CAfile",
        cert.to_str().unwrap(),
        CertId::EtcdServer.cert_path(dir.path()).to_str().unwrap(),
    ]);
    assert!(verified.ends_with(": OK\n"));
}

/// The files a kubeadm-layout node gets from this tool are where kubeadm's later phases
/// look for them: the apiserver's `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`
/// (kubeadm's controlplane/manifests.go, constants `EtcdCACertName`,
/// `APIServerEtcdClientCertName`, `APIServerEtcdClientKeyName`), the kubelet's static Pod
/// directory (`GetStaticPodFilepath("etcd", "/etc/kubernetes/manifests")`) and the
/// manifest's own certificate flags. The root is a temporary directory standing for `/`.
#[test]
fn a_kubeadm_layout_node_gets_its_files_where_kubeadm_looks() {
    let root = tempfile::tempdir().unwrap();
    let kubernetes = root.path().join("etc/kubernetes");
    let cert_dir = kubernetes.join("pki");
    let manifest_dir = kubernetes.join("manifests");
    let cfg = phases::config::load_str(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nnodeRegistration:\n  name: cp-0\nlocalAPIEndpoint:\n  advertiseAddress: 10.0.0.10\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.35.0\n",
        None,
    )
    .unwrap();
    ensure_certificates(
        &PkiConfig::from_kubeadm(&cfg, cert_dir.clone()),
        &CertId::ALL,
        false,
    )
    .unwrap();
    let pod = phases::manifest::etcd_pod(
        &cfg,
        &phases::manifest::ManifestOptions::first_member("/etc/kubernetes/pki".into()),
    )
    .unwrap();
    let yaml = phases::manifest::render_yaml(&pod).unwrap();
    let backup_dir = kubernetes.join("tmp");
    phases::manifest::write_manifest(&manifest_dir, &backup_dir, &yaml).unwrap();

    let under_root = |absolute: &str| root.path().join(absolute.trim_start_matches('/'));
    // Where kube-apiserver's flags (kubeadm) and kubeadm's etcd client point.
    for path in [
        "/etc/kubernetes/pki/etcd/ca.crt",
        "/etc/kubernetes/pki/etcd/ca.key",
        "/etc/kubernetes/pki/etcd/server.crt",
        "/etc/kubernetes/pki/etcd/server.key",
        "/etc/kubernetes/pki/etcd/peer.crt",
        "/etc/kubernetes/pki/etcd/peer.key",
        "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
        "/etc/kubernetes/pki/etcd/healthcheck-client.key",
        "/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "/etc/kubernetes/pki/apiserver-etcd-client.key",
        "/etc/kubernetes/manifests/etcd.yaml",
    ] {
        assert!(under_root(path).is_file(), "{path} is missing");
    }
    assert_eq!(
        phases::manifest::manifest_path(&under_root(phases::manifest::DEFAULT_MANIFEST_DIR)),
        manifest_dir.join("etcd.yaml")
    );
    // Every file the etcd command names exists on this node.
    let command = &pod.spec.as_ref().unwrap().containers[0]
        .command
        .clone()
        .unwrap();
    let mut named = 0;
    for arg in command {
        let Some((flag, value)) = arg.split_once('=') else {
            continue;
        };
        if flag.ends_with("-file") {
            assert!(under_root(value).is_file(), "{flag}: {value} is missing");
            named += 1;
        }
    }
    assert_eq!(named, 6, "{command:?}");
    // The certs volume is kubeadm's `<certificatesDir>/etcd`.
    assert!(
        yaml.contains("      path: /etc/kubernetes/pki/etcd\n"),
        "{yaml}"
    );
}

// ---------------------------------------------------------------------------------------
// check-expiration and renew (issue 14)

use phases::pki::expiry::{self, ExpiryStatus};
use phases::pki::renew::{self, RenewOptions};

/// 2026-08-19T09:03:07Z: the pinned "now" of the expiry tests.
fn fixed_now() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(1_787_130_187).unwrap()
}

/// Re-signs the certificate of `id` under `dir` with the CA there, keeping its names
/// and usages, valid from `not_before` to `not_after` (fixed instants, so tables and
/// JSON are the same on every run).
fn resign(
    dir: &Path,
    id: CertId,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) {
    let ca_pem = std::fs::read_to_string(CertId::EtcdCa.cert_path(dir)).unwrap();
    let ca_key = std::fs::read_to_string(CertId::EtcdCa.key_path(dir)).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&ca_pem, rcgen::KeyPair::from_pem(&ca_key).unwrap())
            .unwrap();
    let old = describe_certificate(&std::fs::read(id.cert_path(dir)).unwrap()).unwrap();
    let mut params = rcgen::CertificateParams::new(old.dns_names.clone()).unwrap();
    params.subject_alt_names.extend(
        old.ip_addresses
            .iter()
            .copied()
            .map(rcgen::SanType::IpAddress),
    );
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        old.subject.trim_start_matches("CN="),
    );
    params.not_before = not_before;
    params.not_after = not_after;
    for usage in &old.extended_key_usage {
        params.extended_key_usages.push(match usage.as_str() {
            "TLS Web Server Authentication" => rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            _ => rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        });
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(id.cert_path(dir), cert.pem()).unwrap();
    std::fs::write(id.key_path(dir), key.serialize_pem()).unwrap();
}

/// A node's certificates in every state check-expiration tells apart, at [`fixed_now`]:
/// server expired yesterday, peer expiring in 2 days, healthcheck-client not valid for
/// another hour, apiserver-etcd-client missing; the CA (made now, 10 years) fine.
fn node_in_every_state(dir: &Path) {
    ensure_certificates(
        &pki_for("v1beta4-ecdsa-p256.yaml", dir),
        &CertId::ALL,
        false,
    )
    .unwrap();
    let now = fixed_now();
    let day = time::Duration::days(1);
    // A CA with pinned dates (10 years from a year ago), replacing the one made now.
    let mut ca = rcgen::CertificateParams::new(vec!["etcd-ca".to_string()]).unwrap();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "etcd-ca");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    ca.not_before = now - 365 * day;
    ca.not_after = now + 9 * 365 * day;
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(CertId::EtcdCa.cert_path(dir), ca_cert.pem()).unwrap();
    std::fs::write(CertId::EtcdCa.key_path(dir), ca_key.serialize_pem()).unwrap();
    resign(dir, CertId::EtcdServer, now - 365 * day, now - day);
    resign(dir, CertId::EtcdPeer, now - 363 * day, now + 2 * day);
    resign(
        dir,
        CertId::EtcdHealthcheckClient,
        now + time::Duration::hours(1),
        now + 365 * day,
    );
    std::fs::remove_file(CertId::ApiserverEtcdClient.cert_path(dir)).unwrap();
    std::fs::remove_file(CertId::ApiserverEtcdClient.key_path(dir)).unwrap();
}

#[test]
fn check_expiration_ranks_certificates_in_kubeadms_table() {
    let dir = tempfile::tempdir().unwrap();
    node_in_every_state(dir.path());
    let now = fixed_now();
    let info = expiry::check(dir.path(), None, now, expiry::DEFAULT_WARN_WITHIN).unwrap();
    let statuses: Vec<(&str, ExpiryStatus)> = info.rows().map(|r| (r.name, r.status)).collect();
    assert_eq!(
        statuses,
        [
            ("apiserver-etcd-client", ExpiryStatus::Missing),
            ("etcd-healthcheck-client", ExpiryStatus::NotYetValid),
            ("etcd-peer", ExpiryStatus::ExpiresSoon),
            ("etcd-server", ExpiryStatus::Expired),
            ("etcd-ca", ExpiryStatus::Ok),
        ]
    );
    let table = expiry::render_table(&info);
    insta::assert_snapshot!("check_expiration_table", table);

    let root = dir.path().display().to_string();
    let json = serde_json::to_string_pretty(&info)
        .unwrap()
        .replace(&root, "<cert-dir>");
    insta::assert_snapshot!("check_expiration_json", json);

    // Without a CA key the CA and every certificate it signed are externally managed.
    std::fs::remove_file(CertId::EtcdCa.key_path(dir.path())).unwrap();
    let info = expiry::check(dir.path(), None, now, expiry::DEFAULT_WARN_WITHIN).unwrap();
    assert!(info
        .rows()
        .filter(|r| !r.missing)
        .all(|r| r.externally_managed));
    // A narrower window no longer flags the peer certificate.
    let info = expiry::check(dir.path(), None, now, std::time::Duration::from_secs(86400)).unwrap();
    assert_eq!(info.certificates[2].status, ExpiryStatus::Ok);
}

fn renew_opts(dir: &Path, backup: &Path, now: time::OffsetDateTime) -> RenewOptions {
    let cfg = load_file(&repo().join("testdata/config/v1beta4-extra-sans.yaml")).unwrap();
    RenewOptions {
        cert_dir: dir.to_path_buf(),
        ca_dir: None,
        algorithm: Some(phases::pki::key_algorithm(&cfg)),
        validity: cfg.cluster.certificate_validity_period.0,
        backup_root: backup.to_path_buf(),
        now,
    }
}

/// What must survive a renewal: everything but the serial, the dates and the key.
fn identity(pem: &[u8]) -> String {
    let mut d = describe_certificate(pem).unwrap();
    d.serial.clear();
    d.not_before.clear();
    d.not_after.clear();
    format!("{d:?}")
}

fn x509_text_names(path: &Path) -> Vec<String> {
    let text = openssl(&["x509", "-noout", "-text", "-in", path.to_str().unwrap()]);
    let keep = [
        "Subject:",
        "DNS:",
        "Digital Signature",
        "TLS Web",
        "Issuer:",
    ];
    // Key identifiers are hex that may contain "CA:": basic constraints start the line.
    text.lines()
        .map(str::trim)
        .filter(|l| keep.iter().any(|k| l.contains(k)) || l.starts_with("CA:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn renewed_certificates_keep_their_identity_and_verify_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let backups = dir.path().join("backups");
    ensure_certificates(
        &pki_for("v1beta4-extra-sans.yaml", &pki),
        &CertId::ALL,
        false,
    )
    .unwrap();
    let leaves: Vec<CertId> = CertId::ALL.into_iter().filter(|i| !i.is_ca()).collect();
    let before: Vec<(Vec<u8>, Vec<u8>)> = leaves
        .iter()
        .map(|id| {
            (
                std::fs::read(id.cert_path(&pki)).unwrap(),
                std::fs::read(id.key_path(&pki)).unwrap(),
            )
        })
        .collect();
    let texts_before: Vec<Vec<String>> = leaves
        .iter()
        .map(|id| x509_text_names(&id.cert_path(&pki)))
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let report = renew::renew(&renew_opts(&pki, &backups, now), &leaves, false).unwrap();
    assert_eq!(report.renewed.len(), 4);
    let backup = report.backup_dir.clone().unwrap();
    let ca = CertId::EtcdCa.cert_path(&pki);
    for (i, id) in leaves.iter().enumerate() {
        let cert_path = id.cert_path(&pki);
        let pem = std::fs::read(&cert_path).unwrap();
        assert_ne!(pem, before[i].0, "{id:?} was renewed");
        assert_ne!(
            std::fs::read(id.key_path(&pki)).unwrap(),
            before[i].1,
            "kubeadm renews the key too"
        );
        assert_eq!(identity(&pem), identity(&before[i].0), "{id:?}");
        assert_eq!(x509_text_names(&cert_path), texts_before[i], "{id:?}");
        let verified = openssl(&[
            "verify",
            "-CAfile",
            ca.to_str().unwrap(),
            cert_path.to_str().unwrap(),
        ]);
        assert!(verified.contains(": OK"), "{verified}");
        // The serial the report gives is the one openssl reads.
        let serial = openssl(&[
            "x509",
            "-noout",
            "-serial",
            "-in",
            cert_path.to_str().unwrap(),
        ]);
        assert_eq!(
            serial.trim(),
            format!("serial={}", report.renewed[i].serial)
        );
        // Valid from now (backdated 5 minutes, kubeadm's CertificateBackdate) for
        // certificateValidityPeriod.
        let r = &report.renewed[i];
        let lifetime = (r.not_after - now).whole_seconds();
        assert!(
            (lifetime - 8760 * 3600).abs() <= 1,
            "{id:?}: {}",
            r.not_after
        );
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(id.key_path(&pki)), 0o600);
        assert_eq!(mode(cert_path.clone()), 0o644);
        // The old pair is kept, byte for byte, the key private.
        assert_eq!(std::fs::read(id.cert_path(&backup)).unwrap(), before[i].0);
        assert_eq!(std::fs::read(id.key_path(&backup)).unwrap(), before[i].1);
        assert_eq!(mode(id.key_path(&backup)), 0o600);
    }
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // The ensure phase accepts the renewed certificates as its own.
    let again = ensure_certificates(
        &pki_for("v1beta4-extra-sans.yaml", &pki),
        &CertId::ALL,
        false,
    )
    .unwrap();
    assert!(again.written.is_empty(), "{:?}", again.events);

    // A second renewal in the same second never overwrites the first backup.
    let second = renew::renew(
        &renew_opts(&pki, &backups, now),
        &[CertId::EtcdServer],
        false,
    )
    .unwrap();
    let second_dir = second.backup_dir.unwrap();
    assert_ne!(second_dir, backup);
    assert!(
        second_dir.to_str().unwrap().ends_with("-1"),
        "{second_dir:?}"
    );
    assert_eq!(
        std::fs::read(CertId::EtcdServer.cert_path(&backup)).unwrap(),
        before[0].0
    );
}

#[test]
fn renewal_is_refused_without_the_ca_key_or_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    ensure_certificates(
        &pki_for("v1beta4-extra-sans.yaml", &pki),
        &CertId::ALL,
        false,
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let opts = renew_opts(&pki, &dir.path().join("b"), now);

    let err = renew::renew(&opts, &[CertId::EtcdCa], false).unwrap_err();
    assert!(matches!(err, PkiError::CaNotRenewable), "{err}");

    std::fs::remove_file(CertId::EtcdPeer.cert_path(&pki)).unwrap();
    let err = renew::renew(&opts, &[CertId::EtcdPeer], false).unwrap_err();
    assert!(
        err.to_string()
            .contains("missing, so there is nothing to renew; create it with `kubeadm-etcd phase certs etcd-peer`"),
        "{err}"
    );
    // `all` skips it, as kubeadm's `renew all` does.
    let report = renew::renew(&opts, &[CertId::EtcdPeer, CertId::EtcdServer], true).unwrap();
    assert_eq!(report.missing.len(), 1);
    assert_eq!(report.renewed.len(), 1);

    let server = std::fs::read(CertId::EtcdServer.cert_path(&pki)).unwrap();
    let ca_key = CertId::EtcdCa.key_path(&pki);
    std::fs::remove_file(&ca_key).unwrap();
    let err = renew::renew(&opts, &[CertId::EtcdServer], false).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("the etcd CA is externally managed")
            && message.contains(&ca_key.display().to_string()),
        "{message}"
    );
    assert_eq!(
        std::fs::read(CertId::EtcdServer.cert_path(&pki)).unwrap(),
        server,
        "nothing changed"
    );
}

/// A crash between the new key and the new certificate leaves a key that is not the
/// certificate's: the certificate phase refuses the pair, and renewing again repairs it
/// (renewal reads only the certificate).
#[test]
fn renewing_again_repairs_a_pair_split_by_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki_cfg = pki_for("v1beta4-ecdsa-p256.yaml", &pki);
    ensure_certificates(&pki_cfg, &CertId::ALL, false).unwrap();
    // The new key written, the old certificate still in place.
    let stray = rcgen::KeyPair::generate().unwrap();
    std::fs::write(CertId::EtcdPeer.key_path(&pki), stray.serialize_pem()).unwrap();
    let err = ensure_certificates(&pki_cfg, &CertId::ALL, false).unwrap_err();
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
    let mut opts = renew_opts(&pki, &dir.path().join("b"), time::OffsetDateTime::now_utc());
    opts.algorithm = Some(pki_cfg.algorithm);
    renew::renew(&opts, &[CertId::EtcdPeer], false).unwrap();
    let again = ensure_certificates(&pki_cfg, &CertId::ALL, false).unwrap();
    assert!(again.written.is_empty(), "{:?}", again.events);
}
