//! No private key in any output: the binary at `-v 3` (trace logging) on its success and
//! error paths, and the `Debug` and `Display` forms of the library's errors and key type.
//!
//! "No key in the output" is checked against the material itself, in every encoding a
//! careless log line would use: the PEM armor, any 24-character run of a key file's
//! base64 body, any 16-byte run of its DER as hex or as a Rust byte slice, and any
//! 24-character run of a kubeconfig's `client-key-data` (base64 of the PEM). Runs that
//! are public (a private key file holds its public key too) are not counted.
//!
//! The armor is `-----BEGIN ... PRIVATE KEY-----`; the bare words may appear: a key
//! put where a certificate belongs is refused with `the PEM block is "PRIVATE KEY", not
//! CERTIFICATE`, which names the block's label, not its content.

// The binary lookup of the phases harness (fails the test when etcd is missing).
#[allow(dead_code)]
#[path = "../phases/tests/common/kubelet.rs"]
mod kubelet;
#[allow(dead_code)]
#[path = "../phases/tests/common/versions.rs"]
mod versions;

#[path = "../phases/tests/common/output.rs"]
mod output;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use phases::config::EncryptionAlgorithm;
use phases::pki::{ensure_certificates, CertId, PkiConfig};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn config(name: &str) -> PathBuf {
    repo().join("testdata/config").join(name)
}

/// Runs the binary at trace level with a bound on its run time.
fn kubeadm_etcd(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubeadm-etcd"));
    cmd.args(["-v", "3"])
        .args(args)
        // The log filter must come from -v, not from the environment of whoever runs this.
        .env_remove("KUBEADM_ETCD_LOG")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let limit = Duration::from_secs(90);
    output::output_within(&mut cmd, limit).unwrap_or_else(|out| {
        panic!(
            "kubeadm-etcd {args:?} did not finish in {limit:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The DER of every block of `pem`, one after the other: a key file can hold more than
/// one block (Go writes an EC key's parameters before it), each padded on its own.
fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let mut der = Vec::new();
    let mut block = String::new();
    for line in pem.lines().map(str::trim) {
        if line.starts_with("-----END ") {
            der.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(&block)
                    .expect("base64"),
            );
            block.clear();
        } else if !line.starts_with("-----") {
            block.push_str(line);
        }
    }
    der
}

fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

fn windows(s: &str, len: usize) -> impl Iterator<Item = &str> {
    (0..s.len().saturating_sub(len - 1)).map(move |i| &s[i..i + len])
}

/// Secret material and the forms in which it must never show.
#[derive(Default)]
struct Secrets {
    needles: Vec<(String, String)>,
    /// 16-byte runs of public material (certificates, public keys): a private key file
    /// holds its public key too (the EC point, the RSA modulus), and printing that is fine.
    public: std::collections::HashSet<Vec<u8>>,
}

impl Secrets {
    fn add_public(&mut self, der: &[u8]) {
        self.public.extend(der.windows(16).map(<[u8]>::to_vec));
    }

    /// The certificates of a directory, as public material.
    fn add_public_cert_dir(&mut self, dir: &Path) {
        for id in CertId::ALL {
            if let Ok(pem) = std::fs::read_to_string(id.cert_path(dir)) {
                self.add_public(&pem_der(&pem));
            }
        }
    }

    /// A PEM private key, as its base64 body, and the private runs of its DER as hex and
    /// as a byte-slice Debug.
    fn add_key_pem(&mut self, what: &str, pem: &str) {
        let body = pem_body(pem);
        for w in windows(&body, 24) {
            self.needles
                .push((format!("{what}: base64"), w.to_string()));
        }
        let der = pem_der(pem);
        for w in der.windows(16).filter(|w| !self.public.contains(*w)) {
            let hex: String = w.iter().map(|b| format!("{b:02x}")).collect();
            self.needles
                .push((format!("{what}: hex"), hex.to_ascii_uppercase()));
            self.needles.push((format!("{what}: hex"), hex));
            let debug = format!("{w:?}");
            self.needles.push((
                format!("{what}: byte slice"),
                debug[1..debug.len() - 1].to_string(),
            ));
        }
    }

    fn add_key_file(&mut self, path: &Path) {
        let pem = std::fs::read_to_string(path).unwrap();
        self.add_key_pem(&path.display().to_string(), &pem);
    }

    /// Every key under a certificate directory.
    fn add_cert_dir(&mut self, dir: &Path) {
        self.add_public_cert_dir(dir);
        for id in CertId::ALL {
            let key = id.key_path(dir);
            if key.exists() {
                self.add_key_file(&key);
            }
        }
    }

    fn add_text(&mut self, what: &str, secret: &str, window: usize) {
        for w in windows(secret, window.min(secret.len())) {
            self.needles.push((what.to_string(), w.to_string()));
        }
    }

    fn assert_absent(&self, output: &str, context: &str) {
        assert!(!self.needles.is_empty(), "{context}: no secret to look for");
        assert!(
            !output.contains("PRIVATE KEY-----"),
            "{context}: a PEM private key block in the output:\n{output}"
        );
        for (what, needle) in &self.needles {
            assert!(
                !output.contains(needle.as_str()),
                "{context}: {what} ({needle:?}) in the output:\n{output}"
            );
        }
    }
}

fn output_text(out: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn certs_all(cert_dir: &Path, config_name: &str) -> Output {
    kubeadm_etcd(
        &[
            "phase",
            "certs",
            "all",
            "--config",
            config(config_name).to_str().unwrap(),
            "--cert-dir",
            cert_dir.to_str().unwrap(),
        ],
        &[],
    )
}

/// Generation and reuse, RSA and ECDSA, at trace level.
#[test]
fn certs_all_at_trace_level_prints_no_key() {
    for config_name in ["v1beta4-ipv4.yaml", "v1beta4-ecdsa-p256.yaml"] {
        let dir = tempfile::tempdir().unwrap();
        let cert_dir = dir.path().join("pki");
        let generated = certs_all(&cert_dir, config_name);
        assert!(generated.status.success(), "{}", output_text(&generated));
        let mut secrets = Secrets::default();
        secrets.add_cert_dir(&cert_dir);
        secrets.assert_absent(&output_text(&generated), config_name);

        let reused = certs_all(&cert_dir, config_name);
        assert!(reused.status.success(), "{}", output_text(&reused));
        secrets.assert_absent(&output_text(&reused), &format!("{config_name}, rerun"));
    }
}

/// `check-expiration` and `renew` (issue 14) at trace level: neither the old keys nor
/// the new ones, nor the backed-up ones, appear.
#[test]
fn renew_and_check_expiration_at_trace_level_print_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("pki");
    let backups = dir.path().join("backups");
    let made = certs_all(&cert_dir, "v1beta4-ecdsa-p256.yaml");
    assert!(made.status.success(), "{}", output_text(&made));
    let mut secrets = Secrets::default();
    secrets.add_cert_dir(&cert_dir);
    let pki = cert_dir.to_str().unwrap();
    let renew = kubeadm_etcd(
        &[
            "phase",
            "certs",
            "renew",
            "all",
            "--config",
            config("v1beta4-ecdsa-p256.yaml").to_str().unwrap(),
            "--cert-dir",
            pki,
            "--backup-dir",
            backups.to_str().unwrap(),
        ],
        &[],
    );
    assert!(renew.status.success(), "{}", output_text(&renew));
    secrets.add_cert_dir(&cert_dir);
    secrets.assert_absent(&output_text(&renew), "renew all");
    for format in ["text", "json", "yaml"] {
        let check = kubeadm_etcd(
            &[
                "phase",
                "certs",
                "check-expiration",
                "--cert-dir",
                pki,
                "-o",
                format,
            ],
            &[],
        );
        assert!(check.status.success(), "{}", output_text(&check));
        secrets.assert_absent(
            &output_text(&check),
            &format!("check-expiration -o {format}"),
        );
    }
    // Refused (no CA key): the error path prints no key either.
    std::fs::remove_file(CertId::EtcdCa.key_path(&cert_dir)).unwrap();
    let refused = kubeadm_etcd(
        &["phase", "certs", "renew", "etcd-peer", "--cert-dir", pki],
        &[],
    );
    assert_eq!(refused.status.code(), Some(1));
    secrets.assert_absent(&output_text(&refused), "renew refused");
}

/// A good certificate directory, kept as the reference for the damaged copies.
fn good_pki(root: &Path) -> PathBuf {
    let cert_dir = root.join("good");
    let cfg = phases::config::load_file(&config("v1beta4-ecdsa-p256.yaml")).unwrap();
    ensure_certificates(
        &PkiConfig::from_kubeadm(&cfg, cert_dir.clone()),
        &CertId::ALL,
        false,
    )
    .unwrap();
    cert_dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("etcd")).unwrap();
    for id in CertId::ALL {
        for (f, t) in [
            (id.key_path(from), id.key_path(to)),
            (id.cert_path(from), id.cert_path(to)),
        ] {
            std::fs::copy(&f, &t).unwrap();
        }
    }
}

/// Replaces one base64 character in the middle of a PEM's body.
fn corrupt_middle(pem: &str) -> String {
    let start = pem.find('\n').unwrap() + 1;
    let at = start + (pem.len() - start) / 2;
    let mut bytes = pem.as_bytes().to_vec();
    let i = (at..bytes.len())
        .find(|i| bytes[*i].is_ascii_alphanumeric())
        .unwrap();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// Every error path of the certificate phase that touches a key, at trace level: the
/// error and everything logged before it carry no key material, neither of the damaged
/// file nor of the good keys around it.
#[test]
fn certificate_errors_at_trace_level_print_no_key() {
    let root = tempfile::tempdir().unwrap();
    let good = good_pki(root.path());
    let key = |id: CertId| std::fs::read_to_string(id.key_path(&good)).unwrap();
    let cert = |id: CertId| std::fs::read_to_string(id.cert_path(&good)).unwrap();
    let server_key = CertId::EtcdServer.key_path(Path::new(""));
    let server_crt = CertId::EtcdServer.cert_path(Path::new(""));
    let ca_key = CertId::EtcdCa.key_path(Path::new(""));
    let server_pem = key(CertId::EtcdServer);
    let half = &server_pem[..server_pem.len() / 2];

    // (name, file to change relative to the certificate directory, new content or None to
    // remove it, what the error must say)
    let cases: Vec<(&str, PathBuf, Option<String>, &str)> = vec![
        (
            "a corrupted key",
            server_key.clone(),
            Some(corrupt_middle(&server_pem)),
            "not a usable private key",
        ),
        (
            "a truncated key",
            server_key.clone(),
            Some(half.to_string()),
            "not a usable private key",
        ),
        (
            "a key with trailing garbage",
            server_key.clone(),
            Some(format!("{server_pem}garbage\n")),
            "",
        ),
        (
            "a key of another certificate",
            server_key.clone(),
            Some(key(CertId::EtcdPeer)),
            "does not belong to the certificate",
        ),
        (
            "a certificate where the key belongs",
            server_key.clone(),
            Some(cert(CertId::EtcdServer)),
            "not a usable private key",
        ),
        (
            "a key where the certificate belongs",
            server_crt.clone(),
            Some(server_pem.clone()),
            "not a valid PEM certificate",
        ),
        (
            "a key and its certificate in one file",
            server_crt.clone(),
            Some(format!("{server_pem}{}", cert(CertId::EtcdServer))),
            "",
        ),
        ("half a pair", server_crt.clone(), None, "exists but"),
        (
            "a CA key of another CA",
            ca_key.clone(),
            Some(key(CertId::EtcdPeer)),
            "does not belong to the certificate",
        ),
        (
            "a corrupted CA key",
            ca_key.clone(),
            Some(corrupt_middle(&key(CertId::EtcdCa))),
            "not a usable private key",
        ),
    ];
    for (name, file, content, expected) in cases {
        let cert_dir = root.path().join(name.replace(' ', "-"));
        copy_dir(&good, &cert_dir);
        let target = cert_dir.join(&file);
        match &content {
            Some(c) => std::fs::write(&target, c).unwrap(),
            None => std::fs::remove_file(&target).unwrap(),
        }
        let out = certs_all(&cert_dir, "v1beta4-ecdsa-p256.yaml");
        let text = output_text(&out);
        if !expected.is_empty() {
            assert!(!out.status.success(), "{name}: {text}");
            assert!(text.contains(expected), "{name}: {text}");
        }
        let mut secrets = Secrets::default();
        secrets.add_cert_dir(&good);
        if let Some(c) = content.filter(|c| c.contains("PRIVATE KEY")) {
            secrets.add_key_pem(&format!("{name}: the damaged file"), &c);
        }
        secrets.assert_absent(&text, name);
    }
}

/// `Debug` and `Display` of what the library hands out: the key type (rcgen's KeyPair,
/// which the library's structs hold) and the errors of every key-related path.
#[test]
fn library_errors_and_keys_do_not_print_key_material() {
    for algorithm in [EncryptionAlgorithm::EcdsaP256, EncryptionAlgorithm::Rsa2048] {
        let key = phases::pki::generate_key(algorithm).unwrap();
        let mut secrets = Secrets::default();
        secrets.add_public(key.public_key_raw());
        secrets.add_key_pem(&format!("{algorithm} key"), &key.serialize_pem());
        secrets.assert_absent(&format!("{key:?}\n{key:#?}"), "KeyPair Debug");
    }

    let root = tempfile::tempdir().unwrap();
    let good = good_pki(root.path());
    let cfg = phases::config::load_file(&config("v1beta4-ecdsa-p256.yaml")).unwrap();
    let server_pem = std::fs::read_to_string(CertId::EtcdServer.key_path(&good)).unwrap();
    let peer_pem = std::fs::read_to_string(CertId::EtcdPeer.key_path(&good)).unwrap();
    for (name, content) in [
        ("corrupted", corrupt_middle(&server_pem)),
        ("truncated", server_pem[..server_pem.len() / 2].to_string()),
        ("mismatched", peer_pem),
    ] {
        let cert_dir = root.path().join(name);
        copy_dir(&good, &cert_dir);
        std::fs::write(CertId::EtcdServer.key_path(&cert_dir), &content).unwrap();
        let err = ensure_certificates(
            &PkiConfig::from_kubeadm(&cfg, cert_dir.clone()),
            &CertId::ALL,
            false,
        )
        .unwrap_err();
        let mut text = format!("{err}\n{err:?}\n{err:#?}\n");
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text.push_str(&format!("{s}\n{s:?}\n"));
            source = s.source();
        }
        let mut secrets = Secrets::default();
        secrets.add_cert_dir(&good);
        secrets.add_key_pem(name, &content);
        secrets.assert_absent(&text, &format!("PkiError for a {name} key"));
    }
}

/// A kubeconfig for `server` trusting `ca_crt`; `user` is the indented body of the user.
fn write_kubeconfig(path: &Path, server: &str, ca_crt: &str, user: &str) -> PathBuf {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n{user}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            base64_encode(ca_crt.as_bytes())
        ),
    )
    .unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_path_buf()
}

/// The library's kube client errors, `Debug` included, for kubeconfigs whose client key
/// is damaged, badly encoded or in the wrong field.
#[test]
fn kube_client_errors_do_not_print_key_material() {
    let root = tempfile::tempdir().unwrap();
    let pki = good_pki(root.path());
    let key = std::fs::read_to_string(CertId::ApiserverEtcdClient.key_path(&pki)).unwrap();
    let crt = std::fs::read_to_string(CertId::ApiserverEtcdClient.cert_path(&pki)).unwrap();
    let ca = std::fs::read_to_string(CertId::EtcdCa.cert_path(&pki)).unwrap();
    let corrupted = corrupt_middle(&key);
    let key_data = base64_encode(key.as_bytes());
    let bad_base64 = format!(
        "{}!{}",
        &key_data[..key_data.len() / 2],
        &key_data[key_data.len() / 2..]
    );
    let user = |cert: &str, key: &str| {
        format!("    client-certificate-data: {cert}\n    client-key-data: {key}\n")
    };
    let b64 = |s: &str| base64_encode(s.as_bytes());

    let mut secrets = Secrets::default();
    secrets.add_public_cert_dir(&pki);
    secrets.add_key_pem("client key", &key);
    secrets.add_key_pem("corrupted client key", &corrupted);
    secrets.add_text("client-key-data", &key_data, 24);
    secrets.add_text("corrupted client-key-data", &b64(&corrupted), 24);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut errors = 0;
    for (name, user) in [
        ("corrupted key", user(&b64(&crt), &b64(&corrupted))),
        ("key data that is not base64", user(&b64(&crt), &bad_base64)),
        ("key and certificate swapped", user(&key_data, &b64(&crt))),
        ("the key as the certificate", user(&key_data, &key_data)),
    ] {
        let path = write_kubeconfig(
            &root.path().join(name.replace(' ', "-")),
            "https://127.0.0.1:1",
            &ca,
            &user,
        );
        let result = runtime.block_on(phases::kube::client_from_kubeconfig(Some(&path)));
        let Err(err) = result else { continue };
        errors += 1;
        let mut text = format!("{err}\n{err:?}\n{err:#?}\n");
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text.push_str(&format!("{s}\n{s:?}\n"));
            source = s.source();
        }
        secrets.assert_absent(&text, name);
    }
    assert!(
        errors >= 2,
        "the damaged kubeconfigs were refused: {errors}"
    );
}

/// `phase upgrade migrate-feature-gates` at trace level: offline with a kubeconfig in the
/// environment it must not touch, and live against endpoints that fail in different
/// ways, with a kubeconfig holding a client key and one holding a bearer token.
#[test]
fn migrate_feature_gates_at_trace_level_prints_no_key_or_token() {
    let root = tempfile::tempdir().unwrap();
    let pki = good_pki(root.path());
    let client_key = std::fs::read_to_string(CertId::ApiserverEtcdClient.key_path(&pki)).unwrap();
    let client_crt = std::fs::read_to_string(CertId::ApiserverEtcdClient.cert_path(&pki)).unwrap();
    let ca_crt = std::fs::read_to_string(CertId::EtcdCa.cert_path(&pki)).unwrap();
    let token = "kubeadm-etcd-test-token.0123456789abcdef0123456789abcdef";

    let kubeconfig = |name: &str, server: &str, user: &str| {
        write_kubeconfig(&root.path().join(name), server, &ca_crt, user)
    };
    let client_key_data = base64_encode(client_key.as_bytes());
    let cert_user = format!(
        "    client-certificate-data: {}\n    client-key-data: {client_key_data}\n",
        base64_encode(client_crt.as_bytes())
    );
    let bad_key = corrupt_middle(&client_key);
    let bad_key_data = base64_encode(bad_key.as_bytes());
    let bad_key_user = format!(
        "    client-certificate-data: {}\n    client-key-data: {bad_key_data}\n",
        base64_encode(client_crt.as_bytes())
    );
    let token_user = format!("    token: {token}\n");

    let mut secrets = Secrets::default();
    secrets.add_public_cert_dir(&pki);
    secrets.add_key_pem("client key", &client_key);
    secrets.add_key_pem("corrupted client key", &bad_key);
    secrets.add_text("client-key-data", &client_key_data, 24);
    secrets.add_text("corrupted client-key-data", &bad_key_data, 24);
    secrets.add_text("bearer token", token, 16);

    // A port nothing listens on, and one that answers TLS with plain HTTP.
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let garbage = TcpListener::bind("127.0.0.1:0").unwrap();
    let garbage_port = garbage.local_addr().unwrap().port();
    garbage.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match garbage.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                        let _ = s.read(&mut [0u8; 1024]);
                        let _ =
                            s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
    };

    let offline_kubeconfig = kubeconfig("offline.conf", "https://127.0.0.1:1", &cert_user);
    let from_file = repo().join("testdata/upgrade/v1beta3-with-gates.yaml");
    let offline = kubeadm_etcd(
        &[
            "phase",
            "upgrade",
            "migrate-feature-gates",
            "--target-version",
            "v1.33.0",
            "--from-file",
            from_file.to_str().unwrap(),
        ],
        &[("KUBECONFIG", &offline_kubeconfig)],
    );
    assert!(offline.status.success(), "{}", output_text(&offline));
    secrets.assert_absent(&output_text(&offline), "offline");

    for (name, server_url, user) in [
        (
            "client key, refused",
            format!("https://127.0.0.1:{refused}"),
            &cert_user,
        ),
        (
            "client key, not TLS",
            format!("https://127.0.0.1:{garbage_port}"),
            &cert_user,
        ),
        (
            "corrupted client key",
            format!("https://127.0.0.1:{refused}"),
            &bad_key_user,
        ),
        (
            "token, not TLS",
            format!("https://127.0.0.1:{garbage_port}"),
            &token_user,
        ),
        (
            "token, plain HTTP",
            format!("http://127.0.0.1:{garbage_port}"),
            &token_user,
        ),
    ] {
        let path = kubeconfig(
            &format!("{}.conf", name.replace([' ', ','], "-")),
            &server_url,
            user,
        );
        let out = kubeadm_etcd(
            &[
                "phase",
                "upgrade",
                "migrate-feature-gates",
                "--target-version",
                "v1.33.0",
                "--kubeconfig",
                path.to_str().unwrap(),
            ],
            &[],
        );
        let text = output_text(&out);
        assert!(!out.status.success(), "{name}: {text}");
        secrets.assert_absent(&text, name);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
}

/// The detector itself: a key printed in any of the forms above is found, its public
/// half is not taken for it.
#[test]
fn the_detector_finds_a_key_in_every_form() {
    let key = phases::pki::generate_key(EncryptionAlgorithm::EcdsaP256).unwrap();
    let pem = key.serialize_pem();
    let der = key.serialize_der();
    let mut secrets = Secrets::default();
    secrets.add_public(key.public_key_raw());
    secrets.add_key_pem("key", &pem);
    let body = pem_body(&pem);
    // The private scalar of a PKCS#8 P-256 key sits after a fixed 36-byte header.
    let scalar = &der[36..68];
    let hex: String = scalar.iter().map(|b| format!("{b:02x}")).collect();
    for leak in [
        pem.clone(),
        format!("error: bad key {}", &body[30..60]),
        format!("trace: key bytes {hex}"),
        format!("trace: key bytes {}", hex.to_uppercase()),
        format!("debug: {:?}", scalar),
    ] {
        let found = std::panic::catch_unwind(|| secrets.assert_absent(&leak, "control"));
        assert!(found.is_err(), "not detected: {leak}");
    }
    secrets.assert_absent(&format!("{key:?}"), "the public key alone");
    secrets.assert_absent(
        &format!(
            "public key {}",
            key.public_key_raw()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
        "the public key alone",
    );
}

/// Kills the member when dropped, also when an assertion fails.
struct Member(std::process::Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The membership commands load the healthcheck-client key for TLS to etcd: at trace
/// level, on success and on the error paths (a foreign CA, an unreachable endpoint), no
/// key material appears. Against a real etcd 3.4.23 member started from the manifest
/// `kubeadm-etcd init` wrote. Address 127.74.0.11, registered in
/// phases/tests/common/mod.rs.
#[test]
fn membership_commands_at_trace_level_print_no_key() {
    let etcd = versions::require(versions::EtcdVersion::V3_4_23, versions::Tool::Etcd);
    let ip = "127.74.0.11";
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cfg = root.join("kubeadm.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nnodeRegistration: {{name: secrets}}\n\
             localAPIEndpoint: {{advertiseAddress: {ip}}}\n---\napiVersion: kubeadm.k8s.io/v1beta4\n\
             kind: ClusterConfiguration\ncertificatesDir: {pki}\netcd:\n  local:\n    dataDir: {data}\n    imageTag: 3.4.23-0\n",
            pki = root.join("pki").display(),
            data = root.join("data").display(),
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let manifests = root.join("manifests");
    let init = kubeadm_etcd(
        &[
            "init",
            "--config",
            cfg,
            "--manifest-dir",
            manifests.to_str().unwrap(),
        ],
        &[],
    );
    assert!(init.status.success(), "{}", output_text(&init));

    // Run the member as the kubelet would, from the manifest; its localhost listeners move
    // to its own address, since 127.0.0.1 is shared with every other test.
    let manifest: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(manifests.join("etcd.yaml")).unwrap())
            .unwrap();
    let command: Vec<String> = manifest["spec"]["containers"][0]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let command = kubelet::localize_command(&command, ip.parse().unwrap()).split_off(1);
    let log = std::fs::File::create(root.join("etcd.log")).unwrap();
    let _member = Member(
        Command::new(etcd)
            .args(&command)
            .env_clear()
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    let endpoint = format!("https://{ip}:2379");
    let mut secrets = Secrets::default();
    secrets.add_cert_dir(&root.join("pki"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = kubeadm_etcd(
            &[
                "phase",
                "etcd",
                "check-health",
                "--config",
                cfg,
                "--endpoints",
                &endpoint,
            ],
            &[],
        );
        secrets.assert_absent(&output_text(&health), "check-health");
        if health.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "etcd did not become healthy in 30s: {}\n{}",
            output_text(&health),
            std::fs::read_to_string(root.join("etcd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let status = kubeadm_etcd(
        &[
            "phase",
            "etcd",
            "status",
            "--config",
            cfg,
            "--endpoints",
            &endpoint,
            "-o",
            "json",
        ],
        &[],
    );
    assert!(status.status.success(), "{}", output_text(&status));
    secrets.assert_absent(&output_text(&status), "status");

    // Removing a member that is not there: idempotent, and it walks the member list.
    let remove = kubeadm_etcd(
        &[
            "phase",
            "etcd",
            "remove-member",
            "--config",
            cfg,
            "--endpoints",
            &endpoint,
            "--id",
            "1234abcd",
        ],
        &[],
    );
    secrets.assert_absent(&output_text(&remove), "remove-member");

    // TLS refused: a CA that did not sign the server's certificate.
    let other = root.join("other-pki");
    let other_certs = kubeadm_etcd(
        &[
            "phase",
            "certs",
            "etcd-ca",
            "--cert-dir",
            other.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        other_certs.status.success(),
        "{}",
        output_text(&other_certs)
    );
    secrets.add_cert_dir(&other);
    let refused = kubeadm_etcd(
        &[
            "phase",
            "etcd",
            "status",
            "--config",
            cfg,
            "--endpoints",
            &endpoint,
            "--etcd-cafile",
            CertId::EtcdCa.cert_path(&other).to_str().unwrap(),
        ],
        &[],
    );
    assert!(!refused.status.success(), "{}", output_text(&refused));
    secrets.assert_absent(&output_text(&refused), "status with a foreign CA");

    // An endpoint nobody listens on.
    let unreachable = kubeadm_etcd(
        &[
            "phase",
            "etcd",
            "check-health",
            "--config",
            cfg,
            "--endpoints",
            "https://127.74.0.99:2379",
        ],
        &[],
    );
    assert!(!unreachable.status.success());
    secrets.assert_absent(&output_text(&unreachable), "check-health, unreachable");
}
