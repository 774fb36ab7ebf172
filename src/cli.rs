//! The clap command tree, built from the phase and flag declarations.

use clap::{Arg, ArgAction, Command};

use crate::workflow::{workflow_nodes, Phase, PHASES, WORKFLOWS};

const ABOUT: &str = "Run etcd for kubeadm clusters safely: certificates, static Pod manifests and learner-based membership changes, as individually invokable phases";

pub fn command() -> Command {
    let mut phase_cmd = Command::new("phase")
        .about("Use this command to invoke a single phase")
        .subcommand_required(true)
        .arg_required_else_help(true);
    for group in PHASES {
        phase_cmd = phase_cmd.subcommand(group_command(group));
    }

    let mut root = Command::new("kubeadm-etcd")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .subcommand_required(true)
        .arg_required_else_help(true)
        .arg(
            Arg::new("v")
                .short('v')
                .long("v")
                .value_name("N")
                .help("Log level: 0 warnings, 1 info, 2 debug, 3 trace")
                .global(true)
                .default_value("0")
                .value_parser(clap::value_parser!(u8)),
        );
    for workflow in WORKFLOWS {
        root = root.subcommand(workflow_command(workflow));
    }
    root.subcommand(phase_cmd)
}

fn group_command(group: &'static Phase) -> Command {
    let mut cmd = Command::new(group.name)
        .about(group.short)
        .subcommand_required(true)
        .arg_required_else_help(true);
    if !group.long.is_empty() {
        cmd = cmd.long_about(group.long);
    }
    for child in group.children {
        let mut leaf = Command::new(child.name).about(child.short);
        if !child.long.is_empty() {
            leaf = leaf.long_about(child.long);
        }
        if !child.example.is_empty() {
            leaf = leaf.after_help(format!("Examples:\n{}", child.example));
        }
        for flag in child.all_flags() {
            leaf = leaf.arg(flag.arg());
        }
        cmd = cmd.subcommand(leaf);
    }
    cmd
}

fn workflow_command(workflow: &'static crate::workflow::Workflow) -> Command {
    let nodes = workflow_nodes(workflow);
    let mut flags = std::collections::BTreeSet::new();
    for node in &nodes {
        flags.extend(node.phase.flags.iter().copied());
    }
    // Listed by the names --skip-phases takes, so the help is the reference for it.
    let width = nodes.iter().map(|n| n.path.len()).max().unwrap_or(0);
    let phase_list: Vec<String> = nodes
        .iter()
        .map(|n| format!("  {:<width$}  {}", n.path, n.phase.short))
        .collect();
    let mut cmd = Command::new(workflow.name)
        // The phase table is laid out by hand; wrapping would break its columns.
        .term_width(0)
        .about(workflow.short)
        .long_about(format!(
            "{}\n\nThe {} workflow executes the following phases:\n{}",
            workflow.long,
            workflow.name,
            phase_list.join("\n")
        ))
        .arg(
            Arg::new("skip-phases")
                .long("skip-phases")
                .value_name("PHASES")
                .help("Comma-separated phases to skip, named as listed below (certs/etcd-peer)")
                .value_delimiter(',')
                .action(ArgAction::Append),
        );
    for flag in flags {
        cmd = cmd.arg(flag.arg());
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_tree_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_declared_phase_is_a_command() {
        let root = command();
        let phase = root.find_subcommand("phase").unwrap();
        for group in PHASES {
            let cmd = phase.find_subcommand(group.name).unwrap();
            for child in group.children {
                assert!(
                    cmd.find_subcommand(child.name).is_some(),
                    "{}/{}",
                    group.name,
                    child.name
                );
            }
        }
    }
}
