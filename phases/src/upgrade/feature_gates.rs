//! kubeadm's feature gates per Kubernetes minor, loaded from `data/feature-gates.yaml`
//! (where every entry cites its source) and queried by gate name and minor.

use std::sync::LazyLock;

use serde::Deserialize;

const TABLE_YAML: &str = include_str!("../../data/feature-gates.yaml");

/// The maturity of a gate in one Kubernetes minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Alpha,
    Beta,
    Ga,
    Deprecated,
    Removed,
}

impl Stage {
    /// How kubeadm's documentation names the stage.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Alpha => "alpha",
            Stage::Beta => "beta",
            Stage::Ga => "GA",
            Stage::Deprecated => "deprecated",
            Stage::Removed => "removed",
        }
    }
}

/// From minor `since` on (until the next entry), the gate is in `stage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageEntry {
    pub since: u64,
    pub stage: Stage,
    /// The value kubeadm uses when the gate is not set; `None` once removed.
    pub default: Option<bool>,
    pub locked: bool,
    /// For a removal: what replaces the gate.
    pub note: Option<String>,
}

/// One gate and its history, oldest entry first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub name: String,
    pub history: Vec<StageEntry>,
}

/// What a gate is in one Kubernetes minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateState<'a> {
    /// kubeadm of that minor does not know the gate yet.
    NotYetIntroduced { introduced: u64 },
    /// kubeadm of that minor knows the gate.
    Available(&'a StageEntry),
    /// kubeadm removed the gate in minor `entry.since`; `before` is its last state.
    Removed {
        entry: &'a StageEntry,
        before: Option<&'a StageEntry>,
    },
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateTable {
    /// First Kubernetes minor the table is complete for.
    pub known_from: u64,
    /// Last Kubernetes minor the table is complete for.
    pub known_through: u64,
    pub gates: Vec<Gate>,
}

impl GateTable {
    /// The gate named `name`, if the table has it. Gate names are case-sensitive in
    /// kubeadm, so they are here.
    pub fn gate(&self, name: &str) -> Option<&Gate> {
        self.gates.iter().find(|g| g.name == name)
    }
}

impl Gate {
    /// What the gate is in Kubernetes `1.minor`.
    pub fn state(&self, minor: u64) -> GateState<'_> {
        let Some(index) = self.history.iter().rposition(|e| e.since <= minor) else {
            return GateState::NotYetIntroduced {
                introduced: self.history[0].since,
            };
        };
        let entry = &self.history[index];
        if entry.stage == Stage::Removed {
            GateState::Removed {
                entry,
                before: index.checked_sub(1).map(|i| &self.history[i]),
            }
        } else {
            GateState::Available(entry)
        }
    }
}

/// The table, parsed and checked on first use.
pub fn gate_table() -> &'static GateTable {
    static TABLE: LazyLock<GateTable> = LazyLock::new(|| {
        parse_table(TABLE_YAML).expect("data/feature-gates.yaml is valid (checked by a unit test)")
    });
    &TABLE
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    known_from: String,
    known_through: String,
    gates: Vec<RawGate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    name: String,
    history: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    since: String,
    stage: Stage,
    #[serde(default)]
    default: Option<bool>,
    #[serde(default)]
    locked: bool,
    #[serde(default)]
    note: Option<String>,
}

fn parse_minor(s: &str) -> Result<u64, String> {
    s.strip_prefix("1.")
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| format!("{s:?} is not a Kubernetes minor like \"1.27\""))
}

/// Parses and checks a gate table; errors say which gate and entry are wrong.
pub(crate) fn parse_table(yaml: &str) -> Result<GateTable, String> {
    let raw: RawTable = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
    let mut gates = Vec::with_capacity(raw.gates.len());
    for g in raw.gates {
        if g.history.is_empty() {
            return Err(format!("gate {}: empty history", g.name));
        }
        if gates.iter().any(|other: &Gate| other.name == g.name) {
            return Err(format!("gate {}: listed twice", g.name));
        }
        let mut history: Vec<StageEntry> = Vec::with_capacity(g.history.len());
        for e in g.history {
            let since = parse_minor(&e.since).map_err(|m| format!("gate {}: {m}", g.name))?;
            let at = format!("gate {} at 1.{since}", g.name);
            if let Some(prev) = history.last() {
                if prev.since >= since {
                    return Err(format!(
                        "{at}: entries must be in increasing order of `since`"
                    ));
                }
                if prev.stage == Stage::Removed {
                    return Err(format!("{at}: nothing may follow `removed`"));
                }
            }
            match (e.stage, e.default) {
                (Stage::Removed, Some(_)) => {
                    return Err(format!("{at}: a removed gate has no default"))
                }
                (Stage::Removed, None) => {}
                (_, None) => return Err(format!("{at}: `default` is required")),
                (_, Some(_)) => {}
            }
            if e.locked && e.stage != Stage::Ga {
                return Err(format!("{at}: only GA gates are locked"));
            }
            if e.stage == Stage::Ga && !(e.locked && e.default == Some(true)) {
                return Err(format!("{at}: kubeadm locks GA gates to true"));
            }
            if e.note.is_some() && e.stage != Stage::Removed {
                return Err(format!("{at}: `note` is only for removals"));
            }
            history.push(StageEntry {
                since,
                stage: e.stage,
                default: e.default,
                locked: e.locked,
                note: e.note,
            });
        }
        gates.push(Gate {
            name: g.name,
            history,
        });
    }
    let known_from = parse_minor(&raw.known_from)?;
    let known_through = parse_minor(&raw.known_through)?;
    if known_from > known_through {
        return Err("known_from is after known_through".into());
    }
    Ok(GateTable {
        known_from,
        known_through,
        gates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses() {
        let table = parse_table(TABLE_YAML).unwrap();
        assert_eq!((table.known_from, table.known_through), (22, 36));
        let names: Vec<_> = table.gates.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "IPv6DualStack",
                "PublicKeysECDSA",
                "RootlessControlPlane",
                "UnversionedKubeletConfigMap",
                "EtcdLearnerMode",
                "UpgradeAddonsBeforeControlPlane",
                "WaitForAllControlPlaneComponents",
                "ControlPlaneKubeletLocalMode",
                "NodeLocalCRISocket",
            ]
        );
    }

    /// EtcdLearnerMode as the issue states it: unknown before 1.27, alpha 1.27–1.28,
    /// beta and on by default 1.29–1.31, GA and locked on in 1.32, removed in 1.33.
    #[test]
    fn etcd_learner_mode_history() {
        let gate = gate_table().gate("EtcdLearnerMode").unwrap();
        let describe = |minor| match gate.state(minor) {
            GateState::NotYetIntroduced { introduced } => format!("unknown (from 1.{introduced})"),
            GateState::Available(e) => format!(
                "{} default={} locked={}",
                e.stage.name(),
                e.default.unwrap(),
                e.locked
            ),
            GateState::Removed { entry, .. } => format!("removed in 1.{}", entry.since),
        };
        let expected = [
            (22, "unknown (from 1.27)"),
            (26, "unknown (from 1.27)"),
            (27, "alpha default=false locked=false"),
            (28, "alpha default=false locked=false"),
            (29, "beta default=true locked=false"),
            (31, "beta default=true locked=false"),
            (32, "GA default=true locked=true"),
            (33, "removed in 1.33"),
            (40, "removed in 1.33"),
        ];
        for (minor, want) in expected {
            assert_eq!(describe(minor), want, "1.{minor}");
        }
    }

    #[test]
    fn bad_tables_are_rejected_with_the_gate_named() {
        let cases = [
            (
                "known_from: '1.22'\nknown_through: '1.36'\ngates:\n- name: A\n  history: []\n",
                "gate A: empty history",
            ),
            (
                "known_from: '1.22'\nknown_through: '1.36'\ngates:\n- name: A\n  history:\n  - {since: '1.30', stage: alpha, default: false}\n  - {since: '1.29', stage: beta, default: true}\n",
                "gate A at 1.29: entries must be in increasing order of `since`",
            ),
            (
                "known_from: '1.22'\nknown_through: '1.36'\ngates:\n- name: A\n  history:\n  - {since: '1.30', stage: ga, default: true}\n",
                "gate A at 1.30: kubeadm locks GA gates to true",
            ),
            (
                "known_from: '1.22'\nknown_through: '1.36'\ngates:\n- name: A\n  history:\n  - {since: '1.30', stage: beta}\n",
                "gate A at 1.30: `default` is required",
            ),
            (
                "known_from: '1.22'\nknown_through: '1.36'\ngates:\n- name: A\n  history:\n  - {since: '1.30', stage: removed}\n  - {since: '1.31', stage: alpha, default: false}\n",
                "gate A at 1.31: nothing may follow `removed`",
            ),
            (
                "known_from: '1.22'\nknown_through: '1.36'\ngates:\n- name: A\n  history:\n  - {since: '2.30', stage: alpha, default: false}\n",
                "gate A: \"2.30\" is not a Kubernetes minor like \"1.27\"",
            ),
            (
                "known_from: '1.22'\nknown_through: '1.36'\ngates:\n- name: A\n  history:\n  - {since: '1.30', stage: beta, default: true, locked: true}\n",
                "gate A at 1.30: only GA gates are locked",
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(parse_table(yaml).unwrap_err(), want);
        }
    }
}
