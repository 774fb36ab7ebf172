//! Every command of the tool, one file per phase group or workflow, each declaring its
//! phases ([`Phase`]: name, help, example, flags, run function) next to the code that
//! runs them, as kubeadm's `cmd/phases/init/etcd.go` and cargo's `commands/<x>.rs` do.
//!
//! # Adding a phase
//!
//! 1. Write the library call in `phases/`.
//! 2. In a file here (a new one for a new group: `snapshot.rs`), write the run function
//!    `fn(&Context) -> anyhow::Result<()>` and a declaration next to it, e.g.
//!    `Phase::leaf("save", "Save a snapshot", &[Flag::Config, Flag::DryRun], save)`.
//!    It reads its flags back with `ctx.value(Flag::X)`, `ctx.required(..)`,
//!    `ctx.switch(..)` or `ctx.list(..)`; reading a flag it does not declare panics.
//!    A flag that does not exist yet is added to `src/flags.rs` (its id, help, parser).
//! 3. Register the declaration below, in [`phases`] (or in [`workflows`] for a
//!    workflow), under the group it belongs to.
//!
//! A command that lives under a group without being one of its steps (kubeadm's
//! `certs check-expiration` and `certs renew` under `phase certs`) is declared with
//! `.standalone()`: the group's `all`, the workflows and `--skip-phases` leave it out.
//!
//! The command, its help, the man page, the completions, the workflows' phase lists,
//! `--skip-phases` and the README's command list (checked by a test) follow from that.

pub mod certs;
pub mod etcd;
pub mod init;
pub mod join;
pub mod maintenance;
pub mod membership;
pub mod snapshot;
pub mod upgrade;

use crate::phase::{Phase, Workflow};

/// The tree under `kubeadm-etcd phase`, in the order the help lists it.
pub fn phases() -> Vec<Phase> {
    vec![
        certs::phase(),
        Phase::group(
            "etcd",
            "Local etcd: static Pod manifests and learner-based membership",
            vec![
                etcd::local(),
                etcd::external_bundle(),
                membership::join_learner(),
                membership::promote(),
                membership::status(),
                membership::check_health(),
                membership::remove_member(),
                snapshot::phase(),
                maintenance::defrag(),
                maintenance::alarm(),
                maintenance::move_leader(),
            ],
        ),
        Phase::group(
            "upgrade",
            "Upgrade-time changes to the stored kubeadm configuration",
            vec![
                upgrade::preflight(),
                upgrade::migrate_feature_gates(),
                upgrade::etcd(),
            ],
        ),
    ]
}

/// The workflows, in the order the help lists them.
pub fn workflows() -> Vec<Workflow> {
    vec![init::workflow(), join::workflow(), upgrade::workflow()]
}
