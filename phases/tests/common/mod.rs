//! Shared harness for the integration tests that run real etcd members.
//!
//! Use it from a test file with `mod common;`. What it gives:
//! - the etcd binaries ([`require_etcd`], [`require_etcdctl`]) of every release the tests
//!   know ([`versions`]: 3.4.23, 3.5.1, 3.5.16, 3.5.30, 3.6.14, 3.7.1), all installed by
//!   `hack/install-deps.sh`. A missing binary fails the test, with the version, where it
//!   was looked for and what to run: a test that did not run never shows as passed;
//! - the test matrix: `crate::etcd_matrix!(async name => |v| body(v))` makes one test per
//!   version of [`EtcdVersion::MATRIX`] (3.4.23, 3.5.30, 3.6.14, 3.7.1), named
//!   `name::etcd_3_4_23` and so on; the list is written once, in [`versions`];
//! - a private range of loopback addresses per test and version ([`loopback_range_for`])
//!   so that every member keeps kubeadm's standard ports 2379/2380/2381;
//! - certificates made by our own PKI phase, one shared CA per cluster ([`TestCa`]);
//! - members run the way the kubelet would run them, from a rendered Pod's container
//!   command ([`EtcdProcess`]), always killed when the test ends, even when it panics or
//!   the test process itself dies; and the kubelet's own behaviour (restarts, probes) in
//!   [`kubelet`], shared with `hack/kubelet-standin.rs` ([`cluster::TestCluster::run_kubelet`]);
//! - `etcdctl` preconfigured for independent checks ([`etcdctl`]).
//!
//! # Loopback ids
//!
//! Test `id` on etcd version `v` gets the addresses `127.<id>.<v.octet()>.<10 + n>`
//! (member `n`), see [`loopback_range_for`]; version-independent addresses use octet 0
//! ([`loopback_range`]). Cargo runs the tests of a file in parallel threads and tools like
//! nextest run files in parallel too, so every test function that starts members needs an
//! id of its own; the versions of one matrix test share it.
//! Registry (add yours here; never reuse an id):
//!
//! | id      | test                                                        |
//! |---------|-------------------------------------------------------------|
//! | 0       | never: 127.0.0.0/24 is the host's own (127.0.0.1)           |
//! | 10      | `etcd_smoke::one_tls_member_is_healthy_on_etcd_3_4`         |
//! | 11      | `etcd_smoke::one_tls_member_is_healthy_on_etcd_3_5`         |
//! | 12      | `etcd_smoke::a_paused_member_times_out_and_resumes`         |
//! | 13      | `etcd_smoke::an_unknown_flag_is_reported_with_the_log`      |
//! | 20      | `manifest_real_etcd::rendered_manifest_starts_etcd` (matrix)|
//! | 21      | `manifest_real_etcd::rendered_manifest_starts_etcd_3_5_{1,16}` |
//! | 22      | `manifest_real_etcd::external_bundle_forms_a_cluster` (matrix) |
//! | 24      | `manifest_real_etcd::moved_listeners_start_etcd_3_5`        |
//! | 25      | `manifest_real_etcd::a_manifest_for_another_release_fails`  |
//! | 30      | `etcd_smoke::localize_...` (no member is started)           |
//! | 60-67   | `faults` scenarios (matrix): 60, 62, 64, 66; 67 on 3.6.14   |
//! | 70      | `tls` (matrix)                                              |
//! | 72      | root `tests/faults_cli.rs` (matrix)                         |
//! | 74      | root `tests/secrets.rs`, membership commands at trace level |
//! | 80      | issue 13: `snapshot::save_restore_and_join_a_learner` (matrix) |
//! | 81      | free (was the 3.5.1 snapshot test)                          |
//! | 82      | issue 13: `snapshot::a_full_disk_leaves_no_partial_snapshot` |
//! | 83      | issue 13: root `tests/upgrade_cli.rs`, 3.4.23 → 3.5.30, a bad image |
//! | 84      | issue 13: root `tests/upgrade_cli.rs`, 3.5.30 → 3.6.14 → 3.7.1 |
//! | 85      | issue 13: root `tests/upgrade_cli.rs`, refused below 3.5.26 |
//! | 86      | issue 13: root `tests/upgrade_cli.rs`, 3.6.14 → 3.7.1 killed |
//! | 87      | issue 13: root `tests/upgrade_cli.rs`, v2 content refused for 3.6 |
//! | 100-114 | the learner lifecycle tests (`learner`; matrix ids even)    |
//! | 130-132 | `kubelet`: the stand-in's behaviour and the learner probes  |
//! | 140     | issue 14: `tls::renewed_certificates_are_served` (matrix)   |
//! | 141     | issue 14: root `tests/cli_certs.rs`, check-health and renew (3.6.14, 3.7.1) |
//! | 142-149 | issue 14 (certificates): reserved                           |
//! | 150-159 | issue 14, maintenance: `maintenance` 150 (defrag), 151 (alarms), 152 (leadership), each a matrix; root `tests/cli_maintenance.rs` 155 |
//! | 160     | issue 14: `replace::replace_a_dead_voter_of_three` (matrix) |
//! | 162     | issue 14: `replace::replace_refusals_change_nothing` (matrix) |
//! | 164     | issue 14: `replace::a_learner_that_never_starts_is_rolled_back` (matrix) |
//! | 166     | issue 14: root `tests/faults_cli.rs`, `replace_and_rollback_messages_and_exit_codes_etcd_3_6_14` |
//! | 167     | issue 14: root `tests/faults_cli.rs`, `replace_killed_between_removal_and_add_converges_etcd_3_6_14` |
//! | 168-169 | issue 14: reserved (`--replace`, `--rollback-on-timeout`)   |
//! | 170     | issue 15: `learner::a_learner_fed_a_snapshot_shows_its_bytes_arriving` (matrix) |
//! | 171     | issue 15: `learner::a_learner_starved_of_its_snapshot_stalls` (matrix) |
//! | 250     | never: `hack/local-cluster.sh` (127.250.0.11-13)            |
//! | 251     | never: `hack/bench_join.py` (127.251.0.11-12)               |

#![allow(dead_code)]

pub mod cluster;
mod etcd_process;
pub mod faults;
pub mod kubelet;
pub mod rng;
pub mod versions;

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use phases::config::EncryptionAlgorithm;
use phases::pki::{self, CertId, PkiConfig};

#[allow(unused_imports)]
pub use etcd_process::{check_health, EtcdProcess, Health};
#[allow(unused_imports)]
pub use kubelet::localize_command;

#[allow(unused_imports)]
pub use versions::{find_binary, repo_root, require, EtcdVersion, Tool};

/// etcd of version `v` if it is installed (checked with `--version`), for code that
/// reports rather than fails; tests call [`require_etcd`].
pub fn etcd_binary(v: EtcdVersion) -> Option<PathBuf> {
    find_binary(v, Tool::Etcd).ok()
}

/// etcdctl of version `v` if it is installed.
pub fn etcdctl_binary(v: EtcdVersion) -> Option<PathBuf> {
    find_binary(v, Tool::Etcdctl).ok()
}

/// etcd of version `v`: `$ETCD_<v>_BIN` or where `hack/install-deps.sh` puts it, checked
/// with `--version`. A missing binary fails the test (see [`versions::require`]).
pub fn require_etcd(v: EtcdVersion) -> PathBuf {
    require(v, Tool::Etcd)
}

/// etcdctl of version `v`; like [`require_etcd`].
pub fn require_etcdctl(v: EtcdVersion) -> PathBuf {
    require(v, Tool::Etcdctl)
}

/// The addresses of test `test_id` on etcd `version`: member `n` gets
/// `127.<test_id>.<version octet>.<10 + n>` (see [`EtcdVersion::octet`]), so the versions
/// of one matrix test never collide.
pub fn loopback_range_for(test_id: u8, version: EtcdVersion) -> impl Fn(u8) -> Ipv4Addr {
    assert_ne!(test_id, 0, "test id 0 would share 127.0.0.1 with the host");
    let octet = version.octet();
    move |n: u8| {
        assert!(n < 240, "member index {n} is out of range");
        Ipv4Addr::new(127, test_id, octet, 10 + n)
    }
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
/// Fails the test when that etcdctl is missing (see [`require_etcdctl`]).
pub fn etcdctl(v: EtcdVersion, endpoints: &[String], tls: &ClientTls) -> Command {
    let mut cmd = Command::new(require_etcdctl(v));
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
