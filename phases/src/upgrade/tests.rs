//! The migration rules as tables: every gate at every version boundary, every error
//! message, and the fields and order the migration must not touch.

use proptest::prelude::*;
use serde_yaml::{Mapping, Value};

use super::feature_gates::{gate_table, GateState};
use super::*;

fn opts(target: &str) -> MigrateOptions {
    MigrateOptions::new(target)
}

fn config_with_gates(gates: &[(&str, bool)]) -> String {
    let mut yaml = String::from("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n");
    if !gates.is_empty() {
        yaml.push_str("featureGates:\n");
        for (name, value) in gates {
            yaml.push_str(&format!("  {name}: {value}\n"));
        }
    }
    yaml
}

/// Gates after migration (`name=value` in document order), lines and warnings.
type Migrated = (Vec<String>, Vec<String>, Vec<String>);

/// The featureGates after migration, as `name=value` in document order, or the error.
fn gates_after(gates: &[(&str, bool)], o: &MigrateOptions) -> Result<Migrated, String> {
    let (yaml, lines, warnings) =
        migrate_cluster_configuration(&config_with_gates(gates), o).map_err(|e| e.to_string())?;
    let doc: Value = serde_yaml::from_str(&yaml).unwrap();
    let gates = match doc.get("featureGates") {
        None => vec![],
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| format!("{}={}", k.as_str().unwrap(), v.as_bool().unwrap()))
            .collect(),
        Some(other) => panic!("featureGates is {other:?}"),
    };
    Ok((gates, lines, warnings))
}

/// EtcdLearnerMode at each boundary of its history, set to true, false or not at all,
/// with and without `enable_learner_mode` (and `force` where it matters).
#[test]
fn etcd_learner_mode_rules_at_every_boundary() {
    // (target, gate as set, enable_learner_mode, force, expected gates or error fragment)
    type Case = (
        &'static str,
        Option<bool>,
        bool,
        bool,
        Result<&'static str, &'static str>,
    );
    let cases: &[Case] = &[
        ("v1.26.0", None, false, false, Ok("")),
        (
            "v1.26.0",
            None,
            true,
            false,
            Err("Kubernetes v1.26.0 has no EtcdLearnerMode feature gate (it is alpha from v1.27)"),
        ),
        ("v1.26.0", Some(true), false, false, Ok("")),
        ("v1.26.0", Some(false), false, false, Ok("")),
        ("v1.27.0", None, false, false, Ok("")),
        ("v1.27.0", None, true, false, Ok("EtcdLearnerMode=true")),
        (
            "v1.27.0",
            Some(true),
            false,
            false,
            Ok("EtcdLearnerMode=true"),
        ),
        (
            "v1.27.0",
            Some(false),
            false,
            false,
            Ok("EtcdLearnerMode=false"),
        ),
        (
            "v1.27.0",
            Some(false),
            true,
            false,
            Ok("EtcdLearnerMode=true"),
        ),
        ("v1.28.5", None, true, false, Ok("EtcdLearnerMode=true")),
        (
            "v1.28.5",
            Some(false),
            false,
            false,
            Ok("EtcdLearnerMode=false"),
        ),
        ("v1.29.0", None, false, false, Ok("")),
        ("v1.29.0", None, true, false, Ok("")),
        (
            "v1.29.0",
            Some(true),
            false,
            false,
            Ok("EtcdLearnerMode=true"),
        ),
        (
            "v1.29.0",
            Some(false),
            false,
            false,
            Ok("EtcdLearnerMode=false"),
        ),
        (
            "v1.29.0",
            Some(false),
            true,
            false,
            Ok("EtcdLearnerMode=true"),
        ),
        ("v1.31.4", None, true, false, Ok("")),
        (
            "v1.31.4",
            Some(false),
            false,
            false,
            Ok("EtcdLearnerMode=false"),
        ),
        ("v1.32.0", None, false, false, Ok("")),
        ("v1.32.0", None, true, false, Ok("")),
        ("v1.32.0", Some(true), false, false, Ok("")),
        (
            "v1.32.0",
            Some(false),
            false,
            false,
            Err("feature gate \"EtcdLearnerMode\" is set to false"),
        ),
        (
            "v1.32.0",
            Some(false),
            true,
            false,
            Err("GA and locked to true in Kubernetes v1.32"),
        ),
        ("v1.32.0", Some(false), false, true, Ok("")),
        ("v1.33.0", None, false, false, Ok("")),
        ("v1.33.0", None, true, false, Ok("")),
        ("v1.33.0", Some(true), false, false, Ok("")),
        ("v1.33.0", Some(false), false, false, Ok("")),
        ("v1.36.0", Some(true), true, false, Ok("")),
    ];
    for (target, set, learner, force, expected) in cases {
        let gates: Vec<(&str, bool)> = set.iter().map(|v| ("EtcdLearnerMode", *v)).collect();
        let mut o = opts(target);
        o.enable_learner_mode = *learner;
        o.force = *force;
        let got = gates_after(&gates, &o).map(|(g, _, _)| g.join(","));
        match expected {
            Ok(want) => assert_eq!(
                got.as_deref(),
                Ok(*want),
                "{target} {set:?} learner={learner} force={force}"
            ),
            Err(fragment) => {
                let err = got.expect_err(&format!("{target} {set:?} should fail"));
                assert!(err.contains(fragment), "{target} {set:?}: {err}");
            }
        }
    }
}

/// The lines and warnings that explain the EtcdLearnerMode decisions.
#[test]
fn etcd_learner_mode_lines_and_warnings() {
    let (_, lines, _) = gates_after(&[("EtcdLearnerMode", true)], &opts("v1.33.0")).unwrap();
    assert_eq!(lines[0], "[upgrade/feature-gates] Removing feature gate \"EtcdLearnerMode\": removed in Kubernetes v1.33");

    let (_, lines, _) = gates_after(&[("EtcdLearnerMode", true)], &opts("1.32.1")).unwrap();
    assert_eq!(
        lines[0],
        "[upgrade/feature-gates] Removing feature gate \"EtcdLearnerMode\": GA and locked to true since Kubernetes v1.32"
    );

    let mut o = opts("v1.32.0");
    o.force = true;
    let (_, lines, warnings) = gates_after(&[("EtcdLearnerMode", false)], &o).unwrap();
    assert_eq!(
        lines[0],
        "[upgrade/feature-gates] Removing feature gate \"EtcdLearnerMode\": set to false but GA and locked to true in Kubernetes v1.32 (forced)"
    );
    assert_eq!(
        warnings,
        ["feature gate \"EtcdLearnerMode\" was explicitly set to false; Kubernetes v1.32 locks it to true, so after the \
          upgrade the feature is enabled: the cluster's behaviour changes"]
    );

    let (_, _, warnings) = gates_after(&[("EtcdLearnerMode", false)], &opts("v1.33.0")).unwrap();
    assert_eq!(
        warnings,
        ["feature gate \"EtcdLearnerMode\" was set to false, but kubeadm dropped it in v1.33 and behaves as if it were true: \
          the cluster's behaviour changes"]
    );

    let mut o = opts("v1.28.0");
    o.enable_learner_mode = true;
    let (_, lines, _) = gates_after(&[], &o).unwrap();
    assert_eq!(
        lines[..2],
        [
            "[upgrade/feature-gates] Setting feature gate \"EtcdLearnerMode\" to true: alpha in Kubernetes v1.28, off unless set",
            "[upgrade/feature-gates] etcd learner mode is on in Kubernetes v1.28 and etcd 3.5.15 (3.5.15-0, kubeadm's default for Kubernetes v1.28) supports it",
        ]
    );
    let (_, lines, warnings) = gates_after(&[("EtcdLearnerMode", false)], &o).unwrap();
    assert!(lines.contains(&"[upgrade/feature-gates] Changing feature gate \"EtcdLearnerMode\" from false to true: learner mode was requested".to_string()));
    assert_eq!(
        warnings,
        ["feature gate \"EtcdLearnerMode\" was explicitly false; enabling learner mode as requested overrides that choice"]
    );

    let mut o = opts("v1.30.2");
    o.enable_learner_mode = true;
    let (_, lines, _) = gates_after(&[], &o).unwrap();
    assert_eq!(
        lines[0],
        "[upgrade/feature-gates] Not setting feature gate \"EtcdLearnerMode\": beta and on by default in Kubernetes v1.30"
    );
    let mut o = opts("v1.32.0");
    o.enable_learner_mode = true;
    let (_, lines, _) = gates_after(&[], &o).unwrap();
    assert_eq!(
        lines[0],
        "[upgrade/feature-gates] Not setting feature gate \"EtcdLearnerMode\": GA and always on in Kubernetes v1.32"
    );
    let mut o = opts("v1.34.0");
    o.enable_learner_mode = true;
    let (_, lines, _) = gates_after(&[], &o).unwrap();
    assert_eq!(
        lines[0],
        "[upgrade/feature-gates] Not setting feature gate \"EtcdLearnerMode\": removed in Kubernetes v1.33, learner mode is always on"
    );
}

/// Every gate of the table, just below and at each boundary of its history, set to
/// true and to false: the outcome follows the stage the table gives for that minor.
#[test]
fn every_gate_at_every_boundary_follows_its_stage() {
    let table = gate_table();
    let mut checked = 0;
    for gate in &table.gates {
        let mut minors: Vec<u64> = gate
            .history
            .iter()
            .flat_map(|e| [e.since - 1, e.since])
            .collect();
        minors.push(table.known_through);
        minors.sort();
        minors.dedup();
        for minor in minors {
            for set in [true, false] {
                let target = format!("v1.{minor}.0");
                // NB: EtcdLearnerMode's learner check would need an etcd >= 3.4; all
                // default tags are, so the check never interferes here.
                let got = gates_after(&[(gate.name.as_str(), set)], &opts(&target));
                let kept = format!("{}={set}", gate.name);
                let what = format!("{} = {set} at {target}", gate.name);
                match gate.state(minor) {
                    GateState::NotYetIntroduced { introduced } => {
                        let (g, lines, _) = got.unwrap();
                        assert!(g.is_empty(), "{what}: {g:?}");
                        assert_eq!(
                            lines[0],
                            format!(
                                "[upgrade/feature-gates] Removing feature gate {:?}: Kubernetes v1.{minor} does not know it yet (introduced in v1.{introduced})",
                                gate.name
                            ),
                            "{what}"
                        );
                    }
                    GateState::Removed { entry, .. } => {
                        let (g, lines, _) = got.unwrap();
                        assert!(g.is_empty(), "{what}: {g:?}");
                        assert_eq!(
                            lines[0],
                            format!(
                                "[upgrade/feature-gates] Removing feature gate {:?}: removed in Kubernetes v1.{}",
                                gate.name, entry.since
                            ),
                            "{what}"
                        );
                    }
                    GateState::Available(entry) if entry.locked && set => {
                        let (g, _, _) = got.unwrap();
                        assert!(g.is_empty(), "{what}: {g:?}");
                    }
                    GateState::Available(entry) if entry.locked => {
                        assert!(got.unwrap_err().contains("GA and locked to true"), "{what}");
                    }
                    GateState::Available(entry) => {
                        let (g, lines, warnings) = got.unwrap();
                        assert_eq!(g, std::slice::from_ref(&kept), "{what}");
                        assert_eq!(
                            lines[0],
                            format!(
                                "[upgrade/feature-gates] Keeping feature gate {:?} = {set}: {} in Kubernetes v1.{minor} (default {})",
                                gate.name,
                                entry.stage.name(),
                                entry.default.unwrap()
                            ),
                            "{what}"
                        );
                        let deprecated = warnings.iter().any(|w| w.contains("is deprecated since"));
                        assert_eq!(
                            deprecated,
                            entry.stage == feature_gates::Stage::Deprecated,
                            "{what}"
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} cases");
}

/// Hand-written expectations for the other gates, independent of the table's encoding.
#[test]
fn other_gates_at_their_boundaries() {
    type Case = (
        &'static str,
        bool,
        &'static str,
        Result<&'static str, &'static str>,
    );
    let cases: &[Case] = &[
        ("WaitForAllControlPlaneComponents", true, "v1.29.0", Ok("")),
        (
            "WaitForAllControlPlaneComponents",
            true,
            "v1.30.0",
            Ok("WaitForAllControlPlaneComponents=true"),
        ),
        (
            "WaitForAllControlPlaneComponents",
            false,
            "v1.33.0",
            Ok("WaitForAllControlPlaneComponents=false"),
        ),
        ("WaitForAllControlPlaneComponents", true, "v1.34.0", Ok("")),
        (
            "WaitForAllControlPlaneComponents",
            false,
            "v1.34.0",
            Err("locked to true in Kubernetes v1.34"),
        ),
        ("WaitForAllControlPlaneComponents", false, "v1.35.0", Ok("")),
        (
            "ControlPlaneKubeletLocalMode",
            true,
            "v1.31.0",
            Ok("ControlPlaneKubeletLocalMode=true"),
        ),
        (
            "ControlPlaneKubeletLocalMode",
            false,
            "v1.34.0",
            Ok("ControlPlaneKubeletLocalMode=false"),
        ),
        (
            "ControlPlaneKubeletLocalMode",
            false,
            "v1.35.0",
            Err("locked to true in Kubernetes v1.35"),
        ),
        ("ControlPlaneKubeletLocalMode", true, "v1.36.0", Ok("")),
        ("NodeLocalCRISocket", true, "v1.31.0", Ok("")),
        (
            "NodeLocalCRISocket",
            false,
            "v1.35.0",
            Ok("NodeLocalCRISocket=false"),
        ),
        (
            "NodeLocalCRISocket",
            false,
            "v1.36.0",
            Err("locked to true in Kubernetes v1.36"),
        ),
        ("NodeLocalCRISocket", true, "v1.36.0", Ok("")),
        ("NodeLocalCRISocket", true, "v1.37.0", Ok("")),
        (
            "PublicKeysECDSA",
            true,
            "v1.30.0",
            Ok("PublicKeysECDSA=true"),
        ),
        (
            "PublicKeysECDSA",
            true,
            "v1.35.0",
            Ok("PublicKeysECDSA=true"),
        ),
        ("PublicKeysECDSA", true, "v1.36.0", Ok("")),
        (
            "RootlessControlPlane",
            true,
            "v1.34.0",
            Ok("RootlessControlPlane=true"),
        ),
        ("RootlessControlPlane", true, "v1.35.0", Ok("")),
        (
            "UpgradeAddonsBeforeControlPlane",
            true,
            "v1.30.0",
            Ok("UpgradeAddonsBeforeControlPlane=true"),
        ),
        ("UpgradeAddonsBeforeControlPlane", false, "v1.31.0", Ok("")),
        (
            "UnversionedKubeletConfigMap",
            false,
            "v1.24.0",
            Ok("UnversionedKubeletConfigMap=false"),
        ),
        (
            "UnversionedKubeletConfigMap",
            false,
            "v1.25.0",
            Err("locked to true in Kubernetes v1.25"),
        ),
        ("UnversionedKubeletConfigMap", true, "v1.26.0", Ok("")),
        ("IPv6DualStack", true, "v1.22.0", Ok("IPv6DualStack=true")),
        ("IPv6DualStack", true, "v1.23.0", Ok("")),
        ("IPv6DualStack", true, "v1.24.0", Ok("")),
        ("SomeFutureGate", true, "v1.33.0", Ok("SomeFutureGate=true")),
    ];
    for (gate, set, target, expected) in cases {
        let got = gates_after(&[(gate, *set)], &opts(target)).map(|(g, _, _)| g.join(","));
        match expected {
            Ok(want) => assert_eq!(got.as_deref(), Ok(*want), "{gate}={set} at {target}"),
            Err(fragment) => {
                let err = got.expect_err(&format!("{gate}={set} at {target} should fail"));
                assert!(err.contains(fragment), "{gate} at {target}: {err}");
            }
        }
    }
}

#[test]
fn removals_and_deprecations_explain_what_changes() {
    let (_, _, warnings) = gates_after(&[("PublicKeysECDSA", true)], &opts("v1.36.0")).unwrap();
    assert_eq!(
        warnings,
        [
            "feature gate \"PublicKeysECDSA\" was set to true, but kubeadm dropped it in v1.36 and behaves as if it were false: \
             the cluster's behaviour changes (ECDSA keys are selected with the v1beta4 field encryptionAlgorithm (ECDSA-P256) instead)"
        ]
    );
    let (_, _, warnings) =
        gates_after(&[("RootlessControlPlane", true)], &opts("v1.31.0")).unwrap();
    assert_eq!(
        warnings,
        ["feature gate \"RootlessControlPlane\" is deprecated since Kubernetes v1.31 and will be removed: plan to stop using it"]
    );
    let (gates, _, warnings) = gates_after(&[("SomeFutureGate", true)], &opts("v1.33.0")).unwrap();
    assert_eq!(gates, ["SomeFutureGate=true"]);
    assert_eq!(
        warnings,
        ["feature gate \"SomeFutureGate\" is not in this tool's table of kubeadm feature gates; kept as it is: check that \
          kubeadm v1.33 accepts it"]
    );
}

#[test]
fn gates_keep_their_order_and_an_emptied_map_is_removed() {
    let gates = [
        ("WaitForAllControlPlaneComponents", false),
        ("EtcdLearnerMode", true),
        ("ControlPlaneKubeletLocalMode", true),
        ("RootlessControlPlane", true),
    ];
    let (g, _, _) = gates_after(&gates, &opts("v1.33.0")).unwrap();
    assert_eq!(
        g,
        [
            "WaitForAllControlPlaneComponents=false",
            "ControlPlaneKubeletLocalMode=true",
            "RootlessControlPlane=true"
        ]
    );

    let (yaml, lines, _) = migrate_cluster_configuration(
        &config_with_gates(&[("EtcdLearnerMode", true)]),
        &opts("v1.33.0"),
    )
    .unwrap();
    assert_eq!(
        yaml,
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"
    );
    assert_eq!(
        lines.last().unwrap(),
        "[upgrade/feature-gates] Removing featureGates: no feature gates are left"
    );
}

#[test]
fn an_empty_or_null_feature_gate_map_is_left_alone() {
    for yaml in [
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nfeatureGates: {}\n",
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nfeatureGates: null\n",
    ] {
        let (out, lines, _) = migrate_cluster_configuration(yaml, &opts("v1.33.0")).unwrap();
        assert_eq!(out, yaml);
        assert_eq!(
            lines,
            ["[upgrade/feature-gates] Nothing to change: the feature gates are already right for Kubernetes v1.33.0"]
        );
    }
}

/// A learner gate added to a configuration without featureGates lands where kubeadm
/// would write it (keys sorted), and every other key keeps its place.
#[test]
fn an_added_feature_gate_map_does_not_move_other_keys() {
    let yaml = "apiServer: {}\napiVersion: kubeadm.k8s.io/v1beta3\ncontrollerManager: {}\ndns: {}\netcd:\n  local:\n    dataDir: /var/lib/etcd\nimageRepository: registry.k8s.io\nkind: ClusterConfiguration\nkubernetesVersion: v1.27.3\n";
    let mut o = opts("v1.28.0");
    o.enable_learner_mode = true;
    let (out, _, _) = migrate_cluster_configuration(yaml, &o).unwrap();
    assert_eq!(
        out,
        "apiServer: {}\napiVersion: kubeadm.k8s.io/v1beta3\ncontrollerManager: {}\ndns: {}\netcd:\n  local:\n    dataDir: /var/lib/etcd\nfeatureGates:\n  EtcdLearnerMode: true\nimageRepository: registry.k8s.io\nkind: ClusterConfiguration\nkubernetesVersion: v1.27.3\n"
    );
    // Unsorted keys: appended, nothing moves.
    let yaml = "kind: ClusterConfiguration\napiVersion: kubeadm.k8s.io/v1beta4\nzzz: 1\n";
    let (out, _, _) = migrate_cluster_configuration(yaml, &o).unwrap();
    assert_eq!(
        out,
        "kind: ClusterConfiguration\napiVersion: kubeadm.k8s.io/v1beta4\nzzz: 1\nfeatureGates:\n  EtcdLearnerMode: true\n"
    );
}

#[test]
fn unmodelled_fields_and_their_order_survive() {
    let yaml = "\
zFirst: keep me first
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
featureGates:
  EtcdLearnerMode: true
  RootlessControlPlane: false
somethingNew:
  nested: [3, 1, 2]
  deeper: {b: 1, a: 2}
etcd:
  local:
    imageTag: 3.5.16-0
    extraArgs:
      quota-backend-bytes: \"8589934592\"
      auto-compaction-retention: \"8\"
aLast: true
";
    let (out, _, _) = migrate_cluster_configuration(yaml, &opts("v1.33.0")).unwrap();
    let before: Mapping = serde_yaml::from_str(yaml).unwrap();
    let after: Mapping = serde_yaml::from_str(&out).unwrap();
    let keys = |m: &Mapping| {
        m.keys()
            .map(|k| k.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&after), keys(&before));
    for (k, v) in &before {
        if k.as_str() != Some("featureGates") {
            assert_eq!(after.get(k), Some(v), "{k:?}");
        }
    }
    assert_eq!(
        serde_yaml::to_string(&after["featureGates"]).unwrap(),
        "RootlessControlPlane: false\n"
    );
    // The extraArgs of a v1beta3 configuration keep their (unsorted) order too.
    assert!(out.contains("extraArgs:\n      quota-backend-bytes: \"8589934592\"\n      auto-compaction-retention: \"8\"\n"));
}

#[test]
fn nothing_to_change_returns_the_input_byte_for_byte() {
    // Flow style and comments would not survive a re-serialization; they must not need to.
    let yaml = "# kept\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking: {dnsDomain: cluster.local, serviceSubnet: 10.96.0.0/12}\nfeatureGates:\n  ControlPlaneKubeletLocalMode: false  # why not\n";
    let (out, lines, warnings) = migrate_cluster_configuration(yaml, &opts("v1.34.0")).unwrap();
    assert_eq!(out, yaml);
    assert_eq!(
        lines,
        [
            "[upgrade/feature-gates] Keeping feature gate \"ControlPlaneKubeletLocalMode\" = false: beta in Kubernetes v1.34 (default true)",
            "[upgrade/feature-gates] Nothing to change: the feature gates are already right for Kubernetes v1.34.0",
        ]
    );
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn v1beta3_converts_to_v1beta4_only_when_asked() {
    let yaml = "\
apiServer:
  extraArgs:
    authorization-mode: Node,RBAC
    audit-log-maxage: \"30\"
  timeoutForControlPlane: 4m0s
  certSANs:
  - 10.0.0.1
apiVersion: kubeadm.k8s.io/v1beta3
controllerManager:
  extraArgs:
    bind-address: 0.0.0.0
etcd:
  local:
    dataDir: /var/lib/etcd
    extraArgs:
      listen-metrics-urls: http://0.0.0.0:2381
featureGates:
  EtcdLearnerMode: true
kind: ClusterConfiguration
scheduler: {}
";
    let (out, _, warnings) = migrate_cluster_configuration(yaml, &opts("v1.31.0")).unwrap();
    assert!(
        out.starts_with("apiServer:\n  extraArgs:\n    authorization-mode: Node,RBAC\n"),
        "{out}"
    );
    assert!(out.contains("apiVersion: kubeadm.k8s.io/v1beta3\n"));
    assert!(warnings.is_empty(), "{warnings:?}");

    let mut o = opts("v1.31.0");
    o.api_version = Some("kubeadm.k8s.io/v1beta4".into());
    let (out, lines, warnings) = migrate_cluster_configuration(yaml, &o).unwrap();
    assert_eq!(
        out,
        "\
apiServer:
  extraArgs:
  - name: audit-log-maxage
    value: \"30\"
  - name: authorization-mode
    value: Node,RBAC
  certSANs:
  - 10.0.0.1
apiVersion: kubeadm.k8s.io/v1beta4
controllerManager:
  extraArgs:
  - name: bind-address
    value: 0.0.0.0
etcd:
  local:
    dataDir: /var/lib/etcd
    extraArgs:
    - name: listen-metrics-urls
      value: http://0.0.0.0:2381
featureGates:
  EtcdLearnerMode: true
kind: ClusterConfiguration
scheduler: {}
"
    );
    assert_eq!(
        lines,
        [
            "[upgrade/feature-gates] Keeping feature gate \"EtcdLearnerMode\" = true: beta in Kubernetes v1.31 (default true)",
            "[upgrade/feature-gates] Converting the ClusterConfiguration from kubeadm.k8s.io/v1beta3 to kubeadm.k8s.io/v1beta4",
            "[upgrade/feature-gates] Converting apiServer.extraArgs to a list of {name, value} sorted by name",
            "[upgrade/feature-gates] Converting controllerManager.extraArgs to a list of {name, value} sorted by name",
            "[upgrade/feature-gates] Converting etcd.local.extraArgs to a list of {name, value} sorted by name",
            "[upgrade/feature-gates] Removing apiServer.timeoutForControlPlane (4m0s): v1beta4 has no such ClusterConfiguration field",
        ]
    );
    assert_eq!(
        warnings,
        ["apiServer.timeoutForControlPlane (4m0s) moved to InitConfiguration/JoinConfiguration timeouts.controlPlaneComponentHealthCheck \
          in v1beta4; pass it there if you relied on it"]
    );

    // Asking for v1beta4 of a v1beta4 configuration, or v1beta3 of v1beta3, is a no-op.
    let v4 = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n";
    let mut o = opts("v1.33.0");
    o.api_version = Some("v1beta4".into());
    assert_eq!(migrate_cluster_configuration(v4, &o).unwrap().0, v4);
    let v3 = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n";
    o.api_version = Some("kubeadm.k8s.io/v1beta3".into());
    assert_eq!(migrate_cluster_configuration(v3, &o).unwrap().0, v3);
}

#[test]
fn v1beta3_for_kubernetes_1_36_is_warned_about() {
    let v3 = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n";
    let (_, _, warnings) = migrate_cluster_configuration(v3, &opts("v1.36.0")).unwrap();
    assert_eq!(
        warnings,
        ["the ClusterConfiguration stays kubeadm.k8s.io/v1beta3, which kubeadm v1.36 and newer no longer read: convert it \
          to kubeadm.k8s.io/v1beta4"]
    );
}

#[test]
fn version_skew_and_table_range_are_warned_about() {
    let cfg = |v: &str| {
        format!("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: {v}\n")
    };
    let (_, _, w) = migrate_cluster_configuration(&cfg("v1.33.2"), &opts("v1.32.0")).unwrap();
    assert_eq!(
        w,
        ["the cluster's kubernetesVersion is v1.33.2, newer than the target v1.32.0: kubeadm does not downgrade"]
    );
    let (_, _, w) = migrate_cluster_configuration(&cfg("v1.30.2"), &opts("v1.32.0")).unwrap();
    assert_eq!(
        w,
        ["the cluster's kubernetesVersion is v1.30.2: kubeadm upgrades one minor version at a time, so v1.32.0 is not a \
          direct upgrade"]
    );
    let (_, _, w) = migrate_cluster_configuration(&cfg("stable-1"), &opts("v1.32.0")).unwrap();
    assert!(w.is_empty());
    let (_, _, w) = migrate_cluster_configuration(&cfg("v1.37.0"), &opts("v1.38.0")).unwrap();
    assert_eq!(
        w[0],
        "Kubernetes v1.38.0 is newer than this tool's table of kubeadm feature gates (v1.22 to v1.36): gates are assumed to \
         stay as they were in v1.36"
    );
    let (_, _, w) = migrate_cluster_configuration(&cfg("v1.20.0"), &opts("v1.21.0")).unwrap();
    assert_eq!(
        w[0],
        "Kubernetes v1.21.0 is older than this tool's table of kubeadm feature gates (v1.22 to v1.36): gates introduced \
         before v1.22 may be missing"
    );
}

#[test]
fn learner_mode_needs_etcd_3_4() {
    let cfg = |tag: &str| {
        format!("apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\netcd:\n  local:\n    imageTag: {tag}\n")
    };
    let err = migrate_cluster_configuration(&cfg("3.3.10"), &opts("v1.29.0")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "etcd learner mode is not supported by this etcd version (3.3.10): the etcd of Kubernetes v1.29.0 would be 3.3.10 \
         (from etcd.local.imageTag) and learner members need etcd 3.4 or newer; set etcd.local.imageTag to etcd 3.4 or \
         newer (or remove it to get kubeadm's default)"
    );
    // Explicitly on at alpha, with an old tag: same check.
    let mut o = opts("v1.27.0");
    o.enable_learner_mode = true;
    let err = migrate_cluster_configuration(&cfg("v3.3.17-0"), &o).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("etcd learner mode is not supported by this etcd version (3.3.17)"));
    // Off at alpha: no check.
    assert!(migrate_cluster_configuration(&cfg("3.3.10"), &opts("v1.27.0")).is_ok());
    // 3.4 is enough; the image revision does not make 3.4.0-0 "older" than 3.4.0.
    assert!(migrate_cluster_configuration(&cfg("3.4.0-0"), &opts("v1.33.0")).is_ok());
    // Learner mode turned off explicitly at beta: no check.
    let off = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nfeatureGates:\n  EtcdLearnerMode: false\netcd:\n  local:\n    imageTag: 3.3.10\n";
    assert!(migrate_cluster_configuration(off, &opts("v1.30.0")).is_ok());
    // External etcd: kubeadm does not manage members, nothing to check.
    let external = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\netcd:\n  external:\n    endpoints: [https://10.0.0.1:2379]\n";
    let (_, lines, _) = migrate_cluster_configuration(external, &opts("v1.33.0")).unwrap();
    assert!(!lines.iter().any(|l| l.contains("learner")), "{lines:?}");

    let err = migrate_cluster_configuration(&cfg("latest"), &opts("v1.33.0")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ClusterConfiguration: etcd.local.imageTag cannot be checked for etcd learner mode support"
    );
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "etcd image tag \"latest\" is not an etcd version: it does not have the form MAJOR.MINOR.PATCH (expected a tag like \"3.5.16-0\" or \"v3.4.23\")"
    );
    let err = migrate_cluster_configuration(&cfg("[3]"), &opts("v1.33.0")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ClusterConfiguration: etcd.local.imageTag must be a string, found a list"
    );
}

/// Every error of the pure core, with its exact message.
#[test]
fn every_error_message() {
    let ok = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n";
    let cases: Vec<(String, MigrateOptions, &str)> = vec![
        (ok.into(), opts("abc"), "invalid target version \"abc\": unexpected character 'a' while parsing major version number; expected a Kubernetes version like v1.33.2 (the \"v\" is optional)"),
        (ok.into(), opts("v1.33"), "invalid target version \"v1.33\": unexpected end of input while parsing minor version number; expected a Kubernetes version like v1.33.2 (the \"v\" is optional)"),
        (ok.into(), opts(""), "invalid target version \"\": it is empty; expected a Kubernetes version like v1.33.2 (the \"v\" is optional)"),
        (ok.into(), opts("v2.0.0"), "invalid target version \"v2.0.0\": Kubernetes versions are 1.x, not 2.x; expected a Kubernetes version like v1.33.2 (the \"v\" is optional)"),
        (
            ok.into(),
            MigrateOptions { api_version: Some("kubeadm.k8s.io/v1".into()), ..opts("v1.33.0") },
            "unsupported API version \"kubeadm.k8s.io/v1\" for the conversion: only kubeadm.k8s.io/v1beta4 (or kubeadm.k8s.io/v1beta3 to keep a v1beta3 configuration) can be asked for",
        ),
        (
            ok.into(),
            MigrateOptions { api_version: Some("v1beta3".into()), ..opts("v1.33.0") },
            "cannot convert ClusterConfiguration from kubeadm.k8s.io/v1beta4 to kubeadm.k8s.io/v1beta3: only v1beta3 to v1beta4 is supported",
        ),
        ("apiVersion: [".into(), opts("v1.33.0"), "ClusterConfiguration is not valid YAML"),
        ("".into(), opts("v1.33.0"), "ClusterConfiguration must be a YAML mapping (apiVersion, kind, ...), found an empty document"),
        ("- a\n".into(), opts("v1.33.0"), "ClusterConfiguration must be a YAML mapping (apiVersion, kind, ...), found a list"),
        ("kind: ClusterConfiguration\n".into(), opts("v1.33.0"), "ClusterConfiguration: apiVersion is missing: expected kubeadm.k8s.io/v1beta3 or kubeadm.k8s.io/v1beta4"),
        ("apiVersion: 3\nkind: ClusterConfiguration\n".into(), opts("v1.33.0"), "ClusterConfiguration: apiVersion must be a string, found the number 3"),
        (
            "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n".into(),
            opts("v1.33.0"),
            "ClusterConfiguration has apiVersion \"kubeadm.k8s.io/v1beta2\": expected kubeadm.k8s.io/v1beta3 or kubeadm.k8s.io/v1beta4 (migrate an older configuration with \"kubeadm config migrate\" of a kubeadm that still reads it)",
        ),
        (
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n".into(),
            opts("v1.33.0"),
            "ClusterConfiguration has kind \"InitConfiguration\": expected ClusterConfiguration",
        ),
        ("apiVersion: kubeadm.k8s.io/v1beta4\n".into(), opts("v1.33.0"), "ClusterConfiguration: kind is missing: expected ClusterConfiguration"),
        (
            format!("{ok}featureGates: [EtcdLearnerMode]\n"),
            opts("v1.33.0"),
            "ClusterConfiguration: featureGates must be a map of feature gate names to true or false, found a list",
        ),
        (
            format!("{ok}featureGates:\n  EtcdLearnerMode: \"yes\"\n"),
            opts("v1.33.0"),
            "ClusterConfiguration: featureGates.EtcdLearnerMode must be true or false, found the string \"yes\"",
        ),
        (
            format!("{ok}featureGates:\n  1: true\n"),
            opts("v1.33.0"),
            "ClusterConfiguration: featureGates keys must be feature gate names, found the number 1",
        ),
        (
            format!("{ok}featureGates:\n  NodeLocalCRISocket: false\n"),
            opts("v1.36.0"),
            "feature gate \"NodeLocalCRISocket\" is set to false in ClusterConfiguration, but it is GA and locked to true in Kubernetes v1.36, so kubeadm v1.36 rejects the configuration: remove the gate to accept the new behaviour, or use --force to have it dropped",
        ),
        (
            ok.into(),
            MigrateOptions { enable_learner_mode: true, ..opts("1.26.9") },
            "etcd learner mode was requested, but Kubernetes v1.26.9 has no EtcdLearnerMode feature gate (it is alpha from v1.27): upgrade to v1.27 or newer first",
        ),
        (
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer:\n  extraArgs: [a]\n".into(),
            MigrateOptions { api_version: Some("v1beta4".into()), ..opts("v1.31.0") },
            "",
        ),
        (
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer:\n  extraArgs: 7\n".into(),
            MigrateOptions { api_version: Some("v1beta4".into()), ..opts("v1.31.0") },
            "ClusterConfiguration: apiServer.extraArgs must be a map of flags to values, found the number 7",
        ),
        (
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nscheduler:\n  extraArgs:\n    v: [1]\n".into(),
            MigrateOptions { api_version: Some("v1beta4".into()), ..opts("v1.31.0") },
            "ClusterConfiguration: scheduler.extraArgs.v must be a string, found a list",
        ),
    ];
    for (yaml, o, want) in cases {
        let result = migrate_cluster_configuration(&yaml, &o);
        if want.is_empty() {
            // A list is already v1beta4-shaped: left as it is, not an error.
            assert!(result.is_ok(), "{yaml}: {result:?}");
            continue;
        }
        assert_eq!(result.unwrap_err().to_string(), want, "{yaml}");
    }
}

fn arb_case() -> impl Strategy<Value = (Vec<(usize, bool)>, u64, bool, Option<&'static str>)> {
    let n = gate_table().gates.len() + 1;
    (
        proptest::collection::vec((0..n, any::<bool>()), 0..6),
        20u64..40,
        any::<bool>(),
        prop_oneof![Just(None), Just(Some("kubeadm.k8s.io/v1beta4"))],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A migrated configuration needs no second migration, and nothing but featureGates
    /// (and, when converting, apiVersion/extraArgs) differs from the input.
    #[test]
    fn migration_is_idempotent_and_touches_only_feature_gates((gates, minor, learner, api) in arb_case()) {
        let table = gate_table();
        let names: Vec<String> = table.gates.iter().map(|g| g.name.clone()).chain(["NotAKubeadmGate".to_string()]).collect();
        let mut seen = std::collections::BTreeSet::new();
        let gates: Vec<(&str, bool)> = gates
            .into_iter()
            .filter(|(i, _)| seen.insert(*i))
            .map(|(i, v)| (names[i].as_str(), v))
            .collect();
        let mut input = config_with_gates(&gates);
        input.push_str("apiServer:\n  extraArgs:\n    b: '1'\n    a: '2'\nunmodelled: {x: [1, 2]}\n");
        let input = input.replace("v1beta4", "v1beta3");
        let o = MigrateOptions {
            enable_learner_mode: learner,
            force: true,
            api_version: api.map(str::to_string),
            ..opts(&format!("v1.{minor}.0"))
        };
        let first = migrate_cluster_configuration(&input, &o);
        if learner && minor < 27 {
            prop_assert!(first.is_err());
            return Ok(());
        }
        let (once, _, _) = first.unwrap();
        let (twice, lines, _) = migrate_cluster_configuration(&once, &o).unwrap();
        prop_assert_eq!(&twice, &once);
        prop_assert!(lines.last().unwrap().contains("Nothing to change"));

        let before: Mapping = serde_yaml::from_str(&input).unwrap();
        let after: Mapping = serde_yaml::from_str(&once).unwrap();
        for (k, v) in &before {
            let key = k.as_str().unwrap();
            match key {
                "featureGates" => {}
                "apiVersion" | "apiServer" if api.is_some() => {}
                _ => prop_assert_eq!(after.get(k), Some(v), "{}", key),
            }
        }
    }
}
