//! What a phase declaration is (kubeadm's `workflow.Phase`): a name, help, the flags it
//! takes and what it runs. Declarations live next to the code that runs them, in
//! `src/commands/`; [`crate::workflow`] assembles them into the tree.

use crate::context::Context;
use crate::flags::Flag;

/// Runs a phase.
pub type RunFn = fn(&Context) -> anyhow::Result<()>;
/// Runs several sibling phases in one call, given their names in order (the
/// certificates share one CA and generate their keys concurrently).
pub type BatchFn = fn(&Context, &[&'static str]) -> anyhow::Result<()>;

/// What a phase does. Every variant runs something: a phase with nothing to run cannot
/// be written down.
pub enum Run {
    /// Runs on its own.
    Leaf(RunFn),
    /// Runs together with the selected siblings that have the same function, in one
    /// call at the place of the first of them.
    Batch(BatchFn),
    /// Runs its children, in order.
    Group(Group),
}

pub struct Group {
    pub children: Vec<Phase>,
    /// The help of an `all` command that runs every child (kubeadm's `RunAllSiblings`).
    /// It is a command only: workflows name the group or the children.
    pub all: Option<&'static str>,
}

/// One node of the phase tree.
pub struct Phase {
    pub name: &'static str,
    pub short: String,
    pub long: &'static str,
    pub example: &'static str,
    /// The flags this phase reads (kubeadm's `InheritFlags` plus `LocalFlags`); the
    /// phase's command takes exactly these, and reading any other one panics.
    pub flags: &'static [Flag],
    pub run: Run,
    /// A command of its own under its group (`certs check-expiration`, `certs renew`), as
    /// kubeadm's `kubeadm certs` commands are: not run by the group's `all`, not part of
    /// a workflow that names the group, not a `--skip-phases` name.
    pub standalone: bool,
}

impl Phase {
    fn new(name: &'static str, short: impl Into<String>, flags: &'static [Flag], run: Run) -> Self {
        Phase {
            name,
            short: short.into(),
            long: "",
            example: "",
            flags,
            run,
            standalone: false,
        }
    }

    pub fn leaf(
        name: &'static str,
        short: impl Into<String>,
        flags: &'static [Flag],
        run: RunFn,
    ) -> Self {
        Self::new(name, short, flags, Run::Leaf(run))
    }

    pub fn batch(
        name: &'static str,
        short: impl Into<String>,
        flags: &'static [Flag],
        run: BatchFn,
    ) -> Self {
        Self::new(name, short, flags, Run::Batch(run))
    }

    pub fn group(name: &'static str, short: impl Into<String>, children: Vec<Phase>) -> Self {
        Self::new(
            name,
            short,
            &[],
            Run::Group(Group {
                children,
                all: None,
            }),
        )
    }

    /// Adds an `all` command to a group.
    pub fn with_all(mut self, short: &'static str) -> Self {
        match &mut self.run {
            Run::Group(group) => group.all = Some(short),
            _ => panic!("phase {}: only a group has an `all` command", self.name),
        }
        self
    }

    /// Makes this phase a command of its own (see [`Phase::standalone`]).
    pub fn standalone(mut self) -> Self {
        self.standalone = true;
        self
    }

    pub fn long(mut self, long: &'static str) -> Self {
        self.long = long;
        self
    }

    pub fn example(mut self, example: &'static str) -> Self {
        self.example = example;
        self
    }

    pub fn children(&self) -> &[Phase] {
        match &self.run {
            Run::Group(group) => &group.children,
            Run::Leaf(_) | Run::Batch(_) => &[],
        }
    }

    /// The children a run of this group (its `all`, a workflow) runs: all but the
    /// standalone ones.
    pub fn run_children(&self) -> impl Iterator<Item = &Phase> {
        self.children().iter().filter(|c| !c.standalone)
    }

    /// The flags of this phase and of every phase under it that a run of it runs.
    pub fn all_flags(&self) -> std::collections::BTreeSet<Flag> {
        let mut flags: std::collections::BTreeSet<Flag> = self.flags.iter().copied().collect();
        for child in self.run_children() {
            flags.extend(child.all_flags());
        }
        flags
    }
}

/// A workflow (`init`, `join`): phases of the tree, by path, run in order. A group
/// named here runs all its children.
pub struct Workflow {
    pub name: &'static str,
    pub short: &'static str,
    pub long: &'static str,
    pub phases: &'static [&'static str],
}
