//! `kubeadm-etcd phase etcd local` and `phase etcd external-bundle`, driven through the
//! binary: what goes to stdout and stderr, exit codes, and what lands on disk.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

fn testdata(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/manifest")
        .join(name)
        .display()
        .to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    manifests: PathBuf,
    backups: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    Dirs {
        manifests: root.join("manifests"),
        backups: root.join("tmp"),
        root,
        _tmp: tmp,
    }
}

fn local(d: &Dirs, config: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "phase",
        "etcd",
        "local",
        "--config",
        config,
        "--manifest-dir",
        s(&d.manifests),
        "--backup-dir",
        s(&d.backups),
    ];
    args.extend_from_slice(extra);
    kubeadm_etcd(&args)
}

#[test]
fn writes_the_manifest_like_kubeadm() {
    let d = dirs();
    let out = local(&d, &testdata("first-member.yaml"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "[etcd] Creating static Pod manifest for local etcd in {:?}\n",
            s(&d.manifests)
        )
    );
    assert_eq!(stderr(&out), "");
    let path = d.manifests.join("etcd.yaml");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&d.manifests), 0o700);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("--initial-cluster=cp-0=https://10.0.0.10:2380\n"));
    assert!(!text.contains("initial-cluster-state"));
}

#[test]
fn dry_run_prints_exactly_the_bytes_and_writes_nothing() {
    let d = dirs();
    let dry = local(&d, &testdata("first-member.yaml"), &["--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(!d.manifests.exists(), "a dry run creates nothing");
    assert_eq!(
        stderr(&dry),
        format!(
            "[dryrun] emulating kubeadm v1.33 (the minor of kubernetesVersion v1.33.2)\n\
             [dryrun] Would write file {:?}\n",
            s(&d.manifests.join("etcd.yaml"))
        )
    );

    let real = local(&d, &testdata("first-member.yaml"), &[]);
    assert!(real.status.success(), "{}", stderr(&real));
    assert_eq!(
        dry.stdout,
        std::fs::read(d.manifests.join("etcd.yaml")).unwrap()
    );
}

#[test]
fn flags_override_the_configuration() {
    let d = dirs();
    let out = local(
        &d,
        &testdata("first-member.yaml"),
        &[
            "--dry-run",
            "--node-name",
            "other",
            "--advertise-address",
            "fd00::7",
            "--cert-dir",
            "/srv/pki",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("- --name=other\n"), "{text}");
    assert!(text.contains("- --listen-client-urls=https://[::1]:2379,https://[fd00::7]:2379\n"));
    assert!(text.contains("- --cert-file=/srv/pki/etcd/server.crt\n"));
}

#[test]
fn a_second_run_is_unchanged_and_keeps_the_file() {
    let d = dirs();
    assert!(local(&d, &testdata("first-member.yaml"), &[])
        .status
        .success());
    let path = d.manifests.join("etcd.yaml");
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let out = local(&d, &testdata("first-member.yaml"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("[etcd] Static Pod manifest {:?} is unchanged\n", s(&path))
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        before
    );
    assert!(!d.backups.exists(), "nothing was backed up");
}

#[test]
fn a_changed_configuration_replaces_the_manifest_and_keeps_a_backup() {
    let d = dirs();
    assert!(local(&d, &testdata("first-member.yaml"), &[])
        .status
        .success());
    let path = d.manifests.join("etcd.yaml");
    let old = std::fs::read(&path).unwrap();
    let out = local(&d, &testdata("etcd-3.5.16.yaml"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let backups: Vec<PathBuf> = std::fs::read_dir(&d.backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(std::fs::read(&backups[0]).unwrap(), old);
    assert_eq!(
        stdout(&out),
        format!(
            "[etcd] Creating static Pod manifest for local etcd in {:?}\n\
             [etcd] Backed up the previous static Pod manifest to {:?}\n",
            s(&d.manifests),
            s(&backups[0])
        )
    );
    let new = std::fs::read_to_string(&path).unwrap();
    assert!(new.contains("image: registry.k8s.io/etcd:3.5.16-0"));
}

#[test]
fn output_json_prints_the_pod() {
    let d = dirs();
    let out = local(&d, &testdata("ipv6.yaml"), &["-o", "json", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pod: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(
        pod["metadata"]["annotations"]["kubeadm.kubernetes.io/etcd.advertise-client-urls"],
        "https://[fd00:10::10]:2379"
    );
    assert!(!d.manifests.exists());

    // Without --dry-run the manifest is written too; progress goes to stderr.
    let out = local(&d, &testdata("ipv6.yaml"), &["-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok());
    assert!(stderr(&out).starts_with("[etcd] Creating static Pod manifest"));
    assert!(d.manifests.join("etcd.yaml").exists());
}

fn write_config(d: &Dirs, name: &str, cluster: &str) -> String {
    let path = d.root.join(name);
    std::fs::write(
        &path,
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  name: cp-0
localAPIEndpoint:
  advertiseAddress: 10.0.0.10
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
{cluster}"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let cases = [
        (
            "malformed-version.yaml",
            "kubernetesVersion: 1.x.2\n",
            "field kubernetesVersion (line 10, column 1): invalid value \"1.x.2\": expected a Kubernetes version like v1.32.0",
        ),
        (
            "bad-extra-arg.yaml",
            "kubernetesVersion: v1.33.0\netcd:\n  local:\n    extraArgs:\n    - name: --snapshot-count\n      value: \"5\"\n",
            "field etcd.local.extraArgs[0].name: invalid flag name \"--snapshot-count\": write the name without leading dashes (\"snapshot-count\")",
        ),
        (
            "local-and-external.yaml",
            "etcd:\n  local: {}\n  external:\n    endpoints: [https://10.0.0.50:2379]\n",
            "etcd.local and etcd.external are both set; they are mutually exclusive",
        ),
        (
            "external-only.yaml",
            "etcd:\n  external:\n    endpoints: [https://10.0.0.50:2379]\n",
            "this phase manages a local (stacked) etcd, but the ClusterConfiguration sets etcd.external",
        ),
        (
            "etcd-3.3.yaml",
            "etcd:\n  local:\n    imageTag: 3.3.15-0\n",
            "etcd learner mode is not supported by etcd 3.3.15 (3.4 or newer is needed)",
        ),
        (
            "bad-tag.yaml",
            "etcd:\n  local:\n    imageTag: latest\n",
            "etcd.local.imageTag: etcd image tag \"latest\" is not an etcd version",
        ),
    ];
    for (name, cluster, message) in cases {
        let d = dirs();
        let config = write_config(&d, name, cluster);
        for extra in [&[][..], &["--dry-run"][..]] {
            let out = local(&d, &config, extra);
            assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
            let err = stderr(&out);
            // A dry run first says which kubeadm it renders as.
            let err = match err.split_once('\n') {
                Some((first, rest)) if first.starts_with("[dryrun] emulating kubeadm") => rest,
                _ => &err,
            };
            assert!(
                err.starts_with("error: error execution phase etcd/local\n"),
                "{name}: {err}"
            );
            assert!(err.contains(message), "{name}: {err}");
            assert_eq!(stdout(&out), "", "{name}");
            assert!(!d.manifests.exists(), "{name}: nothing may be written");
            assert!(!d.backups.exists(), "{name}");
        }
    }
}

/// Version skew (issue 12): kubeadm 1.35 deploys etcd 3.5.24-0 for Kubernetes 1.34
/// (k/k#134779 on the 1.35 branch), kubeadm 1.34 its own 3.6 release. The kubeadm binary
/// in use decides, so `--kubeadm-version` picks the table, and a dry run says which.
#[test]
fn kubeadm_version_picks_the_release_whose_table_renders() {
    let d = dirs();
    let config = write_config(&d, "k8s-1.34.yaml", "kubernetesVersion: v1.34.2\n");
    let own = local(&d, &config, &["--dry-run"]);
    assert!(own.status.success(), "{}", stderr(&own));
    assert!(
        stderr(&own).starts_with(
            "[dryrun] emulating kubeadm v1.34 (the minor of kubernetesVersion v1.34.2)\n"
        ),
        "{}",
        stderr(&own)
    );
    assert!(
        stdout(&own).contains("image: registry.k8s.io/etcd:3.6."),
        "{}",
        stdout(&own)
    );

    let skewed = local(&d, &config, &["--dry-run", "--kubeadm-version", "1.35"]);
    assert!(skewed.status.success(), "{}", stderr(&skewed));
    assert!(
        stderr(&skewed).starts_with("[dryrun] emulating kubeadm v1.35 (as requested)\n"),
        "{}",
        stderr(&skewed)
    );
    assert!(
        stdout(&skewed).contains("image: registry.k8s.io/etcd:3.5.24-0\n"),
        "{}",
        stdout(&skewed)
    );
    assert!(!d.manifests.exists(), "dry runs write nothing");
}

#[test]
fn unsupported_output_formats_are_refused() {
    let d = dirs();
    let out = local(&d, &testdata("first-member.yaml"), &["-o", "table"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("-o table is not supported by this phase"),
        "{}",
        stderr(&out)
    );
    assert!(!d.manifests.exists());
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if p.is_dir() {
            out.extend(listing(&p).into_iter().map(|s| format!("{name}/{s}")));
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

#[test]
fn external_bundle_makes_one_folder_per_host() {
    let d = dirs();
    let out_dir = d.root.join("bundle");
    let out = kubeadm_etcd(&[
        "phase",
        "etcd",
        "external-bundle",
        "--config",
        &testdata("first-member.yaml"),
        "--hosts",
        "etcd-0=10.0.1.10,etcd-1=10.0.1.11,etcd-2=10.0.1.12",
        "--output-dir",
        s(&out_dir),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("[certs] Generating \"etcd/ca\" certificate and key\n"),
        "{text}"
    );
    assert!(
        text.contains("[etcd] Host \"etcd-1\" (10.0.1.11): writing"),
        "{text}"
    );
    assert_eq!(text.matches("Generating \"etcd/server\"").count(), 3);

    let host_files = [
        "kubeadmcfg.yaml",
        "manifests/etcd.yaml",
        "pki/apiserver-etcd-client.crt",
        "pki/apiserver-etcd-client.key",
        "pki/etcd/ca.crt",
        "pki/etcd/healthcheck-client.crt",
        "pki/etcd/healthcheck-client.key",
        "pki/etcd/peer.crt",
        "pki/etcd/peer.key",
        "pki/etcd/server.crt",
        "pki/etcd/server.key",
    ];
    let mut expected = vec!["ca/etcd/ca.crt".to_string(), "ca/etcd/ca.key".to_string()];
    for host in ["etcd-0", "etcd-1", "etcd-2"] {
        expected.extend(host_files.iter().map(|f| format!("{host}/{f}")));
    }
    expected.sort();
    assert_eq!(listing(&out_dir), expected, "the CA key is only in ca/");

    // Each host's configuration renders exactly its bundled manifest.
    for host in ["etcd-0", "etcd-1", "etcd-2"] {
        let config = out_dir.join(host).join("kubeadmcfg.yaml");
        let out = kubeadm_etcd(&[
            "phase",
            "etcd",
            "local",
            "--config",
            s(&config),
            "--dry-run",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            out.stdout,
            std::fs::read(out_dir.join(host).join("manifests/etcd.yaml")).unwrap(),
            "{host}"
        );
        let manifest = String::from_utf8(out.stdout).unwrap();
        assert!(manifest.contains("- --initial-cluster=etcd-0=https://10.0.1.10:2380,etcd-1=https://10.0.1.11:2380,etcd-2=https://10.0.1.12:2380\n"));
        assert!(manifest.contains("- --initial-cluster-state=new\n"));
        assert!(manifest.contains("- --cert-file=/etc/kubernetes/pki/etcd/server.crt\n"));
    }

    // A rerun reuses the CA and the certificates.
    let ca = std::fs::read(out_dir.join("ca/etcd/ca.crt")).unwrap();
    let server = std::fs::read(out_dir.join("etcd-0/pki/etcd/server.crt")).unwrap();
    let again = kubeadm_etcd(&[
        "phase",
        "etcd",
        "external-bundle",
        "--config",
        &testdata("first-member.yaml"),
        "--hosts",
        "etcd-0=10.0.1.10,etcd-1=10.0.1.11,etcd-2=10.0.1.12",
        "--output-dir",
        s(&out_dir),
    ]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("[certs] Using existing etcd/ca certificate authority\n"));
    assert!(!stdout(&again).contains("Generating"));
    assert_eq!(std::fs::read(out_dir.join("ca/etcd/ca.crt")).unwrap(), ca);
    assert_eq!(
        std::fs::read(out_dir.join("etcd-0/pki/etcd/server.crt")).unwrap(),
        server
    );
    assert_eq!(listing(&out_dir), expected);
}

#[test]
fn external_bundle_refuses_bad_hosts_and_writes_nothing() {
    for (hosts, message) in [
        (
            "etcd-0=10.0.1.10,etcd-0=10.0.1.11",
            "the name or the address is also used by etcd-0=10.0.1.10",
        ),
        (
            "etcd-0=10.0.1.10,etcd-1=10.0.1.10",
            "the name or the address is also used by etcd-0=10.0.1.10",
        ),
        ("etcd-0", "expected name=address"),
        (
            "Etcd_0=10.0.1.10",
            "a node name must be a lowercase RFC 1123 subdomain",
        ),
        ("etcd-0=0.0.0.0", "not an unspecified or multicast one"),
    ] {
        let d = dirs();
        let out_dir = d.root.join("bundle");
        let out = kubeadm_etcd(&[
            "phase",
            "etcd",
            "external-bundle",
            "--hosts",
            hosts,
            "--output-dir",
            s(&out_dir),
        ]);
        assert_eq!(out.status.code(), Some(1), "{hosts}");
        assert!(stderr(&out).contains(message), "{hosts}: {}", stderr(&out));
        assert!(!out_dir.exists(), "{hosts}: nothing may be written");
    }
}
