//! The rendered manifest runs: its container command starts real etcd 3.4.23 and 3.5.1
//! (a flag the release does not know makes etcd exit, failing the test), the member is
//! healthy over TLS with our certificates, and the probes' paths answer. The external
//! bundle's three manifests form one healthy TLS cluster.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    client_url, etcdctl, loopback_range, loopback_range_for, run_ok, run_ok_combined, ClientTls,
    EtcdProcess, EtcdVersion, TestCa,
};
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use phases::config;
use phases::manifest::{self, BundleHost, BundleOptions, BundlePaths, ManifestOptions};

/// Rendered as kubeadm v1.30 renders it: the probes these tests ask of the real etcd
/// (3.4.23, 3.5.1) are the `/health` ones kubeadm wrote up to 1.30; from 1.31 kubeadm
/// probes `/livez` and `/readyz`, which etcd serves only from 3.5.11.
fn node_config(
    version: EtcdVersion,
    name: &str,
    ip: IpAddr,
    data_dir: &Path,
    extra_args: &str,
) -> config::KubeadmConfig {
    let text = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  name: {name}
localAPIEndpoint:
  advertiseAddress: {ip}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: {kubernetes}
etcd:
  local:
    imageTag: {tag}
    dataDir: {data}
{extra_args}",
        tag = version.image_tag(),
        data = data_dir.display(),
        kubernetes = version.kubernetes_version(),
    );
    config::load_str(&text, None).unwrap()
}

fn container_command(pod: &Pod) -> Vec<String> {
    pod.spec.as_ref().unwrap().containers[0]
        .command
        .clone()
        .unwrap()
}

/// GETs a probe's path the way the kubelet would (plain HTTP), but on `host`: the
/// harness moved the member's localhost listeners to its own address.
/// GETs the probe's path as the kubelet would; a named port (kubeadm 1.34+) resolves through
/// the container's `ports`.
fn probe_answers(probe: &Probe, container: &Container, host: IpAddr) -> Result<(), String> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let get = probe.http_get.as_ref().unwrap();
    let port = match &get.port {
        IntOrString::Int(p) => *p as u16,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port as u16)
            .ok_or_else(|| format!("the probe's port {name:?} is not a port of the container"))?,
    };
    let path = get.path.as_deref().unwrap();
    let mut stream = TcpStream::connect_timeout(&(host, port).into(), Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!(
            "GET {path}: {}",
            response.lines().next().unwrap_or_default()
        ))
    }
}

fn rendered_manifest_starts(version: EtcdVersion, test_id: u8) {
    let etcd = common::require_etcd(version);
    common::require_etcdctl(version);
    let tmp = tempfile::tempdir().unwrap();
    let ip = IpAddr::V4(loopback_range_for(test_id, version)(0));
    let ca = TestCa::new(&tmp.path().join("ca"));
    let cert_dir = ca.node_certs(&tmp.path().join("pki"), "cp-0", ip);
    let cfg = node_config(version, "cp-0", ip, &tmp.path().join("data"), "");
    let pod = manifest::etcd_pod(&cfg, &ManifestOptions::first_member(cert_dir.clone())).unwrap();
    let command = container_command(&pod);
    // The flags whose spelling depends on the release are really there: etcd 3.6
    // graduated them (and 3.7 removed every --experimental-* flag).
    if version >= EtcdVersion::V3_6_14 {
        assert!(command.contains(&"--feature-gates=InitialCorruptCheck=true".to_string()));
        assert!(command.contains(&"--watch-progress-notify-interval=5s".to_string()));
        let experimental: Vec<&String> = command
            .iter()
            .filter(|a| a.starts_with("--experimental-"))
            .collect();
        assert!(experimental.is_empty(), "{version}: {experimental:?}");
    } else {
        assert!(command.contains(&"--experimental-initial-corrupt-check=true".to_string()));
        assert!(command.contains(&"--experimental-watch-progress-notify-interval=5s".to_string()));
    }

    let started = Instant::now();
    let mut member = EtcdProcess::start(&etcd, &command, ip, &tmp.path().join("etcd.log")).unwrap();
    let tls = ClientTls::healthcheck(&cert_dir);
    let health = member
        .wait_healthy(&client_url(ip), &tls, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{version}: {e}"));
    eprintln!("{version}: healthy after {:?}", started.elapsed());
    assert_eq!(health.version, version.version());

    let out =
        run_ok_combined(etcdctl(version, &[client_url(ip)], &tls).args(["endpoint", "health"]));
    assert!(out.contains("is healthy"), "{out}");
    // The apiserver's client certificate works too.
    let apiserver = ClientTls::apiserver(&cert_dir);
    run_ok(etcdctl(version, &[client_url(ip)], &apiserver).args(["put", "/registry/x", "y"]));

    let container = &pod.spec.as_ref().unwrap().containers[0];
    for probe in [
        &container.liveness_probe,
        &container.startup_probe,
        &container.readiness_probe,
    ]
    .into_iter()
    .flatten()
    {
        probe_answers(probe, container, ip)
            .unwrap_or_else(|e| panic!("{version}: {e}\n{}", member.log_tail(20)));
    }
}

crate::etcd_matrix!(rendered_manifest_starts_etcd => |v| rendered_manifest_starts(v, 20));

// The releases outside the matrix that tests still use: 3.5.1 (benchmarks, the dead
// learner promotion) and 3.5.16 (before /readyz refused learners).
#[test]
fn rendered_manifest_starts_etcd_3_5_1() {
    rendered_manifest_starts(EtcdVersion::V3_5_1, 21);
}

#[test]
fn rendered_manifest_starts_etcd_3_5_16() {
    rendered_manifest_starts(EtcdVersion::V3_5_16, 21);
}

#[test]
fn moved_listeners_start_etcd_3_5() {
    let version = EtcdVersion::V3_5;
    let etcd = common::require_etcd(version);
    let tmp = tempfile::tempdir().unwrap();
    let ip = IpAddr::V4(loopback_range(24)(0));
    let ca = TestCa::new(&tmp.path().join("ca"));
    let cert_dir = ca.node_certs(&tmp.path().join("pki"), "cp-0", ip);
    let extra = format!(
        "    extraArgs:\n    - name: listen-client-urls\n      value: https://{ip}:2379\n    - name: listen-metrics-urls\n      value: http://{ip}:2391\n"
    );
    let cfg = node_config(version, "cp-0", ip, &tmp.path().join("data"), &extra);
    let pod = manifest::etcd_pod(&cfg, &ManifestOptions::first_member(cert_dir.clone())).unwrap();
    let command = container_command(&pod);
    assert!(command.contains(&format!("--listen-metrics-urls=http://{ip}:2391")));
    let mut member = EtcdProcess::start(&etcd, &command, ip, &tmp.path().join("etcd.log")).unwrap();
    // Nothing was left for the harness to move.
    assert_eq!(member.command(), &command[..]);
    member
        .wait_healthy(
            &client_url(ip),
            &ClientTls::healthcheck(&cert_dir),
            Duration::from_secs(20),
        )
        .unwrap();
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let liveness = container.liveness_probe.as_ref().unwrap();
    assert_eq!(
        liveness.http_get.as_ref().unwrap().host.as_deref(),
        Some(ip.to_string().as_str())
    );
    probe_answers(liveness, container, ip).unwrap();
}

fn external_bundle_forms_a_cluster(version: EtcdVersion, test_id: u8, encryption: &str) {
    let etcd = common::require_etcd(version);
    common::require_etcdctl(version);
    let tmp = tempfile::tempdir().unwrap();
    let addr = loopback_range_for(test_id, version);
    let cfg = config::load_str(
        &format!(
            "apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.33.2
encryptionAlgorithm: {encryption}
etcd:
  local:
    imageTag: {}
",
            version.image_tag()
        ),
        None,
    )
    .unwrap();
    let hosts: Vec<BundleHost> = (0..3)
        .map(|n| BundleHost {
            name: format!("etcd-{n}"),
            address: IpAddr::V4(addr(n)),
        })
        .collect();
    let out = tmp.path().join("bundle");
    let report = manifest::write_external_bundle(
        &cfg,
        &hosts,
        &BundleOptions {
            out_dir: out.clone(),
            paths: BundlePaths::InBundle,
        },
    )
    .unwrap();
    assert!(out.join("ca/etcd/ca.key").exists());

    let mut members = Vec::new();
    for host in &report.hosts {
        assert!(
            !host.cert_dir.join("etcd/ca.key").exists(),
            "the CA key must stay out of {}",
            host.dir.display()
        );
        assert!(host.cert_dir.join("etcd/ca.crt").exists());
        let pod: Pod =
            serde_yaml::from_str(&std::fs::read_to_string(&host.manifest_path).unwrap()).unwrap();
        let command = container_command(&pod);
        assert!(command.contains(&"--initial-cluster-state=new".to_string()));
        members.push(
            EtcdProcess::start(
                &etcd,
                &command,
                host.host.address,
                &host.dir.join("etcd.log"),
            )
            .unwrap(),
        );
    }
    let started = Instant::now();
    for (host, member) in report.hosts.iter().zip(&mut members) {
        member
            .wait_healthy(
                &client_url(host.host.address),
                &ClientTls::healthcheck(&host.cert_dir),
                Duration::from_secs(30),
            )
            .unwrap_or_else(|e| panic!("{version} {}: {e}", host.host.name));
    }
    eprintln!("{version}: 3 members healthy after {:?}", started.elapsed());

    let tls = ClientTls::healthcheck(&report.hosts[2].cert_dir);
    let endpoints = [client_url(report.hosts[0].host.address)];
    let health = run_ok_combined(etcdctl(version, &endpoints, &tls).args([
        "endpoint",
        "health",
        "--cluster",
    ]));
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    let list = run_ok(etcdctl(version, &endpoints, &tls).args(["member", "list", "-w", "json"]));
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let mut names: Vec<&str> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["etcd-0", "etcd-1", "etcd-2"]);
}

// Both key types on real etcd: RSA on the oldest release, ECDSA on the others.
crate::etcd_matrix!(external_bundle_forms_a_cluster => |v| {
    let keys = if v == EtcdVersion::V3_4_23 { "RSA-2048" } else { "ECDSA-P256" };
    external_bundle_forms_a_cluster(v, 22, keys)
});

/// The real-etcd tests catch a flag the release does not know: the 3.6 spelling
/// (`--feature-gates`) makes etcd 3.5.1 exit at once, and the harness reports why.
#[test]
fn a_flag_the_release_does_not_know_fails_the_start() {
    a_manifest_for_another_release_fails(EtcdVersion::V3_5_1, "3.6.9-0");
}

/// etcd 3.7 removed every `--experimental-*` flag: a 3.5 manifest makes it exit at once.
#[test]
fn etcd_3_7_refuses_the_experimental_flags_of_a_3_5_manifest() {
    a_manifest_for_another_release_fails(EtcdVersion::V3_7_1, "3.5.30-0");
}

fn a_manifest_for_another_release_fails(version: EtcdVersion, image_tag: &str) {
    let etcd = common::require_etcd(version);
    let tmp = tempfile::tempdir().unwrap();
    let ip = IpAddr::V4(loopback_range_for(25, version)(0));
    let ca = TestCa::new(&tmp.path().join("ca"));
    let cert_dir = ca.node_certs(&tmp.path().join("pki"), "cp-0", ip);
    let text = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nnodeRegistration:\n  name: cp-0\nlocalAPIEndpoint:\n  advertiseAddress: {ip}\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\netcd:\n  local:\n    imageTag: {image_tag}\n    dataDir: {}\n",
        tmp.path().join("data").display()
    );
    let cfg = config::load_str(&text, None).unwrap();
    let pod = manifest::etcd_pod(&cfg, &ManifestOptions::first_member(cert_dir.clone())).unwrap();
    let mut member = EtcdProcess::start(
        &etcd,
        &container_command(&pod),
        ip,
        &tmp.path().join("etcd.log"),
    )
    .unwrap();
    let err = member
        .wait_healthy(
            &client_url(ip),
            &ClientTls::healthcheck(&cert_dir),
            Duration::from_secs(10),
        )
        .unwrap_err();
    assert!(err.contains("exited with"), "{err}");
    assert!(err.contains("flag provided but not defined"), "{err}");
}
