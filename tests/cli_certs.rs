//! `kubeadm-etcd phase certs ...` and the `init` workflow's phase selection, driven
//! through the binary: output lines, exit codes, files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

// The harness's binary lookup (a missing etcd fails the test) and the kubelet's command
// localisation, for the check-health test on a real member.
#[allow(dead_code)]
#[path = "../phases/tests/common/kubelet.rs"]
mod kubelet;
#[allow(dead_code)]
#[path = "../phases/tests/common/output.rs"]
mod output;
#[allow(dead_code)]
#[path = "../phases/tests/common/versions.rs"]
mod versions;

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

// ---------------------------------------------------------------------------------------
// check-expiration and renew (issue 14)

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A node's certificates made by `phase certs all` from `config`, in `<dir>/pki`.
fn node_pki(dir: &Path, config: &str) -> PathBuf {
    let pki = dir.join("pki");
    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "all",
        "--config",
        config,
        "--cert-dir",
        s(&pki),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    pki
}

/// `v1beta4-ecdsa-p256.yaml` with certificates that live 90 minutes.
fn short_lived_config(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config("v1beta4-ecdsa-p256.yaml")).unwrap()
        + "certificateValidityPeriod: 1h30m0s\n";
    let path = dir.join("short.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_expiration_lists_and_fails_on_certificates_about_to_expire() {
    let dir = tempfile::tempdir().unwrap();
    let pki = node_pki(dir.path(), &config("v1beta4-ecdsa-p256.yaml"));
    let check = |extra: &[&str]| {
        let mut args = vec!["phase", "certs", "check-expiration", "--cert-dir", s(&pki)];
        args.extend_from_slice(extra);
        kubeadm_etcd(&args)
    };
    let out = check(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("CERTIFICATE               EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED\napiserver-etcd-client     "),
        "{text}"
    );
    assert!(
        text.contains("\n\nCERTIFICATE AUTHORITY   EXPIRES"),
        "{text}"
    );
    assert!(
        text.contains("   364d            etcd-ca                 no      \n"),
        "{text}"
    );

    // A window wider than their lifetime: every leaf is due, each with its command.
    let out = check(&["--warn-within", "400d"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "etcd-peer ({}) expires in 364d, on ",
            s(&pki.join("etcd/peer.crt"))
        )) && err.contains(&format!(
            "renew it with `kubeadm-etcd phase certs renew etcd-peer --cert-dir {}`",
            s(&pki)
        )),
        "{err}"
    );
    assert_eq!(err.matches("renew it with").count(), 4, "{err}");

    // JSON in kubeadm's output API.
    let out = check(&["-o", "json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["kind"], "CertificateExpirationInfo");
    assert_eq!(json["apiVersion"], "output.kubeadm.k8s.io/v1alpha3");
    assert_eq!(json["certificates"][3]["name"], "etcd-server");
    assert_eq!(json["certificateAuthorities"][0]["name"], "etcd-ca");

    // A directory without any etcd certificate is a mistake, not a node.
    let empty = dir.path().join("empty");
    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "check-expiration",
        "--cert-dir",
        s(&empty),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("no etcd certificate in {}: pass", s(&empty))),
        "{}",
        stderr(&out)
    );

    // Missing files are listed, not a crash and not a failure (kubeadm lists them too).
    std::fs::remove_file(pki.join("etcd/peer.crt")).unwrap();
    std::fs::remove_file(pki.join("etcd/peer.key")).unwrap();
    let out = check(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\n!MISSING! etcd-peer   "),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains(&format!(
            "etcd-peer is missing ({}): create it with `kubeadm-etcd phase certs etcd-peer`",
            s(&pki.join("etcd/peer.crt"))
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn short_lived_certificates_fail_the_check_until_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let short = short_lived_config(dir.path());
    let pki = node_pki(dir.path(), s(&short));
    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "check-expiration",
        "--config",
        s(&short),
        "--cert-dir",
        s(&pki),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("   1h              etcd-ca"),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("4 etcd certificate(s) expired, not valid yet, or expiring within 720h0m0s")
            && err.contains(&format!(
                "renew it with `kubeadm-etcd phase certs renew etcd-server --config {} --cert-dir {}`",
                s(&short),
                s(&pki)
            )),
        "{err}"
    );

    // Renewed with the usual configuration (a year), the check passes.
    let backups = dir.path().join("backups");
    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "renew",
        "all",
        "--config",
        &config("v1beta4-ecdsa-p256.yaml"),
        "--cert-dir",
        s(&pki),
        "--backup-dir",
        s(&backups),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "[renew] certificate for serving etcd renewed\n",
        "[renew] certificate for etcd nodes to communicate with each other renewed\n",
        "[renew] certificate for liveness probes to healthcheck etcd renewed\n",
        "[renew] certificate the apiserver uses to access etcd renewed\n",
        "[renew] Done renewing certificates.\n",
        "without a restart",
        "Restart kube-apiserver on this node",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    let backup: Vec<PathBuf> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backup.len(), 1);
    assert!(text.contains(&format!(
        "[renew] The previous certificates and keys are in {:?}",
        s(&backup[0])
    )));
    assert_eq!(
        listing(&backup[0]),
        [
            "apiserver-etcd-client.crt",
            "apiserver-etcd-client.key",
            "etcd/healthcheck-client.crt",
            "etcd/healthcheck-client.key",
            "etcd/peer.crt",
            "etcd/peer.key",
            "etcd/server.crt",
            "etcd/server.key"
        ]
    );
    let out = kubeadm_etcd(&["phase", "certs", "check-expiration", "--cert-dir", s(&pki)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).matches("   364d            etcd-ca").count(),
        4,
        "{}",
        stdout(&out)
    );
}

#[test]
fn renew_refusals_exit_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let pki = node_pki(dir.path(), &config("v1beta4-ecdsa-p256.yaml"));
    let renew = |name: &str| {
        kubeadm_etcd(&[
            "phase",
            "certs",
            "renew",
            name,
            "--cert-dir",
            s(&pki),
            "--backup-dir",
            s(&dir.path().join("backups")),
        ])
    };
    // Unknown names, the CA included, are usage errors listing the valid ones.
    for name in ["etcd-nope", "etcd-ca"] {
        let out = renew(name);
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(
            stderr(&out).contains("[possible values: all, etcd-server, etcd-peer, etcd-healthcheck-client, apiserver-etcd-client]"),
            "{}",
            stderr(&out)
        );
    }
    // A missing certificate named explicitly.
    std::fs::remove_file(pki.join("etcd/peer.crt")).unwrap();
    let out = renew("etcd-peer");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "{}: missing, so there is nothing to renew; create it with `kubeadm-etcd phase certs etcd-peer`",
            s(&pki.join("etcd/peer.crt"))
        )),
        "{}",
        stderr(&out)
    );
    // An externally managed CA (no key): refused, naming the file, nothing written.
    std::fs::remove_file(pki.join("etcd/ca.key")).unwrap();
    let before = std::fs::read(pki.join("etcd/server.crt")).unwrap();
    let out = renew("etcd-server");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("the etcd CA is externally managed")
            && err.contains(&format!("{} does not", s(&pki.join("etcd/ca.key")))),
        "{err}"
    );
    assert_eq!(std::fs::read(pki.join("etcd/server.crt")).unwrap(), before);
    assert!(!dir.path().join("backups").exists());
    // check-expiration says the same thing in its table.
    let out = kubeadm_etcd(&["phase", "certs", "check-expiration", "--cert-dir", s(&pki)]);
    assert!(
        stdout(&out).contains("etcd-ca                 yes"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bundle_hosts_are_checked_and_renewed_with_the_bundle_ca() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let out = kubeadm_etcd(&[
        "phase",
        "etcd",
        "external-bundle",
        "--config",
        &config("v1beta4-ecdsa-p256.yaml"),
        "--hosts",
        "etcd-b=10.0.1.11,etcd-a=10.0.1.10",
        "--output-dir",
        s(&bundle),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "check-expiration",
        "--bundle-dir",
        s(&bundle),
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"][0]["host"], "etcd-a");
    assert_eq!(json["items"][1]["host"], "etcd-b");
    // The CA key is in the bundle's ca/ folder, not the host's: not externally managed.
    assert_eq!(
        json["items"][0]["certificateAuthorities"][0]["externallyManaged"],
        false
    );

    let old = std::fs::read(bundle.join("etcd-b/pki/etcd/peer.crt")).unwrap();
    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "renew",
        "etcd-peer",
        "--bundle-dir",
        s(&bundle),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("[renew] host etcd-a: certificate for etcd nodes to communicate with each other renewed\n")
            && text.contains("[renew] host etcd-b: certificate for etcd nodes to communicate with each other renewed\n"),
        "{text}"
    );
    let new = bundle.join("etcd-b/pki/etcd/peer.crt");
    assert_ne!(std::fs::read(&new).unwrap(), old);
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(bundle.join("ca/etcd/ca.crt"))
        .arg(&new)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
    let kept = listing(&bundle.join("backups/etcd-b"));
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept[0].ends_with("/etcd/peer.crt"), "{kept:?}");
    // Still no CA key in any host folder.
    assert!(!bundle.join("etcd-a/pki/etcd/ca.key").exists());

    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "check-expiration",
        "--bundle-dir",
        s(dir.path()),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no host folders"), "{}", stderr(&out));
}

/// Kills the member when dropped, also when an assertion fails.
struct Member(std::process::Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Everything through the binary, on a real member started from the manifest `init`
/// wrote: its peer certificate is swapped for one that expires a second later; once it
/// has, `check-health` names it with the renew command; `renew etcd-peer` fixes it with
/// no restart. Addresses 127.141.<version octet>.11, registered in
/// phases/tests/common/mod.rs.
fn expired_peer_certificate_reported_by_check_health(version: versions::EtcdVersion) {
    let etcd = versions::require(version, versions::Tool::Etcd);
    let ip = format!("127.141.{}.11", version.octet());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write_config = |name: &str, pki: &Path, extra: &str| {
        let path = root.join(name);
        std::fs::write(
            &path,
            format!(
                "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nnodeRegistration: {{name: renew}}\n\
                 localAPIEndpoint: {{advertiseAddress: {ip}}}\n---\napiVersion: kubeadm.k8s.io/v1beta4\n\
                 kind: ClusterConfiguration\nencryptionAlgorithm: ECDSA-P256\ncertificatesDir: {pki}\n{extra}\
                 etcd:\n  local:\n    dataDir: {data}\n    imageTag: {tag}-0\n",
                pki = pki.display(),
                data = root.join("data").display(),
                tag = version.version(),
            ),
        )
        .unwrap();
        path
    };
    let pki = root.join("pki");
    let cfg = write_config("kubeadm.yaml", &pki, "");
    let manifests = root.join("manifests");
    let init = kubeadm_etcd(&["init", "--config", s(&cfg), "--manifest-dir", s(&manifests)]);
    assert!(init.status.success(), "{}", stderr(&init));

    // A peer certificate of one second, from the same CA, made by the binary.
    let short_pki = root.join("short-pki");
    std::fs::create_dir_all(short_pki.join("etcd")).unwrap();
    for f in ["ca.crt", "ca.key"] {
        std::fs::copy(pki.join("etcd").join(f), short_pki.join("etcd").join(f)).unwrap();
    }
    let short = write_config("short.yaml", &short_pki, "certificateValidityPeriod: 1s\n");
    let out = kubeadm_etcd(&["phase", "certs", "etcd-peer", "--config", s(&short)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let made = Instant::now();
    for f in ["peer.crt", "peer.key"] {
        std::fs::copy(short_pki.join("etcd").join(f), pki.join("etcd").join(f)).unwrap();
    }

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
    std::thread::sleep(Duration::from_secs(2).saturating_sub(made.elapsed()));

    let endpoint = format!("https://{ip}:2379");
    let check_health = || {
        kubeadm_etcd(&[
            "phase",
            "etcd",
            "check-health",
            "--config",
            s(&cfg),
            "--endpoints",
            &endpoint,
        ])
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let health = check_health();
        if health.status.success() {
            break health;
        }
        assert!(
            Instant::now() < deadline,
            "etcd {} did not become healthy in 30s: {}\n{}",
            version.version(),
            stderr(&health),
            std::fs::read_to_string(root.join("etcd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let err = stderr(&health);
    assert!(
        err.contains(&format!(
            "serves an expired peer certificate on https://{ip}:2380 (expired "
        )) && err.contains("on that node run `kubeadm-etcd phase certs renew etcd-peer`"),
        "{}: {err}",
        version.version()
    );

    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "renew",
        "etcd-peer",
        "--config",
        s(&cfg),
        "--backup-dir",
        s(&root.join("backups")),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // No restart: the next handshake already gets the renewed certificate.
    let health = check_health();
    assert!(health.status.success(), "{}", stderr(&health));
    assert!(
        !stderr(&health).contains("certificate"),
        "{}: {}",
        version.version(),
        stderr(&health)
    );
}

#[test]
fn check_health_reports_an_expired_peer_certificate_on_etcd_3_6_14() {
    expired_peer_certificate_reported_by_check_health(versions::EtcdVersion::V3_6_14);
}

#[test]
fn check_health_reports_an_expired_peer_certificate_on_etcd_3_7_1() {
    expired_peer_certificate_reported_by_check_health(versions::EtcdVersion::V3_7_1);
}

/// kubeadm takes the key type from the cluster's configuration; without --config each
/// key keeps its type instead of becoming RSA-2048.
#[test]
fn renew_without_a_config_keeps_the_key_type() {
    let dir = tempfile::tempdir().unwrap();
    let pki = node_pki(dir.path(), &config("v1beta4-ecdsa-p256.yaml"));
    let out = kubeadm_etcd(&[
        "phase",
        "certs",
        "renew",
        "etcd-server",
        "--cert-dir",
        s(&pki),
        "--backup-dir",
        s(&dir.path().join("backups")),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(pki.join("etcd/server.crt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("id-ecPublicKey") && text.contains("prime256v1"),
        "{text}"
    );
}
