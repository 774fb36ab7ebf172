//! The harness itself, on real etcd: a TLS member started from a hand-written container
//! command (independent of the manifest renderer) is healthy for both our client and
//! etcdctl, and a paused member is reported as not answering.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    client_url, etcdctl, loopback_range, peer_url, run_ok_combined, ClientTls, EtcdProcess,
    EtcdVersion, TestCa,
};

/// The container command kubeadm would render for a first member, written out by hand.
fn hand_built_command(name: &str, ip: IpAddr, cert_dir: &Path, data_dir: &Path) -> Vec<String> {
    let c = |f: &str| cert_dir.join("etcd").join(f).display().to_string();
    [
        "etcd".to_string(),
        format!("--advertise-client-urls={}", client_url(ip)),
        format!("--cert-file={}", c("server.crt")),
        "--client-cert-auth=true".into(),
        format!("--data-dir={}", data_dir.display()),
        "--experimental-initial-corrupt-check=true".into(),
        "--experimental-watch-progress-notify-interval=5s".into(),
        format!("--initial-advertise-peer-urls={}", peer_url(ip)),
        format!("--initial-cluster={name}={}", peer_url(ip)),
        format!("--key-file={}", c("server.key")),
        format!(
            "--listen-client-urls=https://127.0.0.1:2379,{}",
            client_url(ip)
        ),
        "--listen-metrics-urls=http://127.0.0.1:2381".into(),
        format!("--listen-peer-urls={}", peer_url(ip)),
        format!("--name={name}"),
        format!("--peer-cert-file={}", c("peer.crt")),
        "--peer-client-cert-auth=true".into(),
        format!("--peer-key-file={}", c("peer.key")),
        format!("--peer-trusted-ca-file={}", c("ca.crt")),
        "--snapshot-count=10000".into(),
        format!("--trusted-ca-file={}", c("ca.crt")),
    ]
    .to_vec()
}

fn one_member(version: EtcdVersion, test_id: u8) {
    let etcd = common::require_etcd(version);
    common::require_etcdctl(version);
    let tmp = tempfile::tempdir().unwrap();
    let ip = IpAddr::V4(loopback_range(test_id)(0));
    let ca = TestCa::new(&tmp.path().join("ca"));
    let cert_dir = ca.node_certs(&tmp.path().join("node0/pki"), "node0", ip);
    let command = hand_built_command("node0", ip, &cert_dir, &tmp.path().join("node0/data"));

    let started = Instant::now();
    let mut member =
        EtcdProcess::start(&etcd, &command, ip, &tmp.path().join("node0/etcd.log")).unwrap();
    let tls = ClientTls::healthcheck(&cert_dir);
    let health = member
        .wait_healthy(&client_url(ip), &tls, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{version}: {e}"));
    eprintln!("{version}: healthy after {:?}", started.elapsed());
    assert_eq!(health.version, version.version());
    assert!(!health.is_learner);
    assert_eq!(
        health.leader, health.member_id,
        "a single member leads itself"
    );

    let out =
        run_ok_combined(etcdctl(version, &[client_url(ip)], &tls).args(["endpoint", "health"]));
    assert!(out.contains("is healthy"), "{out}");
    // The localhost listener moved to the member's own address, nothing else changed.
    assert!(member
        .command()
        .contains(&format!("--listen-client-urls={}", client_url(ip))));
    assert!(member
        .command()
        .contains(&format!("--listen-metrics-urls=http://{ip}:2381")));

    member.kill();
    assert!(!member.is_running());
}

#[test]
fn one_tls_member_is_healthy_on_etcd_3_4() {
    one_member(EtcdVersion::V3_4, 10);
}

#[test]
fn one_tls_member_is_healthy_on_etcd_3_5() {
    one_member(EtcdVersion::V3_5, 11);
}

#[test]
fn a_paused_member_times_out_and_resumes() {
    let version = EtcdVersion::V3_5;
    let etcd = common::require_etcd(version);
    let tmp = tempfile::tempdir().unwrap();
    let ip = IpAddr::V4(loopback_range(12)(0));
    let ca = TestCa::new(&tmp.path().join("ca"));
    let cert_dir = ca.node_certs(&tmp.path().join("pki"), "paused", ip);
    let command = hand_built_command("paused", ip, &cert_dir, &tmp.path().join("data"));
    let mut member = EtcdProcess::start(&etcd, &command, ip, &tmp.path().join("etcd.log")).unwrap();
    let tls = ClientTls::healthcheck(&cert_dir);
    member
        .wait_healthy(&client_url(ip), &tls, Duration::from_secs(20))
        .unwrap();

    member.pause();
    let err = member
        .wait_healthy(&client_url(ip), &tls, Duration::from_millis(1500))
        .unwrap_err();
    assert!(err.contains("was not healthy after"), "{err}");
    member.resume();
    member
        .wait_healthy(&client_url(ip), &tls, Duration::from_secs(10))
        .unwrap();
}

#[test]
fn an_unknown_flag_is_reported_with_the_log() {
    let version = EtcdVersion::V3_4;
    let etcd = common::require_etcd(version);
    let tmp = tempfile::tempdir().unwrap();
    // Never binds anything: etcd refuses the flag before it listens.
    let ip = IpAddr::V4(loopback_range(13)(0));
    let ca = TestCa::new(&tmp.path().join("ca"));
    let cert_dir = ca.node_certs(&tmp.path().join("pki"), "bad", ip);
    let command = vec!["etcd".to_string(), "--no-such-flag=1".to_string()];
    let mut member = EtcdProcess::start(&etcd, &command, ip, &tmp.path().join("etcd.log")).unwrap();
    let tls = ClientTls::healthcheck(&cert_dir);
    let err = member
        .wait_healthy(&client_url(ip), &tls, Duration::from_secs(10))
        .unwrap_err();
    assert!(err.contains("exited with"), "{err}");
    assert!(err.contains("flag provided but not defined"), "{err}");
    assert!(!member.is_running());
}

#[test]
fn localize_moves_only_the_localhost_listeners() {
    let own: IpAddr = "127.30.0.10".parse().unwrap();
    let command: Vec<String> = [
        "etcd",
        "--listen-client-urls=https://127.0.0.1:2379,https://127.30.0.10:2379",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--advertise-client-urls=https://127.0.0.1:2379",
        "--listen-peer-urls=https://127.30.0.10:2380",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        common::localize_command(&command, own),
        [
            "etcd",
            "--listen-client-urls=https://127.30.0.10:2379",
            "--listen-metrics-urls=http://127.30.0.10:2381",
            "--advertise-client-urls=https://127.0.0.1:2379",
            "--listen-peer-urls=https://127.30.0.10:2380",
        ]
    );
    let v6: IpAddr = "fd00::10".parse().unwrap();
    let command = vec![
        "etcd".to_string(),
        "--listen-metrics-urls=http://[::1]:2381/x".to_string(),
    ];
    assert_eq!(
        common::localize_command(&command, v6)[1],
        "--listen-metrics-urls=http://[fd00::10]:2381/x"
    );
}
