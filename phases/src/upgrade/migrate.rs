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
    crate::versions::parse_kubernetes_version(input).map_err(|e| {
        UpgradeError::InvalidTargetVersion {
            input: e.input,
            reason: e.reason,
        }
    })
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

/// What happens to one feature gate, decided from the table (see [`decide_gate`] and
/// [`decide_learner_mode`]) and said by [`render`]: the decisions are data, the wording is
/// in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// Not in this tool's table: kept, with a warning.
    KeepUnknown,
    /// Known to the target: kept (a deprecated one with a warning).
    Keep {
        set: bool,
        stage: Stage,
        since: u64,
        default: bool,
    },
    /// The target does not know it yet.
    DropNotYetIntroduced { introduced: u64 },
    /// The target removed it; `changes_behaviour` when it was set against the last default.
    DropRemoved {
        set: bool,
        since: u64,
        changes_behaviour: bool,
        note: Option<String>,
    },
    /// GA and locked to the value it was set to.
    DropLocked { since: u64, locked_to: bool },
    /// Set against the value the target locks it to, dropped because of `--force`.
    DropLockedForced { set: bool, locked_to: bool },
    /// `--enable-learner-mode` where the gate is GA and locked on.
    LearnerModeLocked,
    /// `--enable-learner-mode` where the gate was removed and learners are always used.
    LearnerModeRemoved { since: u64 },
    /// `--enable-learner-mode` where the gate is already true: nothing to say or do.
    LearnerModeAlreadyOn,
    /// `--enable-learner-mode` where the gate is on by default.
    LearnerModeOnByDefault { stage: Stage },
    /// `--enable-learner-mode` over an explicit false.
    SetLearnerModeOnByRequest,
    /// `--enable-learner-mode` where the gate is off unless set.
    SetLearnerMode { stage: Stage },
}

impl Decision {
    fn keeps(&self) -> bool {
        matches!(self, Decision::Keep { .. } | Decision::KeepUnknown)
    }
}

/// The decision for a gate set to `set` whose state in the target is `state` (`None`: not
/// in the table). `None` back: the gate is set against the value the target locks it to
/// and `force` was not given.
fn decide_gate(state: Option<GateState<'_>>, set: bool, force: bool) -> Option<Decision> {
    Some(match state {
        None => Decision::KeepUnknown,
        Some(GateState::NotYetIntroduced { introduced }) => {
            Decision::DropNotYetIntroduced { introduced }
        }
        Some(GateState::Removed { entry, before }) => Decision::DropRemoved {
            set,
            since: entry.since,
            changes_behaviour: before.and_then(|b| b.default).is_some_and(|d| d != set),
            note: entry.note.clone(),
        },
        Some(GateState::Available(entry)) if entry.locked => {
            let locked_to = entry.default.unwrap_or(true);
            if set == locked_to {
                Decision::DropLocked {
                    since: entry.since,
                    locked_to,
                }
            } else if force {
                Decision::DropLockedForced { set, locked_to }
            } else {
                return None;
            }
        }
        Some(GateState::Available(entry)) => Decision::Keep {
            set,
            stage: entry.stage,
            since: entry.since,
            default: entry.default.unwrap_or(false),
        },
    })
}

/// What `--enable-learner-mode` does given the gate's state in the target and the value
/// the document keeps (`None`: unset). `Err(introduced)`: the target has no such gate yet.
fn decide_learner_mode(state: GateState<'_>, kept: Option<bool>) -> Result<Decision, u64> {
    Ok(match state {
        GateState::NotYetIntroduced { introduced } => return Err(introduced),
        GateState::Available(entry) if entry.locked => Decision::LearnerModeLocked,
        GateState::Removed { entry, .. } => Decision::LearnerModeRemoved { since: entry.since },
        GateState::Available(entry) => match kept {
            Some(true) => Decision::LearnerModeAlreadyOn,
            Some(false) => Decision::SetLearnerModeOnByRequest,
            None if entry.default == Some(true) => {
                Decision::LearnerModeOnByDefault { stage: entry.stage }
            }
            None => Decision::SetLearnerMode { stage: entry.stage },
        },
    })
}

/// The one place decisions become words: a progress line and any warnings.
fn render(
    name: &str,
    decision: &Decision,
    target_minor: &str,
    lines: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    match decision {
        Decision::KeepUnknown => warnings.push(format!(
            "feature gate {name:?} is not in this tool's table of kubeadm feature gates; kept as it is: \
             check that kubeadm {target_minor} accepts it"
        )),
        Decision::Keep {
            set,
            stage,
            since,
            default,
        } => {
            lines.push(format!(
                "{PREFIX} Keeping feature gate {name:?} = {set}: {} in Kubernetes {target_minor} (default {default})",
                stage.name()
            ));
            if *stage == Stage::Deprecated {
                warnings.push(format!(
                    "feature gate {name:?} is deprecated since Kubernetes v1.{since} and will be removed: plan to stop using it"
                ));
            }
        }
        Decision::DropNotYetIntroduced { introduced } => lines.push(format!(
            "{PREFIX} Removing feature gate {name:?}: Kubernetes {target_minor} does not know it yet (introduced in v1.{introduced})"
        )),
        Decision::DropRemoved {
            set,
            since,
            changes_behaviour,
            note,
        } => {
            lines.push(format!(
                "{PREFIX} Removing feature gate {name:?}: removed in Kubernetes v1.{since}"
            ));
            if *changes_behaviour {
                let mut warning = format!(
                    "feature gate {name:?} was set to {set}, but kubeadm dropped it in v1.{since} and behaves as if it were {}: \
                     the cluster's behaviour changes",
                    !set
                );
                if let Some(note) = note {
                    warning.push_str(&format!(" ({note})"));
                }
                warnings.push(warning);
            }
        }
        Decision::DropLocked { since, locked_to } => lines.push(format!(
            "{PREFIX} Removing feature gate {name:?}: GA and locked to {locked_to} since Kubernetes v1.{since}"
        )),
        Decision::DropLockedForced { set, locked_to } => {
            lines.push(format!(
                "{PREFIX} Removing feature gate {name:?}: set to {set} but GA and locked to {locked_to} in Kubernetes \
                 {target_minor} (forced)"
            ));
            warnings.push(format!(
                "feature gate {name:?} was explicitly set to {set}; Kubernetes {target_minor} locks it to {locked_to}, \
                 so after the upgrade the feature is {}: the cluster's behaviour changes",
                if *locked_to { "enabled" } else { "disabled" }
            ));
        }
        Decision::LearnerModeLocked => lines.push(format!(
            "{PREFIX} Not setting feature gate {name:?}: GA and always on in Kubernetes {target_minor}"
        )),
        Decision::LearnerModeRemoved { since } => lines.push(format!(
            "{PREFIX} Not setting feature gate {name:?}: removed in Kubernetes v1.{since}, learner mode is always on"
        )),
        Decision::LearnerModeAlreadyOn => {}
        Decision::LearnerModeOnByDefault { stage } => lines.push(format!(
            "{PREFIX} Not setting feature gate {name:?}: {} and on by default in Kubernetes {target_minor}",
            stage.name()
        )),
        Decision::SetLearnerModeOnByRequest => {
            lines.push(format!(
                "{PREFIX} Changing feature gate {name:?} from false to true: learner mode was requested"
            ));
            warnings.push(format!(
                "feature gate {name:?} was explicitly false; enabling learner mode as requested overrides that choice"
            ));
        }
        Decision::SetLearnerMode { stage } => lines.push(format!(
            "{PREFIX} Setting feature gate {name:?} to true: {} in Kubernetes {target_minor}, off unless set",
            stage.name()
        )),
    }
}

/// What a migration says: progress lines and warnings, in the order they arose.
#[derive(Default)]
struct Said {
    lines: Vec<String>,
    warnings: Vec<String>,
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

    let original = read_document(origin, yaml, requested_api)?;
    let mut value = original.clone();
    let Value::Mapping(doc) = &mut value else {
        unreachable!("read_document checked it is a mapping")
    };
    let mut said = Said {
        lines: Vec::new(),
        warnings: version_warnings(doc, &target),
    };

    let learner_on = migrate_gates(origin, doc, &target, opts, &mut said)?;
    // Learner members need etcd >= 3.4; check the etcd the target would run.
    if learner_on {
        check_etcd_for_learners(
            origin,
            doc,
            &target,
            opts,
            &mut said.lines,
            &mut said.warnings,
        )?;
    }
    convert_api_version(origin, doc, requested_api, target.minor, &mut said)?;

    let changed = value != original;
    let yaml = if changed {
        crate::yaml::to_string(&value).map_err(|source| UpgradeError::Serialize {
            what: "the migrated ClusterConfiguration".into(),
            source,
        })?
    } else {
        said.lines.push(format!(
            "{PREFIX} Nothing to change: the feature gates are already right for Kubernetes v{target}"
        ));
        yaml.to_string()
    };
    Ok(Outcome {
        yaml,
        lines: said.lines,
        warnings: said.warnings,
        changed,
        target,
    })
}

fn field_error(origin: &str, field: &str, problem: String) -> UpgradeError {
    UpgradeError::InvalidField {
        origin: origin.to_string(),
        field: field.to_string(),
        problem,
    }
}

/// Decides and applies every feature gate for the target, in the document's order, then
/// `--enable-learner-mode`. Returns whether the target will join etcd members as learners.
fn migrate_gates(
    origin: &str,
    doc: &mut Mapping,
    target: &Version,
    opts: &MigrateOptions,
    said: &mut Said,
) -> Result<bool, UpgradeError> {
    let minor = target.minor;
    let table = gate_table();
    let target_minor = format!("v1.{minor}");
    let gates_before = read_gates(origin, doc)?;
    let mut gates_after = Mapping::new();
    let mut learner_value: Option<bool> = None;
    for (key, val) in gates_before.iter().flatten() {
        let Value::String(name) = key else {
            return Err(field_error(
                origin,
                "featureGates",
                format!("keys must be feature gate names, found {}", describe(key)),
            ));
        };
        let Value::Bool(set) = val else {
            return Err(field_error(
                origin,
                &format!("featureGates.{name}"),
                format!("must be true or false, found {}", describe(val)),
            ));
        };
        let decision = decide_gate(table.gate(name).map(|g| g.state(minor)), *set, opts.force)
            .ok_or_else(|| UpgradeError::LockedGateDisabled {
                origin: origin.to_string(),
                gate: name.clone(),
                minor,
            })?;
        render(
            name,
            &decision,
            &target_minor,
            &mut said.lines,
            &mut said.warnings,
        );
        if decision.keeps() {
            gates_after.insert(key.clone(), val.clone());
            if name == LEARNER_GATE {
                learner_value = Some(*set);
            }
        }
    }

    let learner_state = table
        .gate(LEARNER_GATE)
        .expect("the table has EtcdLearnerMode")
        .state(minor);
    if opts.enable_learner_mode {
        let decision = decide_learner_mode(learner_state, learner_value).map_err(|introduced| {
            UpgradeError::LearnerModeUnavailable {
                target: format!("v{target}"),
                introduced,
            }
        })?;
        render(
            LEARNER_GATE,
            &decision,
            &target_minor,
            &mut said.lines,
            &mut said.warnings,
        );
        // Set the gate only where the target needs it set.
        if matches!(
            decision,
            Decision::SetLearnerMode { .. } | Decision::SetLearnerModeOnByRequest
        ) {
            gates_after.insert(Value::String(LEARNER_GATE.into()), Value::Bool(true));
            learner_value = Some(true);
        }
    }

    write_gates(doc, gates_before.as_ref(), gates_after, &mut said.lines);
    Ok(match learner_state {
        GateState::NotYetIntroduced { .. } => false,
        GateState::Available(entry) => learner_value.unwrap_or(entry.default == Some(true)),
        GateState::Removed { .. } => true,
    })
}

/// `featureGates` as found: absent or null is `None`; anything but a mapping is refused.
fn read_gates(origin: &str, doc: &Mapping) -> Result<Option<Mapping>, UpgradeError> {
    match doc.get("featureGates") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Mapping(m)) => Ok(Some(m.clone())),
        Some(other) => Err(field_error(
            origin,
            "featureGates",
            format!(
                "must be a map of feature gate names to true or false, found {}",
                describe(other)
            ),
        )),
    }
}

/// The v1beta3 → v1beta4 conversion when asked for, and the warning when the document
/// stays at an API version the target no longer reads.
fn convert_api_version(
    origin: &str,
    doc: &mut Mapping,
    requested_api: Option<&'static str>,
    target_minor: u64,
    said: &mut Said,
) -> Result<(), UpgradeError> {
    let api_version = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .expect("read_document checked apiVersion")
        .to_string();
    let mut final_api = api_version.clone();
    if requested_api == Some(V1BETA4) && api_version == V1BETA3 {
        let field_err = |field: &str, problem: String| field_error(origin, field, problem);
        convert_v1beta3_to_v1beta4(doc, &mut said.lines, &mut said.warnings, &field_err)?;
        final_api = V1BETA4.to_string();
    }
    if final_api == V1BETA3 && target_minor >= V1BETA3_REMOVED_IN {
        said.warnings.push(format!(
            "the ClusterConfiguration stays {V1BETA3}, which kubeadm v1.{V1BETA3_REMOVED_IN} and newer no longer read: \
             convert it to {V1BETA4}"
        ));
    }
    Ok(())
}

/// Writes `featureGates` back in place: the same position, removed when no gate is left,
/// inserted where sorted keys put it when it is new.
fn write_gates(
    doc: &mut Mapping,
    gates_before: Option<&Mapping>,
    gates_after: Mapping,
    lines: &mut Vec<String>,
) {
    let had_entries = gates_before.is_some_and(|m| !m.is_empty());
    if gates_before != Some(&gates_after) {
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
}

/// Parses the ClusterConfiguration and checks what every migration relies on: a mapping,
/// a known apiVersion, kind ClusterConfiguration, and a conversion that exists.
fn read_document(
    origin: &str,
    yaml: &str,
    requested_api: Option<&'static str>,
) -> Result<Value, UpgradeError> {
    let original: Value =
        serde_yaml::from_str(yaml).map_err(|source| UpgradeError::ParseClusterConfiguration {
            origin: origin.to_string(),
            source,
        })?;
    let Value::Mapping(doc) = &original else {
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
    Ok(original)
}

/// Warnings about the target itself: outside the gate table, or not a one-minor upgrade
/// from the cluster's kubernetesVersion.
fn version_warnings(doc: &Mapping, target: &Version) -> Vec<String> {
    let table = gate_table();
    let minor = target.minor;
    let mut warnings = Vec::new();
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
            if &current > target {
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
    warnings
}

/// Learner members need etcd 3.4 or newer: the etcd the target runs (its pinned
/// `etcd.local.imageTag`, else kubeadm's default for the target) must have them. External
/// etcd is not kubeadm's to check.
fn check_etcd_for_learners(
    origin: &str,
    doc: &Mapping,
    target: &Version,
    opts: &MigrateOptions,
    lines: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<(), UpgradeError> {
    let field_err = |field: &str, problem: String| UpgradeError::InvalidField {
        origin: origin.to_string(),
        field: field.to_string(),
        problem,
    };
    let target_minor = format!("v1.{}", target.minor);
    let etcd = doc.get("etcd");
    let external = etcd
        .and_then(|e| e.get("external"))
        .is_some_and(|e| !e.is_null());
    if external {
        return Ok(());
    }
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
            let (tag, warning) = etcd_version_for_kubernetes(target);
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
    Ok(())
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
