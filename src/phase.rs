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

    /// The flags of this phase and of every phase under it.
    pub fn all_flags(&self) -> std::collections::BTreeSet<Flag> {
        let mut flags: std::collections::BTreeSet<Flag> = self.flags.iter().copied().collect();
        for child in self.children() {
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
