use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::config::load_str;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn config(cluster_extra: &str) -> KubeadmConfig {
    let text = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  name: cp-0
localAPIEndpoint:
  advertiseAddress: 10.0.0.10
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
{cluster_extra}"
    );
    load_str(&text, None).unwrap()
}

fn first(cfg: &KubeadmConfig) -> Result<Pod, ManifestError> {
    etcd_pod(
        cfg,
        &ManifestOptions::first_member("/etc/kubernetes/pki".into()),
    )
}

fn command_of(pod: &Pod) -> Vec<String> {
    pod.spec.as_ref().unwrap().containers[0]
        .command
        .clone()
        .unwrap()
}

#[test]
fn urls_bracket_ipv6() {
    assert_eq!(
        client_url("10.0.0.1".parse().unwrap()),
        "https://10.0.0.1:2379"
    );
    assert_eq!(
        peer_url("fd00::1".parse().unwrap()),
        "https://[fd00::1]:2380"
    );
}

#[test]
fn image_tag_wins_over_kubernetes_version() {
    let cfg = config("kubernetesVersion: v1.33.0\netcd:\n  local:\n    imageTag: 3.5.16-0\n");
    let (tag, version, warning) = etcd_version_of(&cfg).unwrap();
    assert_eq!(
        (tag.as_str(), version.to_string().as_str(), warning),
        ("3.5.16-0", "3.5.16", None)
    );
}

#[test]
fn an_unknown_minor_falls_back_to_the_nearest_entry_with_a_warning() {
    let cfg = config("kubernetesVersion: v1.99.0\n");
    let (tag, _, warning) = etcd_version_of(&cfg).unwrap();
    let newest = versions::KUBEADM_RELEASES.last().unwrap();
    assert_eq!(tag, newest.default_etcd_tag());
    assert!(warning
        .unwrap()
        .contains("falling back to the nearest etcd version"));
}

#[test]
fn no_kubernetes_version_uses_the_newest_entry_and_says_so() {
    let cfg = config("");
    let (tag, _, warning) = etcd_version_of(&cfg).unwrap();
    assert_eq!(
        tag,
        versions::KUBEADM_RELEASES
            .last()
            .unwrap()
            .default_etcd_tag()
    );
    assert!(warning.unwrap().contains("kubernetesVersion is not set"));
}

#[test]
fn etcd_older_than_3_4_is_refused() {
    let cfg = config("etcd:\n  local:\n    imageTag: 3.3.15-0\n");
    let err = first(&cfg).unwrap_err();
    assert_eq!(
        err.to_string(),
        "etcd learner mode is not supported by etcd 3.3.15 (3.4 or newer is needed)"
    );
}

#[test]
fn a_tag_that_is_no_version_is_an_error_naming_the_field() {
    let cfg = config("etcd:\n  local:\n    imageTag: latest\n");
    let err = first(&cfg).unwrap_err().to_string();
    assert!(
        err.ends_with(": etcd.local.imageTag: etcd image tag \"latest\" is not an etcd version: it does not have the form MAJOR.MINOR.PATCH (expected a tag like \"3.5.16-0\" or \"v3.4.23\")"),
        "{err}"
    );
}

#[test]
fn external_etcd_has_no_local_manifest() {
    let cfg = config("etcd:\n  external:\n    endpoints: [https://10.0.0.50:2379]\n");
    let err = first(&cfg).unwrap_err().to_string();
    assert!(err.contains("sets etcd.external"), "{err}");
}

#[test]
fn the_node_identity_is_required() {
    let cfg = load_str(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n",
        None,
    )
    .unwrap();
    let err = first(&cfg).unwrap_err().to_string();
    assert!(err.contains("no node name"), "{err}");
}

#[test]
fn a_joining_member_must_be_in_its_initial_cluster() {
    let cfg = config("kubernetesVersion: v1.33.0\n");
    let members = vec![Member {
        name: "cp-1".into(),
        peer_url: "https://10.0.0.11:2380".into(),
    }];
    let err = etcd_pod(&cfg, &ManifestOptions::joining("/pki".into(), members)).unwrap_err();
    assert!(
        err.to_string().contains("does not list this member (cp-0)"),
        "{err}"
    );
    let err = etcd_pod(&cfg, &ManifestOptions::joining("/pki".into(), vec![])).unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");
}

#[test]
fn joining_members_get_the_list_and_state_existing() {
    let cfg = config("kubernetesVersion: v1.33.0\n");
    let members = vec![
        Member {
            name: "cp-1".into(),
            peer_url: "https://10.0.0.11:2380".into(),
        },
        Member {
            name: "cp-0".into(),
            peer_url: "https://10.0.0.10:2380".into(),
        },
    ];
    let pod = etcd_pod(&cfg, &ManifestOptions::joining("/pki".into(), members)).unwrap();
    let command = command_of(&pod);
    assert!(command.contains(
        &"--initial-cluster=cp-1=https://10.0.0.11:2380,cp-0=https://10.0.0.10:2380".to_string()
    ));
    assert!(command.contains(&"--initial-cluster-state=existing".to_string()));
    let first = command_of(&first(&cfg).unwrap());
    assert!(!first
        .iter()
        .any(|a| a.starts_with("--initial-cluster-state")));
}

#[test]
fn the_cert_dir_comes_from_the_options() {
    let cfg = config("kubernetesVersion: v1.33.0\ncertificatesDir: /from/config\n");
    let pod = etcd_pod(&cfg, &ManifestOptions::first_member("/from/flag".into())).unwrap();
    let yaml = render_yaml(&pod).unwrap();
    assert!(yaml.contains("--cert-file=/from/flag/etcd/server.crt"));
    assert!(!yaml.contains("/from/config"));
}

#[test]
fn a_bad_value_from_is_an_error() {
    let cfg = config(
        "etcd:\n  local:\n    extraEnvs:\n    - name: X\n      valueFrom:\n        fieldRef: 7\n",
    );
    let err = first(&cfg).unwrap_err().to_string();
    assert!(
        err.contains(": etcd.local.extraEnvs[0] (X): invalid valueFrom: invalid type: integer `7`"),
        "{err}"
    );
}

#[test]
fn no_creation_timestamp_from_1_34_and_an_empty_status() {
    let yaml = render_yaml(&first(&config("kubernetesVersion: v1.34.0\n")).unwrap()).unwrap();
    assert!(!yaml.contains("creationTimestamp"));
    assert!(yaml.ends_with("status: {}\n"));
    assert!(yaml.starts_with("apiVersion: v1\nkind: Pod\nmetadata:\n"));
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn write_creates_keeps_and_replaces_with_a_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("manifests");
    let backups = tmp.path().join("tmp");
    let path = manifest_path(&manifests);

    assert_eq!(
        write_manifest(&manifests, &backups, "one\n").unwrap(),
        WriteOutcome::Created
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&manifests), 0o700);
    assert!(!backups.exists(), "nothing to back up yet");

    // Unchanged: the file is not rewritten (its inode and mtime stay).
    let before = std::fs::metadata(&path).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        write_manifest(&manifests, &backups, "one\n").unwrap(),
        WriteOutcome::Unchanged
    );
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&before),
        std::os::unix::fs::MetadataExt::ino(&after)
    );

    let WriteOutcome::Replaced { backup } = write_manifest(&manifests, &backups, "two\n").unwrap()
    else {
        panic!("expected a replacement");
    };
    assert_eq!(backup, backup_path(&backups, b"one\n"));
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), "one\n");
    assert_eq!(mode(&backup), 0o600);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
    // sha256("one\n") starts with 2c8b08da5ce6.
    assert!(
        backup.ends_with("etcd.yaml.2c8b08da5ce6"),
        "{}",
        backup.display()
    );
}

#[test]
fn hosts_parse_and_refuse_duplicates() {
    let hosts =
        BundleHost::parse_list(&["etcd-0=10.0.0.10".into(), "etcd-1=fd00::11".into()]).unwrap();
    assert_eq!(hosts[1].address, "fd00::11".parse::<IpAddr>().unwrap());
    let err = BundleHost::parse_list(&["a=10.0.0.1".into(), "b=10.0.0.1".into()]).unwrap_err();
    assert!(err.to_string().contains("also used by a=10.0.0.1"), "{err}");
    let err = BundleHost::parse("Etcd_0=10.0.0.1").unwrap_err();
    assert!(err.to_string().contains("RFC 1123"), "{err}");
    let err = BundleHost::parse("etcd-0").unwrap_err();
    assert!(err.to_string().contains("expected name=address"), "{err}");
    let err = BundleHost::parse("etcd-0=10.0.0.300").unwrap_err();
    assert!(err.to_string().contains("is not an IP address"), "{err}");
    assert!(BundleHost::parse_list(&[]).is_err());
}

#[test]
fn host_configs_carry_the_cluster_settings_and_the_member_list() {
    let cfg = config(
        "kubernetesVersion: v1.32.1\nimageRepository: mirror.example.com\netcd:\n  local:\n    extraArgs:\n    - name: quota-backend-bytes\n      value: \"4294967296\"\n    - name: initial-cluster-state\n      value: existing\n",
    );
    let hosts =
        BundleHost::parse_list(&["etcd-0=10.0.1.10".into(), "etcd-1=10.0.1.11".into()]).unwrap();
    let text = bundle::host_config_yaml(
        &cfg,
        &hosts[1],
        &hosts,
        Path::new("/etc/kubernetes/pki"),
        Path::new("/var/lib/etcd"),
    )
    .unwrap();
    let host_cfg = load_str(&text, None).unwrap();
    assert!(host_cfg.warnings.is_empty(), "{:?}", host_cfg.warnings);
    assert_eq!(host_cfg.node.name.as_deref(), Some("etcd-1"));
    assert_eq!(
        host_cfg.cluster.kubernetes_version.as_deref(),
        Some("v1.32.1")
    );
    let command = command_of(&first(&host_cfg).unwrap());
    for wanted in [
        "--initial-cluster=etcd-0=https://10.0.1.10:2380,etcd-1=https://10.0.1.11:2380",
        "--initial-cluster-state=new",
        "--quota-backend-bytes=4294967296",
        "--name=etcd-1",
    ] {
        assert!(
            command.contains(&wanted.to_string()),
            "{wanted} missing from {command:?}"
        );
    }
    assert!(!command.contains(&"--initial-cluster-state=existing".to_string()));
}

/// The CA key must never reach a host folder, not even as a temporary file that a crash
/// could leave behind: every file the bundle writes goes through `write_atomic`, whose
/// hook sees it.
#[test]
fn the_bundle_never_writes_the_ca_key_into_a_host_folder() {
    thread_local!(static WRITTEN: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) });
    let out = tempfile::tempdir().unwrap();
    let cfg = config("");
    let hosts =
        BundleHost::parse_list(&["etcd-0=10.0.1.10".into(), "etcd-1=10.0.1.11".into()]).unwrap();
    crate::fsutil::set_fault_hook(Some(|path, step| {
        if step == crate::fsutil::WriteStep::Created {
            WRITTEN.with(|w| w.borrow_mut().push(path.to_path_buf()));
        }
        Ok(())
    }));
    let result = write_external_bundle(
        &cfg,
        &hosts,
        &BundleOptions {
            out_dir: out.path().to_path_buf(),
            paths: BundlePaths::InBundle,
        },
    );
    crate::fsutil::set_fault_hook(None);
    result.unwrap();
    let written = WRITTEN.with(|w| w.take());
    let ca_keys: Vec<_> = written
        .iter()
        .filter(|p| p.ends_with("etcd/ca.key"))
        .collect();
    assert_eq!(ca_keys, [&out.path().join("ca/etcd/ca.key")], "{written:?}");
    for host in ["etcd-0", "etcd-1"] {
        assert!(out.path().join(host).join("pki/etcd/ca.crt").exists());
        assert!(!out.path().join(host).join("pki/etcd/ca.key").exists());
    }
}

/// kubeadm's `PatchStaticPod` (`patches.directory`) is not implemented: refused, never
/// silently skipped.
#[test]
fn patches_are_refused_not_ignored() {
    let cfg = load_str(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  name: cp-0
localAPIEndpoint:
  advertiseAddress: 10.0.0.10
patches:
  directory: /etc/kubeadm/patches
",
        Some(Path::new("p.yaml")),
    )
    .unwrap();
    let err = first(&cfg).unwrap_err().to_string();
    assert!(
        err.starts_with("p.yaml: patches.directory: kubeadm would patch the etcd static Pod with the files in /etc/kubeadm/patches"),
        "{err}"
    );
    assert!(err.contains("kubeadm-etcd does not apply patches"), "{err}");
}

/// kubeadm's `RunComponentAsNonRoot` under `RootlessControlPlane` (local.go
/// `prepareAndWriteEtcdStaticPod`, 1.22-1.34): refused.
#[test]
fn rootless_control_plane_is_refused() {
    let cfg = config("kubernetesVersion: v1.33.0\nfeatureGates:\n  RootlessControlPlane: true\n");
    let err = first(&cfg).unwrap_err().to_string();
    assert!(
        err.contains(
            ": featureGates.RootlessControlPlane: kubeadm v1.33 would create the kubeadm-etcd user"
        ),
        "{err}"
    );
}

/// The release emulated decides the probes (staticpod/utils.go; k/k#124465, #132776) and
/// the creationTimestamp (k/k#130989), whatever etcd the image runs.
#[test]
fn probes_and_metadata_follow_the_kubeadm_release() {
    let container = |pod: &Pod| pod.spec.as_ref().unwrap().containers[0].clone();
    let pod = first(&config(
        "kubernetesVersion: v1.30.1\netcd:\n  local:\n    imageTag: 3.6.9-0\n",
    ))
    .unwrap();
    let c = container(&pod);
    assert_eq!(
        c.liveness_probe.unwrap().http_get.unwrap().path.as_deref(),
        Some("/health?exclude=NOSPACE&serializable=true")
    );
    assert!(c.readiness_probe.is_none());
    assert!(render_yaml(&pod)
        .unwrap()
        .contains("  creationTimestamp: null\n"));

    let pod = first(&config("kubernetesVersion: v1.34.1\n")).unwrap();
    let c = container(&pod);
    let port = c.ports.unwrap();
    assert_eq!(port[0].name.as_deref(), Some("probe-port"));
    assert_eq!(port[0].container_port, 2381);
    assert_eq!(
        c.startup_probe.unwrap().http_get.unwrap().port,
        IntOrString::String("probe-port".into())
    );
    assert!(!render_yaml(&pod).unwrap().contains("creationTimestamp"));
}

#[test]
fn the_emulated_release_is_named_and_overridable() {
    let mut cfg = config("kubernetesVersion: v1.34.1\n");
    assert_eq!(
        cfg.emulated_kubeadm(),
        "emulating kubeadm v1.34 (the minor of kubernetesVersion v1.34.1)"
    );
    assert_eq!(etcd_version_of(&cfg).unwrap().0, "3.6.5-0");
    cfg.kubeadm_minor = Some(35);
    assert_eq!(
        cfg.emulated_kubeadm(),
        "emulating kubeadm v1.35 (as requested)"
    );
    // kubeadm 1.35 deploys etcd 3.5.24-0 for Kubernetes 1.34 (k/k#134779).
    assert_eq!(etcd_version_of(&cfg).unwrap().0, "3.5.24-0");
}

/// A /livez probe on an etcd without /livez is kubeadm's behaviour, and worth a warning.
#[test]
fn probes_an_etcd_cannot_answer_are_warned_about() {
    let cfg = config("kubernetesVersion: v1.33.0\netcd:\n  local:\n    imageTag: 3.5.1-0\n");
    let warning = etcd_version_of(&cfg).unwrap().2.unwrap();
    assert!(
        warning.contains(
            "kubeadm v1.33 probes etcd on /livez and /readyz, which etcd 3.5.1 does not serve"
        ),
        "{warning}"
    );
}
