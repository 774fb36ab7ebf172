//! TLS refusals against real etcd 3.4.23 and 3.5.1: every way the certificates or the
//! endpoint can be wrong ends in an error that says what is wrong and what to do, and
//! nothing is ever sent in plaintext instead.
//!
//! Per version, three single-member clusters on one loopback range:
//! - node0 with good certificates, plus a second client listener on an address its server
//!   certificate does not list (`.20`);
//! - node1 whose server certificate expired yesterday (signed by the right CA, right
//!   names);
//! - node2 that also listens on and advertises a plain-HTTP client URL (`.21`).
//!
//! Members with a broken server certificate cannot pass the harness's TLS health check, so
//! readiness is read from the plain-HTTP metrics listener's `/health`.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::{EtcdProcess, EtcdVersion, TestCa};
use phases::manifest::{self, ManifestOptions};
use phases::membership::join::{self, JoinOptions};
use phases::membership::{
    health, ignore_events, EtcdClient, EtcdTls, MembershipError, DEFAULT_RPC_TIMEOUT,
};
use phases::pki::CertId;

/// Signs a certificate for `sans` with the CA in `ca_dir`, valid from `not_before` to
/// `not_after`, for server and client use. Returns (certificate, key) PEM.
fn sign(
    ca_dir: &Path,
    sans: &[String],
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> (String, String) {
    let ca_pem = std::fs::read_to_string(CertId::EtcdCa.cert_path(ca_dir)).unwrap();
    let ca_key = std::fs::read_to_string(CertId::EtcdCa.key_path(ca_dir)).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&ca_pem, rcgen::KeyPair::from_pem(&ca_key).unwrap())
            .unwrap();
    let mut params = rcgen::CertificateParams::new(sans.to_vec()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tls-test");
    params.not_before = not_before;
    params.not_after = not_after;
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Starts node `n` as the only member of its own cluster, from the manifest our phase
/// renders, with `extra_client_urls` added to its listeners (and, for `advertise`, to its
/// advertised client URLs).
fn start_alone(c: &TestCluster, n: usize, extra_client_urls: &[String], advertise: bool) {
    let node = c.node(n);
    let pod = manifest::etcd_pod(
        &node.config,
        &ManifestOptions::first_member(node.cert_dir.clone()),
    )
    .unwrap();
    let mut command = pod.spec.unwrap().containers[0].command.clone().unwrap();
    for arg in &mut command {
        let extend = arg.starts_with("--listen-client-urls=")
            || (advertise && arg.starts_with("--advertise-client-urls="));
        if extend {
            for url in extra_client_urls {
                arg.push(',');
                arg.push_str(url);
            }
        }
    }
    let process = EtcdProcess::start(&c.etcd, &command, node.ip, &node.dir.join("etcd.log"))
        .unwrap_or_else(|e| panic!("start {}: {e}", node.name));
    *node.process.lock().unwrap() = Some(process);
}

/// Waits until node `n` reports itself healthy on its plain-HTTP metrics listener, which
/// works whatever its client certificates are.
fn wait_metrics_health(c: &TestCluster, n: usize) {
    let node = c.node(n);
    let addr = SocketAddr::new(node.ip, 2381);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            write!(s, "GET /health HTTP/1.0\r\nHost: {}\r\n\r\n", addr.ip())?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(body) if body.contains("\"health\":\"true\"") => return,
            Ok(body) => last = body,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{} was not healthy on http://{addr}/health within 20s: {last}\n{}",
        node.name,
        c.log_tail(n)
    );
}

fn client(url: &str, tls: &EtcdTls) -> EtcdClient {
    EtcdClient::new(&[url.to_string()], tls, DEFAULT_RPC_TIMEOUT).expect("a client")
}

/// What the health check (one member list and one Status per member) says with `tls`
/// through `url`: it must fail, and its message is returned.
async fn refused(url: &str, tls: &EtcdTls) -> String {
    match health::check(&client(url, tls)).await {
        Ok(report) => panic!("{url} was accepted: {report:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_says(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} is not in: {message}");
    }
}

fn write_pair(dir: &Path, name: &str, (cert, key): (String, String)) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (crt_path, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&crt_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (crt_path, key_path)
}

async fn tls_refusals(version: EtcdVersion, test_id: u8) {
    let c = TestCluster::new(version, test_id, 3);
    let IpAddr::V4(ip0) = c.node(0).ip else {
        unreachable!("the harness uses IPv4 loopback")
    };
    // In this version's /24, so that the versions of the test can run side by side.
    let [a, b, v, _] = ip0.octets();
    let uncovered = format!("{a}.{b}.{v}.20");
    let plain = format!("{a}.{b}.{v}.21");
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);

    // node1's server certificate: the right CA and names, expired yesterday.
    let n1 = c.node(1);
    let expired_server = sign(
        &c.ca.dir,
        &[n1.name.clone(), "localhost".into(), n1.ip.to_string()],
        now - 30 * day,
        now - day,
    );
    std::fs::write(CertId::EtcdServer.cert_path(&n1.cert_dir), expired_server.0).unwrap();
    std::fs::write(CertId::EtcdServer.key_path(&n1.cert_dir), expired_server.1).unwrap();

    start_alone(&c, 0, &[format!("https://{uncovered}:2379")], false);
    start_alone(&c, 1, &[], false);
    start_alone(&c, 2, &[format!("http://{plain}:2379")], true);
    for n in 0..3 {
        wait_metrics_health(&c, n);
    }
    c.wait_healthy(0);

    let good = c.node(0).tls();
    let url = c.node(0).client_url();
    let report = health::check(&client(&url, &good)).await.unwrap();
    assert!(report.healthy, "{report:?}");

    // Another CA, as every kubeadm cluster has one: same subject ("etcd-ca"), other key.
    let other = TestCa::new(&c.dir.path().join("other-ca"));
    let other_pki = other.node_certs(&c.dir.path().join("other-pki"), "stranger", c.node(0).ip);
    let other_tls = EtcdTls::from_cert_dir(&other_pki);

    // The server's certificate is not signed by the CA we trust.
    let wrong_ca = good
        .clone()
        .with_overrides(Some(other_tls.ca.clone()), None, None);
    let message = refused(&url, &wrong_ca).await;
    assert_says(
        &message,
        &[
            "the etcd server's certificate is not signed by the CA this tool trusts",
            &other_tls.ca.display().to_string(),
            "--etcd-cafile",
        ],
    );

    // Our client certificate is signed by another CA: etcd refuses it, with an alert
    // (3.5.1) or, after the TLS 1.3 handshake, by closing the connection (3.4.23).
    let foreign_client = good.clone().with_overrides(
        None,
        Some(other_tls.cert.clone()),
        Some(other_tls.key.clone()),
    );
    let message = refused(&url, &foreign_client).await;
    assert_says(
        &message,
        &[
            "refuse",
            "client certificate",
            &other_tls.cert.display().to_string(),
            "--etcd-certfile",
        ],
    );

    // Our client certificate expired: refused before any connection, with the date.
    let (crt, key) = write_pair(
        &c.dir.path().join("expired-client"),
        "client",
        sign(&c.ca.dir, &["client".into()], now - 30 * day, now - day),
    );
    let err = EtcdClient::new(
        std::slice::from_ref(&url),
        &good
            .clone()
            .with_overrides(None, Some(crt.clone()), Some(key)),
        DEFAULT_RPC_TIMEOUT,
    )
    .unwrap_err();
    assert!(
        matches!(err, MembershipError::ClientCertificate { .. }),
        "{err}"
    );
    assert_says(
        &err.to_string(),
        &[&crt.display().to_string(), "expired on", "renew it"],
    );

    // The server's certificate expired.
    let message = refused(&c.node(1).client_url(), &good).await;
    assert_says(
        &message,
        &[
            "the etcd server presents an expired certificate",
            "renew that member's etcd/server certificate",
        ],
    );

    // The server's certificate does not list the address we connect to.
    let message = refused(&format!("https://{uncovered}:2379"), &good).await;
    assert_says(
        &message,
        &[
            "does not cover the address this tool connected to",
            &format!("\"{uncovered}\""),
        ],
    );

    // An https:// URL that leads to a plain-HTTP listener (the metrics port).
    let message = refused(&format!("https://{}:2381", c.node(0).ip), &good).await;
    assert_says(
        &message,
        &["the endpoint does not speak TLS", "plain-HTTP port"],
    );

    // A plain-HTTP URL is refused before any connection is made.
    for endpoint in [
        format!("http://{}:2379", c.node(0).ip),
        format!("{}:2379", c.node(0).ip),
    ] {
        let err = EtcdClient::new(std::slice::from_ref(&endpoint), &good, DEFAULT_RPC_TIMEOUT)
            .unwrap_err();
        assert!(matches!(err, MembershipError::NotHttps { .. }), "{err}");
        assert_says(
            &err.to_string(),
            &[&endpoint, "over TLS only", "https:// client URL"],
        );
    }

    // A member that advertises a plain-HTTP client URL: the join, reaching it over TLS,
    // refuses to use that URL rather than falling back to plaintext, and adds nothing.
    let n2 = c.node(2);
    let client2 = client(&n2.client_url(), &n2.tls());
    let err = join::add_learner(
        &client2,
        &JoinOptions {
            name: "never-joins".into(),
            peer_url: format!("https://{plain}:2380"),
            data_dir: c.dir.path().join("never-joins"),
            wipe_data_dir: false,
            replace: false,
            timeout: Duration::from_secs(5),
            dry_run: false,
        },
        &mut ignore_events(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, MembershipError::NotHttps { url } if url == &format!("http://{plain}:2379")),
        "{err}"
    );
    assert_eq!(client2.member_list().await.unwrap().members.len(), 1);
}

async fn tls_refusals_bounded(version: EtcdVersion) {
    tokio::time::timeout(Duration::from_secs(120), tls_refusals(version, 70))
        .await
        .expect("finished within 120 s");
}

crate::etcd_matrix!(async tls_problems_are_refused_with_a_diagnosis => tls_refusals_bounded);

// ---------------------------------------------------------------------------------------
// Issue 14: certificate renewal on a live member (test id 140).

/// `openssl s_client` against `addr` with the CA and a client certificate from
/// `cert_dir`, verifying the chain and the IP SAN: the served certificate's
/// `openssl x509 -serial -enddate` lines.
fn openssl_served(addr: SocketAddr, cert_dir: &Path) -> String {
    let tls = EtcdTls::from_cert_dir(cert_dir);
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(&tls.ca)
        .arg("-cert")
        .arg(&tls.cert)
        .arg("-key")
        .arg(&tls.key)
        .args(["-verify_return_error", "-verify_ip", &addr.ip().to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is installed");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("Verify return code: 0 (ok)"),
        "{addr}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut x509 = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-enddate"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin
        .take()
        .unwrap()
        .write_all(stdout.as_bytes())
        .unwrap();
    let parsed = x509.wait_with_output().unwrap();
    assert!(parsed.status.success());
    String::from_utf8(parsed.stdout).unwrap()
}

fn member_endpoints(
    members: &[phases::membership::status::MemberRow],
) -> Vec<phases::pki::served::MemberEndpoints> {
    members
        .iter()
        .map(|m| phases::pki::served::MemberEndpoints {
            label: phases::membership::member_label(m.id, &m.name),
            client_urls: m.client_urls.clone(),
            peer_urls: m.peer_urls.clone(),
        })
        .collect()
}

/// A member started (from its manifest) with an expired peer certificate: check-health's
/// reader of served certificates names it with the renew command. `renew all` then
/// writes certificates that `openssl verify` accepts, and etcd serves them on new
/// connections without a restart (it reads the files for every handshake,
/// `client/pkg/transport/listener.go`); after a restart from the same manifest it serves
/// them too, and the renewed healthcheck-client certificate is accepted.
async fn renewal_on_a_live_member(version: EtcdVersion) {
    use phases::pki::renew::{self, RenewOptions};
    use phases::pki::served;

    let c = TestCluster::new(version, 140, 1);
    let n0 = c.node(0);
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let sans = vec![n0.name.clone(), "localhost".into(), n0.ip.to_string()];
    write_pair(
        &n0.cert_dir.join("etcd"),
        "peer",
        sign(&c.ca.dir, &sans, now - 30 * day, now - day),
    );
    c.bootstrap();

    let report = health::check(&c.client(0, 0)).await.unwrap();
    assert!(report.healthy, "{report:?}");
    // The harness's certificates live one day: warn about the last hour only.
    let warn_within = std::time::Duration::from_secs(3600);
    let timeout = Duration::from_secs(2);
    let tls = n0.tls();
    let identity = served::ClientIdentity::load(&tls.ca, &tls.cert, &tls.key).unwrap();
    let warnings = served::served_certificate_warnings(
        &member_endpoints(&report.status.members),
        Some(&identity),
        time::OffsetDateTime::now_utc(),
        warn_within,
        timeout,
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    // With the client's credentials the handshakes complete and close cleanly: the
    // member logs no rejected connection (an aborted handshake would leave one).
    let log = c.log_tail(0);
    assert!(
        !log.to_lowercase().contains("rejected connection"),
        "{version}: {log}"
    );
    // Without them the certificate is read all the same.
    assert_eq!(
        served::served_certificate_warnings(
            &member_endpoints(&report.status.members),
            None,
            time::OffsetDateTime::now_utc(),
            warn_within,
            timeout,
        ),
        warnings
    );
    // ... by an aborted handshake, which the member does log (so the check above can
    // tell the two apart).
    let deadline = Instant::now() + Duration::from_secs(2);
    while !c.log_tail(0).to_lowercase().contains("rejected connection") {
        assert!(Instant::now() < deadline, "{version}: {}", c.log_tail(0));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_says(
        &warnings[0],
        &[
            "serves an expired peer certificate",
            &n0.peer_url(),
            "`kubeadm-etcd phase certs renew etcd-peer`",
        ],
    );

    let leaves: Vec<CertId> = CertId::ALL.into_iter().filter(|i| !i.is_ca()).collect();
    let renewed = renew::renew(
        &RenewOptions {
            cert_dir: n0.cert_dir.clone(),
            ca_dir: None,
            algorithm: Some(phases::config::EncryptionAlgorithm::EcdsaP256),
            validity: std::time::Duration::from_secs(86400),
            backup_root: c.dir.path().join("renew-backups"),
            now: time::OffsetDateTime::now_utc(),
        },
        &leaves,
        false,
    )
    .unwrap();
    let serial_of = |id: CertId| {
        let r = renewed.renewed.iter().find(|r| r.id == id).unwrap();
        format!("serial={}", r.serial)
    };
    let ca = CertId::EtcdCa.cert_path(&n0.cert_dir);
    for id in &leaves {
        let out = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&ca)
            .arg(id.cert_path(&n0.cert_dir))
            .output()
            .unwrap();
        assert!(out.status.success(), "{id:?}: {out:?}");
    }

    let check_served = |when: &str| {
        let client = SocketAddr::new(n0.ip, 2379);
        let peer = SocketAddr::new(n0.ip, 2380);
        let served_server = openssl_served(client, &n0.cert_dir);
        assert!(
            served_server.contains(&serial_of(CertId::EtcdServer)),
            "{when}: {served_server}"
        );
        let served_peer = openssl_served(peer, &n0.cert_dir);
        assert!(
            served_peer.contains(&serial_of(CertId::EtcdPeer)),
            "{when}: {served_peer}"
        );
        // Our own reader sees the same certificate.
        let der = served::served_certificate(&n0.peer_url(), Some(&identity), timeout).unwrap();
        assert_eq!(
            format!(
                "serial={}",
                renew::serial_hex(Path::new("served"), &der).unwrap()
            ),
            serial_of(CertId::EtcdPeer),
            "{when}"
        );
    };
    // No restart: a new handshake already gets the renewed certificates.
    check_served("before the restart");
    let report = health::check(&c.client(0, 0)).await.unwrap();
    let warnings = served::served_certificate_warnings(
        &member_endpoints(&report.status.members),
        Some(&identity),
        time::OffsetDateTime::now_utc(),
        warn_within,
        timeout,
    );
    assert_eq!(warnings, Vec::<String>::new());

    // Restarted from the same manifest, on the renewed files.
    c.kill(0);
    c.start(0);
    c.wait_healthy(0);
    check_served("after the restart");
    let report = health::check(&c.client(0, 0)).await.unwrap();
    assert!(report.healthy, "{report:?}");
}

async fn renewal_on_a_live_member_bounded(version: EtcdVersion) {
    tokio::time::timeout(Duration::from_secs(90), renewal_on_a_live_member(version))
        .await
        .expect("finished within 90 s");
}

crate::etcd_matrix!(async renewed_certificates_are_served => renewal_on_a_live_member_bounded);
