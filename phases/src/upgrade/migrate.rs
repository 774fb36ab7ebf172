//! The pure rewrite of one ClusterConfiguration document for a target Kubernetes version.
//!
//! It works on [`serde_yaml::Value`], whose mappings keep insertion order, and touches
//! only `featureGates` (and, for a requested v1beta3 → v1beta4 conversion, `apiVersion`,
//! the components' `extraArgs` and `apiServer.timeoutForControlPlane`): every other field,
//! modelled by this tool or not, comes out as it went in and in the same order. When
//! nothing changes the input text is returned byte for byte.

use semver::Version;
use serde_yaml::{Mapping, Value};

use super::error::UpgradeError;
use super::feature_gates::{gate_table, GateState, Stage};
use super::MigrateOptions;
use crate::versions::{etcd_semver_from_tag, etcd_version_for_kubernetes};

const PREFIX: &str = "[upgrade/feature-gates]";
const V1BETA3: &str = "kubeadm.k8s.io/v1beta3";
const V1BETA4: &str = "kubeadm.k8s.io/v1beta4";
const LEARNER_GATE: &str = "EtcdLearnerMode";
/// kubeadm removed v1beta3 in 1.36 (kubernetes/kubernetes#136016).
const V1BETA3_REMOVED_IN: u64 = 36;

/// The result of migrating one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The migrated document; the input itself when nothing changed.
    pub yaml: String,
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
    pub changed: bool,
    pub target: Version,
}

/// Parses a target version as typed by a user: `v1.33.2` or `1.33.2`.
pub(crate) fn parse_target_version(input: &str) -> Result<Version, UpgradeError> {
    let err = |reason: String| UpgradeError::InvalidTargetVersion {
        input: input.to_string(),
        reason,
    };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(err("it is empty".into()));
    }
    let bare = trimmed.strip_prefix('v').unwrap_or(trimmed);
    let version = Version::parse(bare).map_err(|e| err(e.to_string()))?;
    if version.major != 1 {
        return Err(err(format!(
            "Kubernetes versions are 1.x, not {}.x",
            version.major
        )));
    }
    Ok(version)
}

fn normalize_api_version(requested: &str) -> Result<&'static str, UpgradeError> {
    match requested.trim() {
        V1BETA4 | "v1beta4" => Ok(V1BETA4),
        V1BETA3 | "v1beta3" => Ok(V1BETA3),
        _ => Err(UpgradeError::UnknownTargetApiVersion {
            requested: requested.to_string(),
        }),
    }
}

/// What a YAML value is, for error messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

enum Action {
    Keep,
    Drop,
}

/// Migrates the ClusterConfiguration `yaml`; `origin` names it in errors (e.g.
/// "ClusterConfiguration in ConfigMap kube-system/kubeadm-config").
pub(crate) fn migrate_document(
    origin: &str,
    yaml: &str,
    opts: &MigrateOptions,
) -> Result<Outcome, UpgradeError> {
    let target = parse_target_version(&opts.target_version)?;
    let requested_api = opts
        .api_version
        .as_deref()
        .map(normalize_api_version)
        .transpose()?;
    let minor = target.minor;
    let table = gate_table();

    let original: Value =
        serde_yaml::from_str(yaml).map_err(|source| UpgradeError::ParseClusterConfiguration {
            origin: origin.to_string(),
            source,
        })?;
    let mut value = original.clone();
    let Value::Mapping(doc) = &mut value else {
        let found = if original.is_null() {
            "an empty document".to_string()
        } else {
            describe(&original)
        };
        return Err(UpgradeError::NotAMapping {
            origin: origin.to_string(),
            found,
        });
    };
    let field_err = |field: &str, problem: String| UpgradeError::InvalidField {
        origin: origin.to_string(),
        field: field.to_string(),
        problem,
    };

    let api_version = match doc.get("apiVersion") {
        Some(Value::String(s)) => s.clone(),
        None => {
            return Err(field_err(
                "apiVersion",
                format!("is missing: expected {V1BETA3} or {V1BETA4}"),
            ))
        }
        Some(other) => {
            return Err(field_err(
                "apiVersion",
                format!("must be a string, found {}", describe(other)),
            ))
        }
    };
    if api_version != V1BETA3 && api_version != V1BETA4 {
        return Err(UpgradeError::UnknownApiVersion {
            origin: origin.to_string(),
            found: api_version,
        });
    }
    match doc.get("kind") {
        Some(Value::String(k)) if k == "ClusterConfiguration" => {}
        Some(Value::String(k)) => {
            return Err(UpgradeError::WrongKind {
                origin: origin.to_string(),
                found: k.clone(),
            })
        }
        None => {
            return Err(field_err(
                "kind",
                "is missing: expected ClusterConfiguration".into(),
            ))
        }
        Some(other) => {
            return Err(field_err(
                "kind",
                format!("must be a string, found {}", describe(other)),
            ))
        }
    }
    if let Some(to) = requested_api {
        if to == V1BETA3 && api_version == V1BETA4 {
            return Err(UpgradeError::UnsupportedConversion {
                origin: origin.to_string(),
                from: api_version,
                to: to.to_string(),
            });
        }
    }

    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let target_minor = format!("v1.{minor}");

    if minor > table.known_through {
        warnings.push(format!(
            "Kubernetes v{target} is newer than this tool's table of kubeadm feature gates (v1.{} to v1.{}): \
             gates are assumed to stay as they were in v1.{}",
            table.known_from, table.known_through, table.known_through
        ));
    } else if minor < table.known_from {
        warnings.push(format!(
            "Kubernetes v{target} is older than this tool's table of kubeadm feature gates (v1.{} to v1.{}): \
             gates introduced before v1.{} may be missing",
            table.known_from, table.known_through, table.known_from
        ));
    }
    if let Some(Value::String(current)) = doc.get("kubernetesVersion") {
        if let Ok(current) = parse_target_version(current) {
            if current > target {
                warnings.push(format!(
                    "the cluster's kubernetesVersion is v{current}, newer than the target v{target}: kubeadm does not downgrade"
                ));
            } else if target.minor > current.minor + 1 {
                warnings.push(format!(
                    "the cluster's kubernetesVersion is v{current}: kubeadm upgrades one minor version at a time, \
                     so v{target} is not a direct upgrade"
                ));
            }
        }
    }

    // Feature gates: decide for each gate, in the document's order.
    let gates_before: Option<Mapping> = match doc.get("featureGates") {
        None | Some(Value::Null) => None,
        Some(Value::Mapping(m)) => Some(m.clone()),
        Some(other) => {
            return Err(field_err(
                "featureGates",
                format!(
                    "must be a map of feature gate names to true or false, found {}",
                    describe(other)
                ),
            ))
        }
    };
    let mut gates_after = Mapping::new();
    let mut learner_value: Option<bool> = None;
    for (key, val) in gates_before.iter().flatten() {
        let Value::String(name) = key else {
            return Err(field_err(
                "featureGates",
                format!("keys must be feature gate names, found {}", describe(key)),
            ));
        };
        let Value::Bool(set) = val else {
            return Err(field_err(
                &format!("featureGates.{name}"),
                format!("must be true or false, found {}", describe(val)),
            ));
        };
        let set = *set;
        let action = match table.gate(name).map(|g| g.state(minor)) {
            None => {
                warnings.push(format!(
                    "feature gate {name:?} is not in this tool's table of kubeadm feature gates; kept as it is: \
                     check that kubeadm {target_minor} accepts it"
                ));
                Action::Keep
            }
            Some(GateState::NotYetIntroduced { introduced }) => {
                lines.push(format!(
                    "{PREFIX} Removing feature gate {name:?}: Kubernetes {target_minor} does not know it yet (introduced in v1.{introduced})"
                ));
                Action::Drop
            }
            Some(GateState::Removed { entry, before }) => {
                lines.push(format!(
                    "{PREFIX} Removing feature gate {name:?}: removed in Kubernetes v1.{}",
                    entry.since
                ));
                let last_default = before.and_then(|b| b.default);
                if last_default.is_some_and(|d| d != set) {
                    let mut warning = format!(
                        "feature gate {name:?} was set to {set}, but kubeadm dropped it in v1.{} and behaves as if it were {}: \
                         the cluster's behaviour changes",
                        entry.since,
                        !set
                    );
                    if let Some(note) = &entry.note {
                        warning.push_str(&format!(" ({note})"));
                    }
                    warnings.push(warning);
                }
                Action::Drop
            }
            Some(GateState::Available(entry)) if entry.locked => {
                let locked_to = entry.default.unwrap_or(true);
                if set == locked_to {
                    lines.push(format!(
                        "{PREFIX} Removing feature gate {name:?}: GA and locked to {locked_to} since Kubernetes v1.{}",
                        entry.since
                    ));
                    Action::Drop
                } else if opts.force {
                    lines.push(format!(
                        "{PREFIX} Removing feature gate {name:?}: set to {set} but GA and locked to {locked_to} in Kubernetes \
                         {target_minor} (forced)"
                    ));
                    warnings.push(format!(
                        "feature gate {name:?} was explicitly set to {set}; Kubernetes {target_minor} locks it to {locked_to}, \
                         so after the upgrade the feature is {}: the cluster's behaviour changes",
                        if locked_to { "enabled" } else { "disabled" }
                    ));
                    Action::Drop
                } else {
                    return Err(UpgradeError::LockedGateDisabled {
                        origin: origin.to_string(),
                        gate: name.clone(),
                        minor,
                    });
                }
            }
            Some(GateState::Available(entry)) => {
                let default = entry.default.unwrap_or(false);
                lines.push(format!(
                    "{PREFIX} Keeping feature gate {name:?} = {set}: {} in Kubernetes {target_minor} (default {default})",
                    entry.stage.name()
                ));
                if entry.stage == Stage::Deprecated {
                    warnings.push(format!(
                        "feature gate {name:?} is deprecated since Kubernetes v1.{} and will be removed: plan to stop using it",
                        entry.since
                    ));
                }
                Action::Keep
            }
        };
        match action {
            Action::Keep => {
                gates_after.insert(key.clone(), val.clone());
                if name == LEARNER_GATE {
                    learner_value = Some(set);
                }
            }
            Action::Drop => {}
        }
    }

    // --enable-learner-mode: set the gate only where the target needs it set.
    let learner_gate = table
        .gate(LEARNER_GATE)
        .expect("the table has EtcdLearnerMode");
    let learner_state = learner_gate.state(minor);
    if opts.enable_learner_mode {
        match learner_state {
            GateState::NotYetIntroduced { introduced } => {
                return Err(UpgradeError::LearnerModeUnavailable {
                    target: format!("v{target}"),
                    introduced,
                })
            }
            GateState::Available(entry) if entry.locked => {
                lines.push(format!(
                    "{PREFIX} Not setting feature gate {LEARNER_GATE:?}: GA and always on in Kubernetes {target_minor}"
                ));
            }
            GateState::Removed { entry, .. } => {
                lines.push(format!(
                    "{PREFIX} Not setting feature gate {LEARNER_GATE:?}: removed in Kubernetes v1.{}, learner mode is always on",
                    entry.since
                ));
            }
            GateState::Available(entry) => match learner_value {
                Some(true) => {}
                Some(false) => {
                    lines.push(format!(
                        "{PREFIX} Changing feature gate {LEARNER_GATE:?} from false to true: learner mode was requested"
                    ));
                    warnings.push(format!(
                        "feature gate {LEARNER_GATE:?} was explicitly false; enabling learner mode as requested overrides that choice"
                    ));
                    gates_after.insert(Value::String(LEARNER_GATE.into()), Value::Bool(true));
                    learner_value = Some(true);
                }
                None if entry.default == Some(true) => {
                    lines.push(format!(
                        "{PREFIX} Not setting feature gate {LEARNER_GATE:?}: {} and on by default in Kubernetes {target_minor}",
                        entry.stage.name()
                    ));
                }
                None => {
                    lines.push(format!(
                        "{PREFIX} Setting feature gate {LEARNER_GATE:?} to true: {} in Kubernetes {target_minor}, off unless set",
                        entry.stage.name()
                    ));
                    gates_after.insert(Value::String(LEARNER_GATE.into()), Value::Bool(true));
                    learner_value = Some(true);
                }
            },
        }
    }

    // Write featureGates back, in place.
    let had_entries = gates_before.as_ref().is_some_and(|m| !m.is_empty());
    if gates_before.as_ref() != Some(&gates_after) {
        if gates_after.is_empty() {
            if had_entries {
                doc.shift_remove("featureGates");
                lines.push(format!(
                    "{PREFIX} Removing featureGates: no feature gates are left"
                ));
            }
        } else if doc.contains_key("featureGates") {
            doc.insert(
                Value::String("featureGates".into()),
                Value::Mapping(gates_after),
            );
        } else {
            insert_sorted(doc, "featureGates", Value::Mapping(gates_after));
        }
    }

    // Learner members need etcd >= 3.4; check the etcd the target would run.
    let learner_on = match learner_state {
        GateState::NotYetIntroduced { .. } => false,
        GateState::Available(entry) => learner_value.unwrap_or(entry.default == Some(true)),
        GateState::Removed { .. } => true,
    };
    let etcd = doc.get("etcd");
    let external = etcd
        .and_then(|e| e.get("external"))
        .is_some_and(|e| !e.is_null());
    if learner_on && !external {
        let image_tag = match etcd
            .and_then(|e| e.get("local"))
            .and_then(|l| l.get("imageTag"))
        {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(field_err(
                    "etcd.local.imageTag",
                    format!("must be a string, found {}", describe(other)),
                ))
            }
        };
        // NB: kubeadm's own tags all support learners; the check is only worth a line when
        // the operator asked for learner mode or pinned the etcd image.
        let worth_a_line = opts.enable_learner_mode || image_tag.is_some();
        let (tag, from) = match image_tag {
            Some(tag) => (tag, "from etcd.local.imageTag".to_string()),
            None => {
                let (tag, warning) = etcd_version_for_kubernetes(&target);
                warnings.extend(warning);
                (
                    tag,
                    format!("kubeadm's default for Kubernetes {target_minor}"),
                )
            }
        };
        let version =
            etcd_semver_from_tag(&tag).map_err(|source| UpgradeError::InvalidEtcdImageTag {
                origin: origin.to_string(),
                source,
            })?;
        if !crate::membership::version::supports_learners(&version) {
            return Err(UpgradeError::EtcdTooOldForLearner {
                version: version.to_string(),
                tag,
                from,
                target: format!("v{target}"),
            });
        }
        if worth_a_line {
            lines.push(format!(
                "{PREFIX} etcd learner mode is on in Kubernetes {target_minor} and etcd {version} ({tag}, {from}) supports it"
            ));
        }
    }

    // The v1beta3 → v1beta4 conversion, when asked for.
    let mut final_api = api_version.clone();
    if requested_api == Some(V1BETA4) && api_version == V1BETA3 {
        convert_v1beta3_to_v1beta4(doc, &mut lines, &mut warnings, &field_err)?;
        final_api = V1BETA4.to_string();
    }
    if final_api == V1BETA3 && minor >= V1BETA3_REMOVED_IN {
        warnings.push(format!(
            "the ClusterConfiguration stays {V1BETA3}, which kubeadm v1.{V1BETA3_REMOVED_IN} and newer no longer read: \
             convert it to {V1BETA4}"
        ));
    }

    let changed = value != original;
    let yaml = if changed {
        crate::yaml::to_string(&value).map_err(|source| UpgradeError::Serialize {
            what: "the migrated ClusterConfiguration".into(),
            source,
        })?
    } else {
        lines.push(format!(
            "{PREFIX} Nothing to change: the feature gates are already right for Kubernetes v{target}"
        ));
        yaml.to_string()
    };
    Ok(Outcome {
        yaml,
        lines,
        warnings,
        changed,
        target,
    })
}

/// Inserts `key` before the first key that sorts after it when the mapping's keys are
/// sorted (kubeadm writes them sorted), else at the end, so that no other key moves.
fn insert_sorted(doc: &mut Mapping, key: &str, value: Value) {
    let keys: Vec<Option<&str>> = doc.keys().map(Value::as_str).collect();
    let sorted = keys.iter().all(Option::is_some) && keys.windows(2).all(|w| w[0] <= w[1]);
    let position = if sorted {
        keys.iter().position(|k| k.is_some_and(|k| k > key))
    } else {
        None
    };
    let Some(position) = position else {
        doc.insert(Value::String(key.into()), value);
        return;
    };
    let old = std::mem::take(doc);
    for (i, (k, v)) in old.into_iter().enumerate() {
        if i == position {
            doc.insert(Value::String(key.into()), value.clone());
        }
        doc.insert(k, v);
    }
}

/// v1beta3 → v1beta4 for what a ClusterConfiguration in kubeadm-config holds: the
/// components' `extraArgs` maps become `{name, value}` lists sorted by name, and
/// `apiServer.timeoutForControlPlane`, which v1beta4 moved to `InitConfiguration.timeouts`
/// (a document kubeadm-config does not hold), is dropped as kubeadm's conversion does.
fn convert_v1beta3_to_v1beta4(
    doc: &mut Mapping,
    lines: &mut Vec<String>,
    warnings: &mut Vec<String>,
    field_err: &dyn Fn(&str, String) -> UpgradeError,
) -> Result<(), UpgradeError> {
    lines.push(format!(
        "{PREFIX} Converting the ClusterConfiguration from {V1BETA3} to {V1BETA4}"
    ));
    doc.insert(
        Value::String("apiVersion".into()),
        Value::String(V1BETA4.into()),
    );
    for path in [
        &["apiServer"][..],
        &["controllerManager"][..],
        &["scheduler"][..],
        &["etcd", "local"][..],
    ] {
        let dotted = format!("{}.extraArgs", path.join("."));
        let Some(component) = get_path_mut(doc, path) else {
            continue;
        };
        let Some(args) = component.get_mut("extraArgs") else {
            continue;
        };
        match args {
            Value::Null | Value::Sequence(_) => {}
            Value::Mapping(map) => {
                let mut pairs = Vec::with_capacity(map.len());
                for (k, v) in map.iter() {
                    let name = scalar_to_string(k).ok_or_else(|| {
                        field_err(
                            &dotted,
                            format!("keys must be flag names, found {}", describe(k)),
                        )
                    })?;
                    let value = scalar_to_string(v).ok_or_else(|| {
                        field_err(
                            &format!("{dotted}.{name}"),
                            format!("must be a string, found {}", describe(v)),
                        )
                    })?;
                    pairs.push((name, value));
                }
                // NB: a stable sort keeps equal names in their original order, but a v1beta3
                // map cannot hold a name twice anyway.
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                let list = pairs
                    .into_iter()
                    .map(|(name, value)| {
                        let mut m = Mapping::new();
                        m.insert(Value::String("name".into()), Value::String(name));
                        m.insert(Value::String("value".into()), Value::String(value));
                        Value::Mapping(m)
                    })
                    .collect();
                *args = Value::Sequence(list);
                lines.push(format!(
                    "{PREFIX} Converting {dotted} to a list of {{name, value}} sorted by name"
                ));
            }
            other => {
                return Err(field_err(
                    &dotted,
                    format!(
                        "must be a map of flags to values, found {}",
                        describe(other)
                    ),
                ))
            }
        }
    }
    if let Some(Value::Mapping(api_server)) = doc.get_mut("apiServer") {
        if let Some(timeout) = api_server.shift_remove("timeoutForControlPlane") {
            let shown = scalar_to_string(&timeout).unwrap_or_else(|| describe(&timeout));
            lines.push(format!(
                "{PREFIX} Removing apiServer.timeoutForControlPlane ({shown}): v1beta4 has no such ClusterConfiguration field"
            ));
            warnings.push(format!(
                "apiServer.timeoutForControlPlane ({shown}) moved to InitConfiguration/JoinConfiguration \
                 timeouts.controlPlaneComponentHealthCheck in v1beta4; pass it there if you relied on it"
            ));
        }
    }
    Ok(())
}

fn get_path_mut<'a>(doc: &'a mut Mapping, path: &[&str]) -> Option<&'a mut Mapping> {
    let mut current = doc;
    for key in path {
        match current.get_mut(*key) {
            Some(Value::Mapping(m)) => current = m,
            _ => return None,
        }
    }
    Some(current)
}

fn scalar_to_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
