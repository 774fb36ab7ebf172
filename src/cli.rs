//! The clap command tree, built from the phase tree and the flag declarations, and the
//! way back: which phase or workflow a parsed command line names, with its flags.

use std::collections::BTreeSet;

use std::path::PathBuf;

use clap::{Arg, ArgMatches, Command};
use clap_complete::Shell;

use crate::flags::{Flag, FlagValues};
use crate::phase::{Phase, Run, Workflow};
use crate::workflow::Tree;

const ABOUT: &str = "Run etcd for kubeadm clusters safely: certificates, static Pod manifests and learner-based membership changes, as individually invokable phases";
/// The global verbosity flag, `-v N` / `--v N` as kubeadm spells it.
const VERBOSITY: &str = "v";
const PHASE: &str = "phase";
const ALL: &str = "all";
const COMPLETION: &str = "completion";
const VERSION: &str = "version";
const MAN: &str = "man";
/// The name the completions and man pages are written for: the one the package installs.
pub const BIN: &str = "kubeadm-etcd";
/// The shells `completion` writes for (kubeadm's `completion` has bash and zsh).
const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Every command a user runs: what `--help`, the completions, the man pages and the
/// README list.
pub fn user_command(tree: &Tree) -> Command {
    let mut phase_cmd = Command::new(PHASE)
        .about("Use this command to invoke a single phase")
        .subcommand_required(true)
        .arg_required_else_help(true);
    for phase in &tree.phases {
        phase_cmd = phase_cmd.subcommand(phase_command(phase));
    }

    let mut root = Command::new(BIN)
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .subcommand_required(true)
        .arg_required_else_help(true)
        .arg(
            Arg::new(VERBOSITY)
                .short('v')
                .long(VERBOSITY)
                .value_name("N")
                .help("Log level: 0 warnings, 1 info, 2 debug, 3 trace")
                .global(true)
                .default_value("0")
                .value_parser(clap::value_parser!(u8)),
        );
    for workflow in &tree.workflows {
        root = root.subcommand(workflow_command(tree, workflow));
    }
    root.subcommand(phase_cmd)
        .subcommand(completion_command())
        .subcommand(version_command())
}

/// The tree the tool parses with: [`user_command`] and the hidden packaging command.
pub fn command(tree: &Tree) -> Command {
    user_command(tree).subcommand(man_command())
}

fn completion_command() -> Command {
    Command::new(COMPLETION)
        .about("Output shell completion code for the specified shell (bash, zsh or fish)")
        .long_about(
            "Output shell completion code for the specified shell (bash, zsh or fish), \
             generated from the same command tree the tool parses its command line with.",
        )
        .after_help(
            "Examples:\n  \
             # Load the completions into the current bash shell\n  \
             source <(kubeadm-etcd completion bash)\n\n  \
             # Install them for every bash user (the Debian package does this)\n  \
             kubeadm-etcd completion bash > /usr/share/bash-completion/completions/kubeadm-etcd\n  \
             kubeadm-etcd completion zsh > /usr/share/zsh/vendor-completions/_kubeadm-etcd\n  \
             kubeadm-etcd completion fish > /usr/share/fish/vendor_completions.d/kubeadm-etcd.fish",
        )
        .arg(
            Arg::new("shell")
                .value_name("SHELL")
                .required(true)
                .value_parser(SHELLS.map(|s| s.to_string()))
                .help("The shell to write completions for"),
        )
}

fn version_command() -> Command {
    Command::new(VERSION)
        .about("Print the version of kubeadm-etcd and the kubeadm and etcd releases it knows")
        .arg(
            Arg::new("output")
                .short('o')
                .long("output")
                .value_name("FORMAT")
                .default_value("text")
                .value_parser(crate::version::FORMATS)
                .help("Output format"),
        )
}

/// Packaging only (hack/release.sh): hidden from the help, the completions and the
/// README, since a node never needs it.
fn man_command() -> Command {
    Command::new(MAN)
        .about("Write a man page for every command into a directory")
        .hide(true)
        .arg(
            Arg::new("output-dir")
                .long("output-dir")
                .value_name("DIR")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf))
                .help("The directory to write kubeadm-etcd.1, kubeadm-etcd-phase.1, ... into"),
        )
}

/// `-v N`.
pub fn verbosity(matches: &ArgMatches) -> u8 {
    *matches.get_one::<u8>(VERBOSITY).expect("-v has a default")
}

/// The flags of the command that runs `phase`: its own, or for a group's `all`,
/// every child's.
fn phase_command(phase: &Phase) -> Command {
    let mut cmd = Command::new(phase.name).about(phase.short.clone());
    if !phase.long.is_empty() {
        cmd = cmd.long_about(phase.long);
    }
    if !phase.example.is_empty() {
        cmd = cmd.after_help(format!("Examples:\n{}", phase.example));
    }
    match &phase.run {
        Run::Leaf(_) | Run::Batch(_) => {
            for flag in leaf_flags(phase) {
                cmd = cmd.arg(flag.arg());
            }
        }
        Run::Group(group) => {
            cmd = cmd.subcommand_required(true).arg_required_else_help(true);
            if let Some(all) = group.all {
                let mut all_cmd = Command::new(ALL).about(all);
                for flag in phase.all_flags() {
                    all_cmd = all_cmd.arg(flag.arg());
                }
                cmd = cmd.subcommand(all_cmd);
            }
            for child in &group.children {
                cmd = cmd.subcommand(phase_command(child));
            }
        }
    }
    cmd
}

fn leaf_flags(phase: &Phase) -> BTreeSet<Flag> {
    phase.flags.iter().copied().collect()
}

/// A workflow takes every flag of its phases, and `--skip-phases`.
fn workflow_flags(tree: &Tree, workflow: &Workflow) -> BTreeSet<Flag> {
    let mut flags: BTreeSet<Flag> = tree
        .workflow_nodes(workflow)
        .iter()
        .flat_map(|n| n.phase.flags.iter().copied())
        .collect();
    flags.insert(Flag::SkipPhases);
    flags
}

fn workflow_command(tree: &Tree, workflow: &Workflow) -> Command {
    let nodes = tree.workflow_nodes(workflow);
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
        // First in the help, as the flag that is about the workflow itself.
        .arg(Flag::SkipPhases.arg());
    for flag in workflow_flags(tree, workflow) {
        if flag != Flag::SkipPhases {
            cmd = cmd.arg(flag.arg());
        }
    }
    cmd
}

/// What a parsed command line asks for.
pub enum Invocation<'t> {
    /// `phase <path...>`: a phase, or a group's `all` (then the last element is `all`).
    Phase {
        path: Vec<&'t str>,
        values: FlagValues,
    },
    Workflow {
        workflow: &'t Workflow,
        values: FlagValues,
    },
    Completion(Shell),
    /// `version -o FORMAT`.
    Version(String),
    /// `man --output-dir DIR`.
    Man(PathBuf),
}

/// Finds what `matches` (from [`command`] of the same tree) names. The flags each
/// command takes are computed by the same functions that built it.
pub fn invocation(tree: &Tree, mut matches: ArgMatches) -> Invocation<'_> {
    let (name, sub) = matches
        .remove_subcommand()
        .expect("a subcommand is required");
    let mut sub = sub;
    match name.as_str() {
        COMPLETION => {
            let shell: String = sub.remove_one("shell").expect("the shell is required");
            return Invocation::Completion(shell.parse().expect("clap accepts listed shells only"));
        }
        VERSION => {
            return Invocation::Version(sub.remove_one("output").expect("-o has a default"));
        }
        MAN => return Invocation::Man(sub.remove_one("output-dir").expect("required")),
        _ => {}
    }
    if name != PHASE {
        let workflow = tree
            .workflow(&name)
            .expect("clap accepts declared workflows only");
        let values = FlagValues::new(sub, workflow_flags(tree, workflow));
        return Invocation::Workflow { workflow, values };
    }
    let mut path = Vec::new();
    let mut level: &[Phase] = &tree.phases;
    let mut parent: Option<&Phase> = None;
    let mut matches = sub;
    loop {
        let (name, sub) = matches
            .remove_subcommand()
            .expect("clap requires a subcommand under a group");
        if name == ALL {
            let group = parent.expect("`all` is only under a group");
            path.push(ALL);
            return Invocation::Phase {
                path,
                values: FlagValues::new(sub, group.all_flags()),
            };
        }
        let phase = level
            .iter()
            .find(|p| p.name == name)
            .expect("clap accepts declared phases only");
        path.push(phase.name);
        match &phase.run {
            Run::Leaf(_) | Run::Batch(_) => {
                return Invocation::Phase {
                    path,
                    values: FlagValues::new(sub, leaf_flags(phase)),
                }
            }
            Run::Group(group) => {
                level = &group.children;
                parent = Some(phase);
                matches = sub;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_tree_is_consistent() {
        command(&Tree::new()).debug_assert();
    }

    #[test]
    fn every_declared_phase_is_a_command() {
        fn check(cmd: &Command, phase: &Phase, path: &str) {
            let sub = cmd
                .find_subcommand(phase.name)
                .unwrap_or_else(|| panic!("no command for {path}"));
            for child in phase.children() {
                check(sub, child, &format!("{path}/{}", child.name));
            }
        }
        let tree = Tree::new();
        let root = command(&tree);
        let phase = root.find_subcommand(PHASE).unwrap();
        for p in &tree.phases {
            check(phase, p, p.name);
        }
    }

    /// Every phase command parses back to its phase, with exactly the flags its
    /// command was built with (so a phase can read every flag it declared).
    #[test]
    fn every_command_parses_back_to_its_phase() {
        fn leaves(cmd: &Command, prefix: Vec<String>, out: &mut Vec<(Vec<String>, Command)>) {
            if !cmd.has_subcommands() {
                out.push((prefix, cmd.clone()));
                return;
            }
            for sub in cmd.get_subcommands() {
                let mut path = prefix.clone();
                path.push(sub.get_name().to_string());
                leaves(sub, path, out);
            }
        }
        let tree = Tree::new();
        let root = command(&tree);
        let mut found = Vec::new();
        leaves(root.find_subcommand(PHASE).unwrap(), vec![], &mut found);
        assert!(found.len() > 10, "{}", found.len());
        for (leaf, cmd) in found {
            let built: BTreeSet<&str> = cmd
                .get_arguments()
                .map(|a| a.get_id().as_str())
                .filter(|id| !["help", VERBOSITY].contains(id))
                .collect();
            let mut args = vec!["kubeadm-etcd".to_string(), PHASE.to_string()];
            args.extend(leaf.iter().cloned());
            // The required flags, so that the line parses.
            for (flag, value) in [
                (Flag::TargetVersion, "v1.33.0"),
                (Flag::Hosts, "a=10.0.0.1"),
                (Flag::OutputDir, "out"),
                (Flag::To, "node1"),
            ] {
                if built.contains(flag.id()) {
                    args.push(format!("--{}", flag.id()));
                    args.push(value.to_string());
                }
            }
            if built.contains(Flag::SnapshotFile.id()) {
                args.push("snap.db".to_string());
            }
            if built.contains(Flag::RenewTarget.id()) {
                args.push("all".to_string());
            }
            let matches = command(&tree).try_get_matches_from(&args).unwrap();
            let Invocation::Phase { path, values } = invocation(&tree, matches) else {
                panic!("{leaf:?} is a phase");
            };
            assert_eq!(path, leaf.iter().map(String::as_str).collect::<Vec<_>>());
            let taken: BTreeSet<&str> = Flag::ALL
                .into_iter()
                .filter(|f| values.takes(*f))
                .map(Flag::id)
                .collect();
            assert_eq!(taken, built, "{leaf:?}");
        }
    }

    /// The command list of the README, rendered from the clap tree: every command that
    /// runs something with its one-line help; a group with an `all` command whose
    /// children are all leaves is one line listing its children.
    fn command_list(tree: &Tree, root: &Command) -> String {
        /// The full names (`kubeadm-etcd phase certs renew`) of the standalone phases,
        /// which are listed on lines of their own, not among their group's `all`.
        fn standalone(prefix: &str, phases: &[Phase], out: &mut BTreeSet<String>) {
            for p in phases {
                let name = format!("{prefix} {}", p.name);
                if p.standalone {
                    out.insert(name.clone());
                }
                standalone(&name, p.children(), out);
            }
        }
        fn walk(cmd: &Command, prefix: &str, alone: &BTreeSet<String>, out: &mut String) {
            let name = format!("{prefix} {}", cmd.get_name());
            let subs: Vec<&Command> = cmd.get_subcommands().filter(|c| !c.is_hide_set()).collect();
            let is_alone = |c: &Command| alone.contains(&format!("{name} {}", c.get_name()));
            let (own, apart): (Vec<&Command>, Vec<&Command>) =
                subs.iter().partition(|c| !is_alone(c));
            let about = |c: &Command| c.get_about().map(|a| a.to_string()).unwrap_or_default();
            let collapsed =
                own.iter().any(|c| c.get_name() == ALL) && own.iter().all(|c| !c.has_subcommands());
            if subs.is_empty() || collapsed {
                let names: Vec<&str> = own.iter().map(|c| c.get_name()).collect();
                // A leaf's positional that takes listed values: `completion bash|zsh|fish`.
                let values: Vec<String> = cmd
                    .get_positionals()
                    .flat_map(|a| a.get_possible_values())
                    .map(|v| v.get_name().to_string())
                    .collect();
                let line = if collapsed {
                    format!("{name} {}", names.join("|"))
                } else if !values.is_empty() {
                    format!("{name} {}", values.join("|"))
                } else {
                    name.clone()
                };
                out.push_str(&format!("{line}\n    {}\n", about(cmd)));
                for sub in apart {
                    walk(sub, &name, alone, out);
                }
                return;
            }
            for sub in subs {
                walk(sub, &name, alone, out);
            }
        }
        let mut alone = BTreeSet::new();
        standalone(
            &format!("{} {PHASE}", root.get_name()),
            &tree.phases,
            &mut alone,
        );
        let mut out = String::new();
        for sub in root.get_subcommands().filter(|c| !c.is_hide_set()) {
            walk(sub, root.get_name(), &alone, &mut out);
        }
        out
    }

    /// The README's command list is the tree's. After adding a command, regenerate it
    /// with `UPDATE_README=1 cargo test --bin kubeadm-etcd readme`.
    #[test]
    fn readme_command_list_matches_the_tree() {
        const BEGIN: &str = "<!-- commands: generated from the command tree by src/cli.rs; UPDATE_README=1 cargo test --bin kubeadm-etcd readme -->\n```\n";
        const END: &str = "```\n<!-- end of commands -->";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let start = readme
            .find(BEGIN)
            .expect("the README has the command list markers")
            + BEGIN.len();
        let end = start + readme[start..].find(END).expect("the command list ends");
        let tree = Tree::new();
        let expected = command_list(&tree, &command(&tree));
        if readme[start..end] != expected {
            if std::env::var_os("UPDATE_README").is_some() {
                let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
                std::fs::write(&path, updated).unwrap();
            } else {
                panic!(
                    "README.md's command list is not the command tree's; run UPDATE_README=1 cargo test --bin kubeadm-etcd readme, or put this between the markers:\n{expected}"
                );
            }
        }
    }
}
