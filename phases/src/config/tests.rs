use std::path::Path;

use super::*;

fn testdata(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/config")
        .join(rel)
}

fn load_relative(rel: &str) -> Result<KubeadmConfig, ConfigError> {
    let text = std::fs::read_to_string(testdata(rel)).unwrap();
    load_str(&text, Some(Path::new(&format!("testdata/config/{rel}"))))
}

#[test]
fn valid_configurations_resolve_with_kubeadm_defaults() {
    insta::glob!("../../../testdata/config", "*.yaml", |path| {
        let rel = path.file_name().unwrap().to_str().unwrap();
        let cfg = load_relative(rel).unwrap();
        insta::assert_yaml_snapshot!(cfg);
    });
}

#[test]
fn defaults_are_kubeadms() {
    let cfg = load_str(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n",
        None,
    )
    .unwrap();
    assert_eq!(
        cfg.cluster.certificates_dir,
        Path::new("/etc/kubernetes/pki")
    );
    assert_eq!(cfg.cluster.image_repository, "registry.k8s.io");
    assert_eq!(
        cfg.cluster.encryption_algorithm,
        EncryptionAlgorithm::Rsa2048
    );
    assert_eq!(
        cfg.cluster.certificate_validity_period.to_string(),
        "8760h0m0s"
    );
    assert_eq!(
        cfg.cluster.ca_certificate_validity_period.to_string(),
        "87600h0m0s"
    );
    assert_eq!(cfg.timeouts.etcd_api_call.to_string(), "2m0s");
    let Etcd::Local(local) = &cfg.cluster.etcd else {
        panic!("local etcd by default")
    };
    assert_eq!(local.data_dir, Path::new("/var/lib/etcd"));
    assert!(cfg.warnings.is_empty());
}

#[test]
fn v1beta3_map_and_v1beta4_list_both_become_ordered_lists() {
    let v3 = load_relative("v1beta3.yaml").unwrap();
    let Etcd::Local(local) = &v3.cluster.etcd else {
        panic!()
    };
    assert_eq!(
        local.extra_args,
        vec![
            Arg {
                name: "election-timeout".into(),
                value: "2500".into()
            },
            Arg {
                name: "heartbeat-interval".into(),
                value: "250".into()
            },
        ]
    );
    let v4 = load_str(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\netcd:\n  local:\n    extraArgs:\n    - {name: listen-metrics-urls, value: http://127.0.0.1:2381}\n    - {name: listen-metrics-urls, value: http://10.0.0.1:2381}\n",
        None,
    )
    .unwrap();
    let Etcd::Local(local) = &v4.cluster.etcd else {
        panic!()
    };
    assert_eq!(local.extra_args.len(), 2, "v1beta4 keeps duplicates");
}

#[test]
fn join_configuration_gives_the_control_plane_advertise_address() {
    let cfg = load_relative("v1beta4-join.yaml").unwrap();
    assert_eq!(cfg.node_kind, Some(NodeKind::JoinConfiguration));
    assert_eq!(cfg.node.name.as_deref(), Some("cp-6"));
    assert_eq!(
        cfg.node.advertise_address,
        Some("10.0.0.16".parse().unwrap())
    );
    assert_eq!(cfg.timeouts.etcd_api_call.to_string(), "5m0s");
    assert!(
        cfg.warnings.is_empty(),
        "discovery is accepted silently: {:?}",
        cfg.warnings
    );
}

#[test]
fn unknown_fields_warn_and_loading_goes_on() {
    let cfg = load_str(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\netcd:\n  local:\n    dataDirr: /data\nfoo: 1\n",
        Some(Path::new("k.yaml")),
    )
    .unwrap();
    assert_eq!(
        cfg.warnings,
        vec![
            "k.yaml: ClusterConfiguration (kubeadm.k8s.io/v1beta4): unknown field \"etcd.local.dataDirr\"; ignoring it (kubeadm's strict decoding would report it too)",
            "k.yaml: ClusterConfiguration (kubeadm.k8s.io/v1beta4): unknown field \"foo\"; ignoring it (kubeadm's strict decoding would report it too)",
        ]
    );
}

#[test]
fn v1beta4_fields_in_v1beta3_are_ignored_with_a_warning() {
    let cfg = load_str(
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nencryptionAlgorithm: ECDSA-P256\n",
        None,
    )
    .unwrap();
    assert_eq!(
        cfg.cluster.encryption_algorithm,
        EncryptionAlgorithm::Rsa2048
    );
    assert_eq!(cfg.warnings.len(), 1);
    assert!(cfg.warnings[0].contains("encryptionAlgorithm is a v1beta4 field; ignoring it"));
}

/// Every bad configuration, with the message a user sees. The full texts are in the
/// snapshot; the table pins the parts that must never regress: the document, the
/// field, the value and the line.
#[test]
fn bad_configurations_get_clear_errors() {
    let cases: &[(&str, &[&str])] = &[
        ("unknown-api-version.yaml", &["unsupported apiVersion \"kubeadm.k8s.io/v1beta2\"", "kubeadm config migrate"]),
        ("unknown-kind.yaml", &["unknown kind \"EtcdConfiguration\""]),
        ("wrong-type.yaml", &["field etcd.local.dataDir (line 5, column 5)", "invalid type: sequence, expected a string"]),
        ("invalid-ip.yaml", &["field localAPIEndpoint.advertiseAddress (line 6, column 3)", "invalid IP address \"10.0.0.300\""]),
        ("invalid-duration.yaml", &["field certificateValidityPeriod (line 3, column 1)", "invalid duration \"1year\""]),
        ("local-and-external.yaml", &["etcd.local and etcd.external are both set"]),
        ("v1beta3-list-extra-args.yaml", &["ClusterConfiguration (kubeadm.k8s.io/v1beta3), field etcd.local.extraArgs (line 5, column 5)", "expected a map"]),
        ("malformed-kubernetes-version.yaml", &["field kubernetesVersion (line 3, column 1)", "invalid value \"v1.thirty-two\""]),
        ("invalid-extra-arg.yaml", &["field etcd.local.extraArgs[0].name (line 6, column 9)", "invalid flag name \"--snapshot-count\"", "(\"snapshot-count\")"]),
        ("invalid-encryption-algorithm.yaml", &["field encryptionAlgorithm (line 3, column 1)", "\"RSA-1024\"", "RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384"]),
        ("not-yaml.yaml", &["document 1 is not valid YAML (line"]),
        ("missing-kind.yaml", &["document 1", "missing kind"]),
        ("invalid-node-name.yaml", &["field nodeRegistration.name (line 4, column 3)", "invalid value \"CP_1\""]),
        ("relative-data-dir.yaml", &["field etcd.local.dataDir (line 5, column 5)", "must be an absolute path"]),
        // kubeadm's ValidateCertSANs: the entry is named, the configuration refused.
        ("invalid-cert-san.yaml", &["field etcd.local.serverCertSANs[1]", "invalid value \"not a name!\": altname is not a valid IP address, DNS label or a DNS label with subdomain wildcards"]),
        // kubeadm's ValidateFeatureGates ("... is not a valid feature name"), features.go of 1.34.
        ("unknown-feature-gate.yaml", &["field featureGates.EtcdLernerMode (line 5, column 3)", "EtcdLernerMode is not a valid feature name (kubeadm v1.34 knows: ", "NodeLocalCRISocket"]),
        // features.go of 1.36: PublicKeysECDSA removed with v1beta3 (k/k#136016).
        ("removed-feature-gate.yaml", &["field featureGates.PublicKeysECDSA", "PublicKeysECDSA is not a valid feature name: kubeadm removed it in v1.36", "encryptionAlgorithm"]),
        // features.go of 1.32: EtcdLearnerMode GA and locked (k/k#126374).
        ("locked-feature-gate.yaml", &["field featureGates.EtcdLearnerMode", "EtcdLearnerMode is locked to true and cannot be set to false"]),
        // Valid in kubeadm 1.27-1.31, refused here: this tool only joins through learners.
        ("etcd-learner-mode-false.yaml", &["field featureGates.EtcdLearnerMode (line 5, column 3)", "only adds members as learners", "remove the gate or set it to true"]),
        // v1beta3 conversion: apiServer.timeoutForControlPlane → controlPlaneComponentHealthCheck.
        ("v1beta3-invalid-timeout-for-control-plane.yaml", &["field apiServer.timeoutForControlPlane (line 4, column 3)", "invalid duration \"four minutes\""]),
    ];
    let mut all = String::new();
    for (file, fragments) in cases {
        let message = load_relative(&format!("bad/{file}"))
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!("testdata/config/bad/{file}: ")),
            "{message}"
        );
        for fragment in *fragments {
            assert!(
                message.contains(fragment),
                "{file}: {message:?} lacks {fragment:?}"
            );
        }
        all.push_str(&format!("{file}:\n  {message}\n"));
    }
    let bad_dir = testdata("bad");
    let fixtures = std::fs::read_dir(bad_dir).unwrap().count();
    assert_eq!(
        fixtures,
        cases.len(),
        "every fixture in testdata/config/bad has a case"
    );
    insta::assert_snapshot!(all);
}

#[test]
fn missing_node_identity_says_where_to_set_it() {
    let cfg = load_str(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n",
        Some(Path::new("c.yaml")),
    )
    .unwrap();
    assert_eq!(
        cfg.require_node_name().unwrap_err().to_string(),
        "c.yaml: no node name: set nodeRegistration.name in the InitConfiguration or JoinConfiguration, or pass --node-name"
    );
    assert!(cfg
        .require_advertise_address()
        .unwrap_err()
        .to_string()
        .contains("or pass --advertise-address"));
}

#[test]
fn init_and_join_together_are_refused() {
    let err = load_str(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\n",
        None,
    )
    .unwrap_err();
    assert!(err
        .to_string()
        .contains("both an InitConfiguration and a JoinConfiguration"));
}

/// kubeadm's `SetAPIEndpointDynamicDefaults`: an unspecified advertise address means
/// "choose one" (the default route's), never an error.
#[test]
fn an_unspecified_advertise_address_is_left_to_the_host_default() {
    let cfg = load_str(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nnodeRegistration:\n  name: cp-0\nlocalAPIEndpoint:\n  advertiseAddress: 0.0.0.0\n",
        None,
    )
    .unwrap();
    assert_eq!(cfg.node.advertise_address, None);
}

/// A ClusterConfiguration-only file (the external-etcd guide's `kubeadm init phase etcd
/// local --config`) gets the host's name and default-route address, as with kubeadm.
#[test]
fn host_defaults_fill_what_the_file_leaves_out() {
    let mut cfg = load_str(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n",
        None,
    )
    .unwrap();
    let notes = cfg.apply_host_defaults();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_lowercase();
    if super::validate_node_name(&hostname).is_ok() {
        assert_eq!(cfg.node.name.as_deref(), Some(hostname.as_str()));
        assert!(notes[0].contains("defaults to the host name"), "{notes:?}");
    }
    // What is set is never replaced.
    let mut named = cfg.clone();
    named.node.name = Some("given".into());
    named.node.advertise_address = Some("10.1.2.3".parse().unwrap());
    assert!(named.apply_host_defaults().is_empty());
    assert_eq!(named.node.name.as_deref(), Some("given"));
}

/// v1beta3's apiServer.timeoutForControlPlane is kubeadm's
/// timeouts.controlPlaneComponentHealthCheck (v1beta3 conversion.go).
#[test]
fn v1beta3_timeout_for_control_plane_is_the_health_check_timeout() {
    let cfg = load_str(
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer:\n  timeoutForControlPlane: 7m30s\n",
        None,
    )
    .unwrap();
    assert_eq!(
        cfg.timeouts.control_plane_component_health_check.0,
        std::time::Duration::from_secs(450)
    );
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

/// A deprecated gate is accepted with a warning (kubeadm's CheckDeprecatedFlags), and
/// `patches.directory` is recorded for the manifest phase to refuse.
#[test]
fn deprecated_gates_warn_and_patches_are_recorded() {
    let cfg = load_str(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\npatches:\n  directory: /etc/kubeadm/patches\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.33.0\nfeatureGates:\n  PublicKeysECDSA: true\n",
        Some(Path::new("p.yaml")),
    )
    .unwrap();
    assert_eq!(
        cfg.warnings,
        ["p.yaml: ClusterConfiguration: featureGates.PublicKeysECDSA is deprecated in kubeadm v1.33"]
    );
    assert_eq!(
        cfg.patches_directory.as_deref(),
        Some(Path::new("/etc/kubeadm/patches"))
    );
}
