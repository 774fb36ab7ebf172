//! `kubeadm-etcd phase certs ...` and the `init` workflow's phase selection, driven
//! through the binary: output lines, exit codes, files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kubeadm_etcd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeadm-etcd"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn config(name: &str) -> String {
    repo()
        .join("testdata/config")
        .join(name)
        .display()
        .to_string()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(
                    listing(&p)
                        .into_iter()
                        .map(|s| format!("{}/{s}", p.file_name().unwrap().to_str().unwrap())),
                );
            } else {
                out.push(p.file_name().unwrap().to_str().unwrap().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn certs_all_prints_what_kubeadm_prints() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "all",
        "--config",
        &config("v1beta4-ecdsa-p256.yaml"),
        "--cert-dir",
        pki.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = format!(
        "[certs] Using certificateDir folder \"{}\"\n\
         [certs] Generating \"etcd/ca\" certificate and key\n\
         [certs] Generating \"etcd/server\" certificate and key\n\
         [certs] etcd/server serving cert is signed for DNS names [cp-4 localhost] and IPs [10.0.0.14 127.0.0.1 ::1]\n\
         [certs] Generating \"etcd/peer\" certificate and key\n\
         [certs] etcd/peer serving cert is signed for DNS names [cp-4 localhost] and IPs [10.0.0.14 127.0.0.1 ::1]\n\
         [certs] Generating \"etcd/healthcheck-client\" certificate and key\n\
         [certs] Generating \"apiserver-etcd-client\" certificate and key\n",
        pki.display()
    );
    assert_eq!(stdout(&out), expected);

    let again = kubeadm_etcd(&[
        "phase",
        "certs",
        "etcd-server",
        "--config",
        &config("v1beta4-ecdsa-p256.yaml"),
        "--cert-dir",
        pki.to_str().unwrap(),
    ]);
    assert!(again.status.success());
    assert!(
        stdout(&again)
            .ends_with("[certs] Using existing etcd/server certificate and key on disk\n"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn flags_override_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "all",
        "--config",
        &config("v1beta4-ecdsa-p256.yaml"),
        "--cert-dir",
        dir.path().to_str().unwrap(),
        "--node-name",
        "other",
        "--advertise-address",
        "fd00::5",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("etcd/server serving cert is signed for DNS names [localhost other] and IPs [fd00::5 127.0.0.1 ::1]"));
}

#[test]
fn certs_without_a_config_take_the_node_identity_from_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "etcd-ca",
        "--cert-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "the CA needs no node identity: {}",
        stderr(&out)
    );
    // kubeadm without --config names the node after the host
    // (`SetNodeRegistrationDynamicDefaults`); -v 1 says so, and which kubeadm is emulated.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_lowercase();
    let out = kubeadm_etcd(&[
        "-v",
        "1",
        "phase",
        "certs",
        "etcd-server",
        "--cert-dir",
        dir.path().to_str().unwrap(),
        "--advertise-address",
        "192.0.2.7",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "nodeRegistration.name defaults to the host name {host:?}"
        )),
        "{err}"
    );
    assert!(err.contains("emulating kubeadm v1.37"), "{err}");
    let mut names = [host.as_str(), "localhost"];
    names.sort();
    assert!(
        stdout(&out).contains(&format!(
            "etcd/server serving cert is signed for DNS names [{}] and IPs [192.0.2.7",
            names.join(" ")
        )),
        "{}",
        stdout(&out)
    );
    // An explicit --node-name wins over the host, and -v 1 then says nothing of the host.
    let out = kubeadm_etcd(&[
        "-v",
        "1",
        "phase",
        "certs",
        "etcd-peer",
        "--cert-dir",
        dir.path().to_str().unwrap(),
        "--node-name",
        "cp-7",
        "--advertise-address",
        "192.0.2.7",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("defaults to the host name"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("signed for DNS names [cp-7 localhost]"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn kubeadm_version_names_a_modelled_release() {
    for bad in ["1.28", "2.1", "v1.x", "1.34.", "latest"] {
        let out = kubeadm_etcd(&["phase", "certs", "etcd-ca", "--kubeadm-version", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("--kubeadm-version"), "{err}");
        if bad == "1.28" {
            assert!(
                err.contains("kubeadm v1.28 is not modelled by this tool: it renders as kubeadm v1.29 to v1.37 do"),
                "{err}"
            );
        } else {
            assert!(
                err.contains("expected a kubeadm release like 1.34 or v1.34.2"),
                "{err}"
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "etcd-ca",
        "--dry-run",
        "--kubeadm-version",
        "v1.35.2",
        "--cert-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[dryrun] emulating kubeadm v1.35 (as requested)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "all",
        "--dry-run",
        "--config",
        &config("v1beta4-ecdsa-p256.yaml"),
        "--cert-dir",
        pki.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(!pki.exists());
    assert!(stdout(&out).contains(&format!(
        "[dryrun] Would write file \"{}/etcd/ca.key\" with mode 0600\n",
        pki.display()
    )));
}

#[test]
fn bad_configuration_fails_the_phase_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let bad = config("bad/invalid-ip.yaml");
    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "all",
        "--config",
        &bad,
        "--cert-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("error: error execution phase certs/all\n  caused by: {bad}: InitConfiguration (kubeadm.k8s.io/v1beta4), field localAPIEndpoint.advertiseAddress (line 6, column 3): invalid IP address \"10.0.0.300\": expected an IPv4 or IPv6 address\n")
    );
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn usage_errors_exit_2() {
    let out = kubeadm_etcd(&["phase", "certs", "etcd-nope"]);
    assert_eq!(out.status.code(), Some(2));
    let out = kubeadm_etcd(&["phase", "certs", "all", "--advertise-address", "not-an-ip"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value 'not-an-ip' for '--advertise-address <IP>'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn init_skip_phases_selects_like_kubeadm() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let out = kubeadm_etcd(&[
        "init",
        "--config",
        &config("v1beta4-ecdsa-p256.yaml"),
        "--cert-dir",
        pki.to_str().unwrap(),
        "--skip-phases",
        "certs/etcd-peer,certs/apiserver-etcd-client",
        "--skip-phases",
        "etcd",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        listing(&pki),
        [
            "etcd/ca.crt",
            "etcd/ca.key",
            "etcd/healthcheck-client.crt",
            "etcd/healthcheck-client.key",
            "etcd/server.crt",
            "etcd/server.key"
        ]
    );
}

#[test]
fn an_unknown_phase_name_is_a_usage_error_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = kubeadm_etcd(&[
        "init",
        "--config",
        &config("v1beta4-ecdsa-p256.yaml"),
        "--cert-dir",
        dir.path().to_str().unwrap(),
        "--skip-phases",
        "certs/etcd-perr",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: invalid phase name \"certs/etcd-perr\" in --skip-phases; valid names: certs, certs/etcd-ca, certs/etcd-server, certs/etcd-peer,"), "{}", stderr(&out));
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn help_lists_the_workflow_phases() {
    let out = kubeadm_etcd(&["init", "--help"]);
    let help = stdout(&out);
    assert!(
        help.contains("certs/etcd-peer") || help.contains("etcd-peer"),
        "{help}"
    );
    assert!(help.contains("--skip-phases"));
}

/// kubeadm skips both the certificates and the local etcd manifest when the cluster
/// uses an external etcd: `init` succeeds and writes nothing.
#[test]
fn init_with_external_etcd_skips_certs_and_the_local_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("external.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.33.0\netcd:\n  external:\n    endpoints:\n    - https://10.0.0.21:2379\n    caFile: /etc/etcd/ca.crt\n    certFile: /etc/etcd/client.crt\n    keyFile: /etc/etcd/client.key\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let sub = |name: &str| out_dir.join(name).display().to_string();
    let out = kubeadm_etcd(&[
        "init",
        "--config",
        cfg.to_str().unwrap(),
        "--cert-dir",
        &sub("pki"),
        "--manifest-dir",
        &sub("manifests"),
        "--backup-dir",
        &sub("tmp"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "[certs] External etcd mode: Skipping etcd/ca certificate generation\n\
         [certs] External etcd mode: Skipping etcd/server certificate generation\n\
         [certs] External etcd mode: Skipping etcd/peer certificate generation\n\
         [certs] External etcd mode: Skipping etcd/healthcheck-client certificate generation\n\
         [certs] External etcd mode: Skipping apiserver-etcd-client certificate generation\n\
         [etcd] External etcd mode: Skipping the creation of a manifest for local etcd\n"
    );
    assert!(!out_dir.exists(), "{:?}", listing(&out_dir));

    // Asked for by name, the phase says why it does not apply.
    let out = kubeadm_etcd(&[
        "phase",
        "etcd",
        "local",
        "--config",
        cfg.to_str().unwrap(),
        "--manifest-dir",
        &sub("manifests"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("this phase manages a local (stacked) etcd, but the ClusterConfiguration sets etcd.external"),
        "{}",
        stderr(&out)
    );
    assert!(!out_dir.exists());
}
