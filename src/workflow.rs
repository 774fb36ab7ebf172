//! The phase tree, assembled from the declarations in `src/commands/`, and the runner
//! (kubeadm's `workflow.Runner`).
//!
//! The clap command tree, the help text, the workflows' phase lists, `--skip-phases`
//! validation and the README's command list all derive from [`Tree`]; nothing here
//! names a particular phase.

use anyhow::{bail, Context as _};

use crate::commands;
use crate::context::Session;
use crate::phase::{Phase, Run, Workflow};

/// Every phase under `kubeadm-etcd phase`, and every workflow.
pub struct Tree {
    pub phases: Vec<Phase>,
    pub workflows: Vec<Workflow>,
}

/// A phase placed in the tree, with its full name (`certs/etcd-peer`).
#[derive(Clone)]
pub struct Node<'t> {
    pub path: String,
    pub phase: &'t Phase,
    pub parent: Option<usize>,
}

impl Tree {
    pub fn new() -> Self {
        Tree {
            phases: commands::phases(),
            workflows: commands::workflows(),
        }
    }

    /// Finds a phase by path (`etcd/local`).
    pub fn find(&self, path: &str) -> Option<&Phase> {
        let mut level: &[Phase] = &self.phases;
        let mut found = None;
        for part in path.split('/') {
            let phase = level.iter().find(|p| p.name == part)?;
            found = Some(phase);
            level = phase.children();
        }
        found
    }

    pub fn workflow(&self, name: &str) -> Option<&Workflow> {
        self.workflows.iter().find(|w| w.name == name)
    }

    /// The workflow's phases in running order, parents before children, named as
    /// kubeadm names them for `--skip-phases`. A listed path brings its ancestors
    /// (which then select only what the workflow lists) and its whole subtree.
    pub fn workflow_nodes(&self, workflow: &Workflow) -> Vec<Node<'_>> {
        let mut nodes = Vec::new();
        for wanted in workflow.phases {
            let parts: Vec<&str> = wanted.split('/').collect();
            let mut level: &[Phase] = &self.phases;
            let mut parent = None;
            for (depth, part) in parts.iter().enumerate() {
                let phase = level.iter().find(|p| p.name == *part).unwrap_or_else(|| {
                    panic!("workflow {} names unknown phase {wanted}", workflow.name)
                });
                let path = parts[..=depth].join("/");
                let last = depth + 1 == parts.len();
                match nodes.iter().position(|n: &Node| n.path == path) {
                    Some(_) if last => panic!("workflow {} lists {wanted} twice", workflow.name),
                    Some(index) => parent = Some(index),
                    None if last => add_subtree(&mut nodes, phase, path, parent),
                    None => {
                        nodes.push(Node {
                            path,
                            phase,
                            parent,
                        });
                        parent = Some(nodes.len() - 1);
                    }
                }
                level = phase.children();
            }
        }
        nodes
    }

    /// The nodes of one phase and everything under it.
    pub fn subtree_nodes<'t>(&'t self, path: &str, phase: &'t Phase) -> Vec<Node<'t>> {
        let mut nodes = Vec::new();
        add_subtree(&mut nodes, phase, path.to_string(), None);
        nodes
    }
}

fn add_subtree<'t>(
    nodes: &mut Vec<Node<'t>>,
    phase: &'t Phase,
    path: String,
    parent: Option<usize>,
) {
    let index = nodes.len();
    nodes.push(Node {
        path: path.clone(),
        phase,
        parent,
    });
    for child in phase.run_children() {
        add_subtree(nodes, child, format!("{path}/{}", child.name), Some(index));
    }
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

/// Runs a workflow's selected phases in order.
pub fn run_workflow(
    session: &Session,
    tree: &Tree,
    workflow: &Workflow,
    skip: &[String],
) -> anyhow::Result<()> {
    let nodes = tree.workflow_nodes(workflow);
    let run = compute_run_flags(&nodes, &[], skip)?;
    execute(session, &nodes, &run, Invoked::Workflow)
}

/// Runs the command `kubeadm-etcd phase <path>`: one phase, or a group's `all`.
pub fn run_phase_command(session: &Session, tree: &Tree, path: &[&str]) -> anyhow::Result<()> {
    let label = path.join("/");
    let (nodes, run_all) = match path.split_last() {
        Some((&"all", group_path)) if !group_path.is_empty() => {
            let group_path = group_path.join("/");
            let group = tree
                .find(&group_path)
                .unwrap_or_else(|| panic!("no phase {group_path}"));
            (tree.subtree_nodes(&group_path, group), true)
        }
        _ => {
            let phase = tree
                .find(&label)
                .unwrap_or_else(|| panic!("no phase {label}"));
            (tree.subtree_nodes(&label, phase), true)
        }
    };
    let run = vec![run_all; nodes.len()];
    execute(session, &nodes, &run, Invoked::Command(&label))
}

/// How the phases being run were asked for.
#[derive(Clone, Copy)]
enum Invoked<'a> {
    /// By a workflow: errors name the phase that failed.
    Workflow,
    /// By `phase <path>`: errors name the command.
    Command(&'a str),
}

/// Runs the selected nodes in order. A batch phase runs once for itself and every
/// later selected sibling with the same function.
fn execute(
    session: &Session,
    nodes: &[Node],
    run: &[bool],
    invoked: Invoked,
) -> anyhow::Result<()> {
    let (label, in_workflow) = match invoked {
        Invoked::Workflow => (None, true),
        Invoked::Command(label) => (Some(label), false),
    };
    let mut handled = vec![false; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        if handled[i] || !run[i] {
            continue;
        }
        match &node.phase.run {
            Run::Group(_) => {}
            Run::Leaf(leaf) => {
                let path = label.unwrap_or(&node.path);
                let ctx = session.context(path, in_workflow, node.phase.flags.iter().copied());
                leaf(&ctx).with_context(|| format!("error execution phase {path}"))?;
            }
            Run::Batch(batch) => {
                let members: Vec<usize> = (i..nodes.len())
                    .filter(|&j| {
                        run[j]
                            && !handled[j]
                            && nodes[j].parent == node.parent
                            && matches!(nodes[j].phase.run, Run::Batch(other) if std::ptr::fn_addr_eq(*batch, other))
                    })
                    .collect();
                let names: Vec<&'static str> =
                    members.iter().map(|&j| nodes[j].phase.name).collect();
                let flags = members
                    .iter()
                    .flat_map(|&j| nodes[j].phase.flags.iter().copied());
                for &j in &members {
                    handled[j] = true;
                }
                // In a workflow a batch is its group's work, and named after it.
                let path =
                    label.unwrap_or_else(|| node.parent.map_or(&node.path, |p| &nodes[p].path));
                let ctx = session.context(path, in_workflow, flags);
                batch(&ctx, &names).with_context(|| format!("error execution phase {path}"))?;
            }
        }
    }
    Ok(())
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

    fn paths<'a>(nodes: &'a [Node]) -> Vec<&'a str> {
        nodes.iter().map(|n| n.path.as_str()).collect()
    }

    #[test]
    fn workflow_nodes_follow_the_declaration() {
        let tree = Tree::new();
        let nodes = tree.workflow_nodes(tree.workflow("init").unwrap());
        assert_eq!(
            paths(&nodes),
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
        let tree = Tree::new();
        let nodes = tree.workflow_nodes(tree.workflow("init").unwrap());
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
        let tree = Tree::new();
        let nodes = tree.workflow_nodes(tree.workflow("init").unwrap());
        let err = compute_run_flags(&nodes, &[], &["certs/etcd-nope".to_string()]).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("invalid phase name \"certs/etcd-nope\" in --skip-phases; valid names: certs, certs/etcd-ca,"), "{message}");
    }

    #[test]
    fn join_runs_certs_then_the_learner_then_the_promotion() {
        let tree = Tree::new();
        let nodes = tree.workflow_nodes(tree.workflow("join").unwrap());
        let paths = paths(&nodes);
        assert_eq!(paths[0], "certs");
        assert_eq!(
            &paths[paths.len() - 3..],
            ["etcd", "etcd/join-learner", "etcd/promote"]
        );
        assert!(!paths.contains(&"etcd/local"));
    }

    #[test]
    fn every_workflow_phase_exists() {
        let tree = Tree::new();
        for workflow in &tree.workflows {
            for path in workflow.phases {
                assert!(tree.find(path).is_some(), "{} names {path}", workflow.name);
            }
        }
    }

    /// Every node of the tree runs something: a leaf or a batch, or a group with at
    /// least one child (so, recursively, something to run). Names are unique among
    /// siblings, and `all` is never a declared name (it is generated).
    #[test]
    fn every_phase_has_something_to_run() {
        fn check(path: &str, phase: &Phase) {
            match &phase.run {
                Run::Leaf(_) | Run::Batch(_) => {}
                Run::Group(group) => {
                    assert!(!group.children.is_empty(), "group {path} has no children");
                    let mut names: Vec<&str> = group.children.iter().map(|c| c.name).collect();
                    names.sort();
                    names.dedup();
                    assert_eq!(names.len(), group.children.len(), "{path}: duplicate names");
                    for child in &group.children {
                        assert_ne!(child.name, "all", "{path}: `all` is generated by with_all");
                        check(&format!("{path}/{}", child.name), child);
                    }
                }
            }
            assert!(!phase.short.is_empty(), "{path} has no help");
        }
        for phase in &Tree::new().phases {
            check(phase.name, phase);
        }
    }

    #[test]
    fn certs_children_are_the_certificate_list() {
        let tree = Tree::new();
        let certs = tree.find("certs").unwrap();
        let children: Vec<&str> = certs.run_children().map(|c| c.name).collect();
        let expected: Vec<&str> = phases::pki::CertId::ALL
            .iter()
            .map(|id| id.phase_name())
            .collect();
        assert_eq!(children, expected);
        assert!(matches!(&certs.run, Run::Group(g) if g.all.is_some()));
        // kubeadm's `certs check-expiration` and `certs renew` are commands of their own:
        // `phase certs all` and `init` (which runs the group) never run them.
        let standalone: Vec<&str> = certs
            .children()
            .iter()
            .filter(|c| c.standalone)
            .map(|c| c.name)
            .collect();
        assert_eq!(standalone, ["check-expiration", "renew"]);
        let all = tree.subtree_nodes("certs", certs);
        assert!(all.iter().all(|n| !n.phase.standalone));
        let init = tree.workflow_nodes(tree.workflow("init").unwrap());
        assert!(init.iter().all(|n| !n.phase.standalone));
    }
}
