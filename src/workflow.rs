//! The phase tree, declared once as data (kubeadm's `workflow.Phase`), and the runner.
//!
//! The clap command tree, the help text, the workflow phase lists and `--skip-phases`
//! validation are all derived from [`PHASES`] and [`WORKFLOWS`]; a phase added there
//! appears everywhere without touching the runner.

use std::collections::BTreeSet;

use anyhow::{bail, Context as _};

use crate::commands;
use crate::context::Context;
use crate::flags::Flag;

/// Runs a leaf phase.
pub type RunFn = fn(&Context) -> anyhow::Result<()>;
/// Runs a group's selected children together (the certificates share one CA and
/// generate their keys concurrently). Receives the selected children's names in order.
pub type BatchFn = fn(&Context, &[&'static str]) -> anyhow::Result<()>;

/// One node of the phase tree.
pub struct Phase {
    pub name: &'static str,
    pub short: &'static str,
    pub long: &'static str,
    pub example: &'static str,
    /// Flags this phase takes (kubeadm's `InheritFlags` plus `LocalFlags`).
    pub flags: &'static [Flag],
    pub run: Option<RunFn>,
    pub batch: Option<BatchFn>,
    pub children: &'static [Phase],
    /// The `all` child: runs every sibling, exists only as a command.
    pub run_all_siblings: bool,
}

impl Phase {
    const fn leaf(
        name: &'static str,
        short: &'static str,
        flags: &'static [Flag],
        run: RunFn,
    ) -> Phase {
        Phase {
            name,
            short,
            long: "",
            example: "",
            flags,
            run: Some(run),
            batch: None,
            children: &[],
            run_all_siblings: false,
        }
    }

    const fn group(name: &'static str, short: &'static str, children: &'static [Phase]) -> Phase {
        Phase {
            name,
            short,
            long: "",
            example: "",
            flags: &[],
            run: None,
            batch: None,
            children,
            run_all_siblings: false,
        }
    }

    const fn batch_leaf(name: &'static str, short: &'static str, flags: &'static [Flag]) -> Phase {
        Phase {
            name,
            short,
            long: "",
            example: "",
            flags,
            run: None,
            batch: None,
            children: &[],
            run_all_siblings: false,
        }
    }

    /// The flags of this phase and, for a group, of all its descendants, sorted and unique.
    pub fn all_flags(&self) -> BTreeSet<Flag> {
        let mut flags: BTreeSet<Flag> = self.flags.iter().copied().collect();
        for child in self.children {
            flags.extend(child.all_flags());
        }
        flags
    }
}

use Flag::*;

const CERT_FLAGS: &[Flag] = &[Config, CertDir, NodeName, AdvertiseAddress, DryRun];
const ETCD_LOCAL_FLAGS: &[Flag] = &[
    Config,
    CertDir,
    NodeName,
    AdvertiseAddress,
    ManifestDir,
    BackupDir,
    DryRun,
    Output,
];

const ETCD_JOIN_FLAGS: &[Flag] = &[
    Config,
    CertDir,
    NodeName,
    AdvertiseAddress,
    Endpoints,
    Kubeconfig,
    EtcdCaFile,
    EtcdCertFile,
    EtcdKeyFile,
    Timeout,
    WipeDataDir,
    ManifestDir,
    BackupDir,
    DryRun,
];
const ETCD_PROMOTE_FLAGS: &[Flag] = &[
    Config,
    CertDir,
    NodeName,
    AdvertiseAddress,
    MemberId,
    Endpoints,
    Kubeconfig,
    EtcdCaFile,
    EtcdCertFile,
    EtcdKeyFile,
    Timeout,
    DryRun,
];
const ETCD_INSPECT_FLAGS: &[Flag] = &[
    Config,
    CertDir,
    Endpoints,
    Kubeconfig,
    EtcdCaFile,
    EtcdCertFile,
    EtcdKeyFile,
    Output,
];
const ETCD_REMOVE_FLAGS: &[Flag] = &[
    Config,
    CertDir,
    NodeName,
    MemberId,
    Endpoints,
    Kubeconfig,
    EtcdCaFile,
    EtcdCertFile,
    EtcdKeyFile,
    Timeout,
    Force,
    DryRun,
];

/// `kubeadm-etcd phase ...`: every phase, individually invokable.
pub static PHASES: &[Phase] = &[
    Phase {
        long: "Generate the etcd certificates exactly as kubeadm does. Existing certificates that are signed by the etcd CA and cover every required name are reused; anything else on disk is an error, never overwritten.",
        example: "  # Make every missing etcd certificate for this node\n  kubeadm-etcd phase certs all --config kubeadm.yaml",
        flags: CERT_FLAGS,
        batch: Some(commands::certs::run),
        ..Phase::group("certs", "Certificate generation", &[
            Phase {
                run_all_siblings: true,
                ..Phase::batch_leaf("all", "Generate all etcd certificates", CERT_FLAGS)
            },
            Phase::batch_leaf("etcd-ca", "Generate the self-signed CA to provision identities for etcd", CERT_FLAGS),
            Phase::batch_leaf("etcd-server", "Generate the certificate for serving etcd", CERT_FLAGS),
            Phase::batch_leaf("etcd-peer", "Generate the certificate for etcd nodes to communicate with each other", CERT_FLAGS),
            Phase::batch_leaf("etcd-healthcheck-client", "Generate the certificate for liveness probes to healthcheck etcd", CERT_FLAGS),
            Phase::batch_leaf("apiserver-etcd-client", "Generate the certificate the apiserver uses to access etcd", CERT_FLAGS),
        ])
    },
    Phase::group(
        "etcd",
        "Local etcd: static Pod manifests and learner-based membership",
        &[
            Phase {
                long: "Write the etcd static Pod manifest for the first member of a new cluster (--initial-cluster with this member only). The output is deterministic: --dry-run prints exactly the bytes it would write.",
                example: "  kubeadm-etcd phase etcd local --config kubeadm.yaml --dry-run",
                ..Phase::leaf("local", "Generate the static Pod manifest file for a local, single-node local etcd instance", ETCD_LOCAL_FLAGS, commands::etcd::local)
            },
            Phase {
                long: "For every host of an external etcd cluster, write <output-dir>/<host>/ with its kubeadm configuration (kubeadmcfg.yaml), its certificates (pki/) and its static Pod manifest (manifests/etcd.yaml; --initial-cluster lists every host, state new). One CA signs every host; its key stays in <output-dir>/ca/ and never in a host folder. Rerunning reuses the CA and valid certificates. The configuration file gives the cluster-wide settings (kubernetesVersion, etcd.local, ...).",
                example: "  kubeadm-etcd phase etcd external-bundle --config cluster.yaml --hosts etcd-0=10.0.1.10,etcd-1=10.0.1.11,etcd-2=10.0.1.12 --output-dir ./etcd-hosts",
                ..Phase::leaf("external-bundle", "Generate certificates, kubeadm configurations and static Pod manifests for the hosts of an external etcd cluster", &[Config, Hosts, OutputDir], commands::etcd::external_bundle)
            },
            Phase {
                long: "Add this node to an existing etcd cluster as a learner (a non-voting member, so quorum is untouched) and write its static Pod manifest with --initial-cluster listing every member and --initial-cluster-state=existing. Checks first that the cluster has quorum, runs etcd 3.4 or newer, does not use this node's name for another member, and that the data directory is empty or this member's own. Idempotent: a member with this peer URL is reused. Waits (bounded by --timeout) while another member is joining. Finds the cluster through --endpoints, else etcd.external.endpoints, else the etcd Pods through --kubeconfig.",
                example: "  kubeadm-etcd phase etcd join-learner --config join.yaml --endpoints https://10.0.0.1:2379",
                ..Phase::leaf("join-learner", "Add this node to the etcd cluster as a learner and write its static Pod manifest", ETCD_JOIN_FLAGS, commands::membership::join_learner)
            },
            Phase {
                long: "Wait until the learner has started and caught up with the leader (progress from the Status RPC), check that it answers, then promote it to a voting member and wait until the cluster is healthy with it. The learner is this node's member (by peer URL), or --node-name / --id. --timeout defaults to the configuration's timeouts.etcdAPICall but at least 10m, for large databases; on timeout the error says whether the learner never started, is stuck, or does not answer, and how to roll it back.",
                example: "  kubeadm-etcd phase etcd promote --config join.yaml --endpoints https://10.0.0.1:2379\n  kubeadm-etcd phase etcd promote --id 8e9e05c52164694d --endpoints https://10.0.0.1:2379 --timeout 30m",
                ..Phase::leaf("promote", "Promote this node's etcd learner to a voting member once it has caught up", ETCD_PROMOTE_FLAGS, commands::membership::promote)
            },
            Phase {
                long: "Every member with its ID (hex), name, peer and client URLs, role, whether it started, leader, version, DB size, raft term, raft and applied index, and a learner's progress against the leader.",
                example: "  kubeadm-etcd phase etcd status --endpoints https://10.0.0.1:2379 -o json",
                ..Phase::leaf("status", "Show every etcd member and its state", ETCD_INSPECT_FLAGS, commands::membership::status)
            },
            Phase {
                long: "Quorum-based health: healthy when a majority of the voting members answer without errors and know a leader. Warns about learners, unhealthy voters and an even number of voters. Exits non-zero when unhealthy.",
                example: "  kubeadm-etcd phase etcd check-health --endpoints https://10.0.0.1:2379",
                ..Phase::leaf("check-health", "Check that the etcd cluster has quorum", ETCD_INSPECT_FLAGS, commands::membership::check_health)
            },
            Phase {
                long: "Remove a member by --node-name or --id (hex). A learner can always be removed (it does not vote): this is how a failed join is rolled back. A voting member is refused when the healthy voters that would remain could not keep quorum, unless --force. Idempotent: a member that is gone already is success.",
                example: "  kubeadm-etcd phase etcd remove-member --id 8e9e05c52164694d --endpoints https://10.0.0.1:2379",
                ..Phase::leaf("remove-member", "Remove a member from the etcd cluster without losing quorum", ETCD_REMOVE_FLAGS, commands::membership::remove_member)
            },
        ],
    ),
    Phase::group(
        "upgrade",
        "Upgrade-time changes to the stored kubeadm configuration",
        &[Phase {
            long: "Rewrite the featureGates of the ClusterConfiguration stored in kube-system/kubeadm-config so that kubeadm of the target version accepts it: drop gates it no longer knows, drop locked GA values, keep every explicit choice it still accepts. Writes with optimistic concurrency and keeps a backup.",
            example: "  kubeadm-etcd phase upgrade migrate-feature-gates --target-version v1.33.0 --dry-run\n  kubectl -n kube-system get cm kubeadm-config -o yaml > cm.yaml\n  kubeadm-etcd phase upgrade migrate-feature-gates --target-version v1.33.0 --from-file cm.yaml --to-file new.yaml",
            ..Phase::leaf(
                "migrate-feature-gates",
                "Carry the stored featureGates across to a target Kubernetes version",
                &[Kubeconfig, FromFile, ToFile, TargetVersion, ApiVersion, EnableLearnerMode, Force, BackupDir, DryRun],
                commands::upgrade::migrate_feature_gates,
            )
        }],
    ),
];

/// A workflow: phases of [`PHASES`], by path, run in order.
pub struct Workflow {
    pub name: &'static str,
    pub short: &'static str,
    pub long: &'static str,
    pub phases: &'static [&'static str],
}

pub static WORKFLOWS: &[Workflow] = &[Workflow {
    name: "init",
    short: "Set up the first etcd member of a new cluster: certificates, then its static Pod manifest",
    long: "Runs the phases certs and etcd/local in order. Select what runs with --skip-phases (a parent selects its children; skipping wins).",
    phases: &["certs", "etcd/local"],
}, Workflow {
    name: "join",
    short: "Add this node's etcd member to an existing cluster: certificates, then join as a learner and promote it",
    long: "Runs the phases certs, etcd/join-learner and etcd/promote in order: the member joins as a non-voting learner and becomes a voter only once it has caught up and answers. The etcd static Pod must start in between (the kubelet starts it from the manifest). Select what runs with --skip-phases.",
    phases: &["certs", "etcd/join-learner", "etcd/promote"],
}];

/// A phase of a workflow with its full name (`certs/etcd-peer`).
#[derive(Clone)]
pub struct Node {
    pub path: String,
    pub phase: &'static Phase,
    pub parent: Option<usize>,
}

/// Finds a phase by path (`etcd/local`).
pub fn find(path: &str) -> Option<&'static Phase> {
    let mut level = PHASES;
    let mut found = None;
    for part in path.split('/') {
        let phase = level.iter().find(|p| p.name == part)?;
        found = Some(phase);
        level = phase.children;
    }
    found
}

/// The workflow's phases in running order, parents before children, as kubeadm names
/// them for `--skip-phases`. `all` leaves are commands only and not part of this list.
pub fn workflow_nodes(workflow: &Workflow) -> Vec<Node> {
    fn add(
        nodes: &mut Vec<Node>,
        phase: &'static Phase,
        path: String,
        parent: Option<usize>,
        only: Option<&str>,
    ) {
        let index = nodes.len();
        nodes.push(Node {
            path: path.clone(),
            phase,
            parent,
        });
        for child in phase.children {
            if child.run_all_siblings || only.is_some_and(|o| o != child.name) {
                continue;
            }
            add(
                nodes,
                child,
                format!("{path}/{}", child.name),
                Some(index),
                None,
            );
        }
    }
    let mut nodes = Vec::new();
    for wanted in workflow.phases {
        let (top, rest) = wanted
            .split_once('/')
            .map_or((*wanted, None), |(t, r)| (t, Some(r)));
        let phase = find(top)
            .unwrap_or_else(|| panic!("workflow {} names unknown phase {top}", workflow.name));
        match nodes.iter().position(|n: &Node| n.path == top) {
            // A second path under the same top-level phase (etcd/join-learner, etcd/promote).
            Some(parent) => {
                let rest = rest.expect("a phase is listed once");
                let child = phase
                    .children
                    .iter()
                    .find(|c| c.name == rest)
                    .expect("workflow names a known phase");
                nodes.push(Node {
                    path: format!("{top}/{rest}"),
                    phase: child,
                    parent: Some(parent),
                });
            }
            None => add(&mut nodes, phase, top.to_string(), None, rest),
        }
    }
    nodes
}

/// kubeadm's `computePhaseRunFlags`: which phases run given a filter (empty: all) and
/// a skip list. A selected parent selects its children; skipping wins over selecting;
/// an unknown name is an error that lists the known ones.
pub fn compute_run_flags(
    nodes: &[Node],
    filter: &[String],
    skip: &[String],
) -> anyhow::Result<Vec<bool>> {
    let known: Vec<&str> = nodes.iter().map(|n| n.path.as_str()).collect();
    for name in filter.iter().chain(skip) {
        if !known.contains(&name.as_str()) {
            bail!(
                "invalid phase name {name:?} in --skip-phases; valid names: {}",
                known.join(", ")
            );
        }
    }
    let mut run = vec![false; nodes.len()];
    let mut skipped = vec![false; nodes.len()];
    // Parents come before their children, so one pass sees every parent's decision.
    for (i, node) in nodes.iter().enumerate() {
        let parent_runs = node.parent.is_some_and(|p| run[p]);
        let parent_skipped = node.parent.is_some_and(|p| skipped[p]);
        skipped[i] = parent_skipped || skip.contains(&node.path);
        let selected = filter.is_empty() || parent_runs || filter.contains(&node.path);
        run[i] = selected && !skipped[i];
    }
    Ok(run)
}

/// Runs a workflow's selected phases in order. A group with a batch runner gets its
/// selected children in one call.
pub fn run_workflow(ctx: &Context, workflow: &Workflow, skip: &[String]) -> anyhow::Result<()> {
    let nodes = workflow_nodes(workflow);
    let run = compute_run_flags(&nodes, &[], skip)?;
    let mut handled = vec![false; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        if handled[i] {
            continue;
        }
        if let Some(batch) = node.phase.batch {
            let children: Vec<&'static str> = nodes
                .iter()
                .enumerate()
                .filter(|(j, n)| n.parent == Some(i) && run[*j])
                .map(|(_, n)| n.phase.name)
                .collect();
            for (j, handled) in handled.iter_mut().enumerate() {
                if is_descendant(&nodes, j, i) {
                    *handled = true;
                }
            }
            if !children.is_empty() {
                batch(ctx, &children)
                    .with_context(|| format!("error execution phase {}", node.path))?;
            }
        } else if let (true, Some(leaf)) = (run[i], node.phase.run) {
            leaf(ctx).with_context(|| format!("error execution phase {}", node.path))?;
        }
    }
    Ok(())
}

fn is_descendant(nodes: &[Node], mut i: usize, ancestor: usize) -> bool {
    while let Some(p) = nodes[i].parent {
        if p == ancestor {
            return true;
        }
        i = p;
    }
    false
}

/// Runs one phase invoked as `kubeadm-etcd phase <group> <name>`.
pub fn run_phase(ctx: &Context, group: &'static Phase, leaf: &'static Phase) -> anyhow::Result<()> {
    let path = format!("{}/{}", group.name, leaf.name);
    let result = if let Some(batch) = group.batch {
        let names: Vec<&'static str> = if leaf.run_all_siblings {
            group
                .children
                .iter()
                .filter(|c| !c.run_all_siblings)
                .map(|c| c.name)
                .collect()
        } else {
            vec![leaf.name]
        };
        batch(ctx, &names)
    } else if let Some(run) = leaf.run {
        run(ctx)
    } else {
        bail!("phase {path} has nothing to run")
    };
    result.with_context(|| format!("error execution phase {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<'a>(nodes: &'a [Node], run: &[bool]) -> Vec<&'a str> {
        nodes
            .iter()
            .zip(run)
            .filter(|(_, &r)| r)
            .map(|(n, _)| n.path.as_str())
            .collect()
    }

    fn init() -> Vec<Node> {
        workflow_nodes(WORKFLOWS.iter().find(|w| w.name == "init").unwrap())
    }

    #[test]
    fn workflow_nodes_follow_the_declaration() {
        let nodes = init();
        let paths: Vec<&str> = nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "certs",
                "certs/etcd-ca",
                "certs/etcd-server",
                "certs/etcd-peer",
                "certs/etcd-healthcheck-client",
                "certs/apiserver-etcd-client",
                "etcd",
                "etcd/local"
            ]
        );
    }

    // kubeadm's TestComputePhaseRunFlags cases, on our tree.
    #[test]
    fn selection_like_kubeadm() {
        let nodes = init();
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = compute_run_flags(&nodes, &[], &[]).unwrap();
        assert_eq!(names(&nodes, &all).len(), nodes.len());

        let filtered = compute_run_flags(&nodes, &s(&["certs"]), &[]).unwrap();
        assert_eq!(names(&nodes, &filtered)[..2], ["certs", "certs/etcd-ca"]);
        assert!(!names(&nodes, &filtered).contains(&"etcd/local"));

        let skipped = compute_run_flags(&nodes, &[], &s(&["certs/etcd-peer"])).unwrap();
        assert!(!names(&nodes, &skipped).contains(&"certs/etcd-peer"));
        assert!(names(&nodes, &skipped).contains(&"certs/etcd-server"));

        let parent_skipped = compute_run_flags(&nodes, &[], &s(&["certs"])).unwrap();
        assert_eq!(names(&nodes, &parent_skipped), ["etcd", "etcd/local"]);

        // Skip options have higher precedence than filter options.
        let both = compute_run_flags(&nodes, &s(&["certs"]), &s(&["certs/etcd-ca"])).unwrap();
        assert!(names(&nodes, &both).contains(&"certs/etcd-server"));
        assert!(!names(&nodes, &both).contains(&"certs/etcd-ca"));
    }

    #[test]
    fn unknown_phase_names_are_errors() {
        let err = compute_run_flags(&init(), &[], &["certs/etcd-nope".to_string()]).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("invalid phase name \"certs/etcd-nope\" in --skip-phases; valid names: certs, certs/etcd-ca,"), "{message}");
    }

    #[test]
    fn join_runs_certs_then_the_learner_then_the_promotion() {
        let join = WORKFLOWS.iter().find(|w| w.name == "join").unwrap();
        let nodes = workflow_nodes(join);
        let paths: Vec<&str> = nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(paths[0], "certs");
        assert_eq!(
            &paths[paths.len() - 3..],
            ["etcd", "etcd/join-learner", "etcd/promote"]
        );
        assert!(!paths.contains(&"etcd/local"));
    }

    #[test]
    fn every_workflow_phase_exists() {
        for workflow in WORKFLOWS {
            for path in workflow.phases {
                assert!(find(path).is_some(), "{} names {path}", workflow.name);
            }
        }
    }
}
