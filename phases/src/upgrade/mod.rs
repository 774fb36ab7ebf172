//! `phase upgrade migrate-feature-gates`: rewrite the `featureGates` of the
//! ClusterConfiguration stored in `kube-system/kubeadm-config` for a target Kubernetes
//! version, before `kubeadm upgrade apply` runs.
//!
//! - **Input**: the live ConfigMap through a kubeconfig, or a file holding what
//!   `kubectl get configmap kubeadm-config -n kube-system -o yaml` prints.
//! - **Rules** (from kubeadm's feature gate history, `data/feature-gates.yaml`): a gate the
//!   target does not know is dropped; `true` for a GA gate (locked to true) is dropped;
//!   `false` for a locked gate is an error unless forced, then dropped with a warning; any
//!   other explicit choice is kept. `enable_learner_mode` sets `EtcdLearnerMode: true`
//!   where the target needs it set. When learner mode ends up on, the etcd the target
//!   would run must be 3.4 or newer.
//! - **Everything else is kept**: other fields (modelled or not) and their order, the
//!   apiVersion unless a v1beta3 → v1beta4 conversion is asked for, and the rest of the
//!   ConfigMap (labels, annotations, other keys).
//! - **Writes** (live): the ConfigMap read is saved to a backup file first, then replaced
//!   with the resourceVersion that was read; a 409 Conflict means another writer got
//!   there first, so the ConfigMap is read and migrated again, a bounded number of times.
//!   Never a blind overwrite.
//! - **Idempotent**: a second run finds nothing to change and writes nothing. A dry run
//!   returns the diff and writes nothing. Errors are returned before anything is written.
//!
//! Nothing here prints: [`MigrateReport`] carries what the CLI shows.

mod configmap;
mod error;
pub mod feature_gates;
mod migrate;

use std::path::PathBuf;

pub use configmap::{KEY, MAX_RETRIES, NAME, NAMESPACE};
pub use error::UpgradeError;

/// kubeadm's directory for backups made during upgrades.
pub use crate::manifest::DEFAULT_BACKUP_DIR;

/// What to migrate to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateOptions {
    /// The target Kubernetes version as the user typed it: `v1.33.2` or `1.33.2`.
    pub target_version: String,
    /// `Some("kubeadm.k8s.io/v1beta4")` (or `"v1beta4"`) converts a v1beta3
    /// ClusterConfiguration; `None` keeps the apiVersion.
    pub api_version: Option<String>,
    /// Set `EtcdLearnerMode: true` where the target needs it set (where it is alpha).
    pub enable_learner_mode: bool,
    /// Drop a gate set to `false` that the target locks to `true` instead of failing.
    pub force: bool,
    /// Compute and return the diff; write nothing.
    pub dry_run: bool,
    /// Where the live path saves the ConfigMap before replacing it.
    pub backup_dir: PathBuf,
}

impl MigrateOptions {
    /// Options for `target_version` with everything else at its default.
    pub fn new(target_version: impl Into<String>) -> Self {
        Self {
            target_version: target_version.into(),
            api_version: None,
            enable_learner_mode: false,
            force: false,
            dry_run: false,
            backup_dir: PathBuf::from(DEFAULT_BACKUP_DIR),
        }
    }
}

/// Where the ConfigMap comes from and goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `kube-system/kubeadm-config` through the kubeconfig at `kubeconfig`, or the one
    /// found the usual way, or `/etc/kubernetes/admin.conf`.
    Live { kubeconfig: Option<PathBuf> },
    /// The ConfigMap YAML in `from`; the result is written to `to`, or returned in
    /// [`MigrateReport::output`] when `to` is `None`.
    File { from: PathBuf, to: Option<PathBuf> },
}

/// What a migration did, for the CLI to print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Progress and changes, kubeadm style (`[upgrade/feature-gates] Removing feature gate ...`).
    pub lines: Vec<String>,
    /// Things the operator should know: behaviour changes, deprecations, fallbacks.
    pub warnings: Vec<String>,
    /// Unified diff of the ClusterConfiguration, when it changed (also on a dry run).
    pub diff: Option<String>,
    /// Where the result was written (`ConfigMap kube-system/kubeadm-config`, a path, or
    /// `stdout`); `None` when nothing was written.
    pub written: Option<String>,
    /// Whether the ClusterConfiguration needed changes.
    pub changed: bool,
    /// The migrated ConfigMap YAML for `Source::File { to: None, .. }`, to print on stdout.
    pub output: Option<String>,
}

/// Migrates the kubeadm-config ConfigMap of `source` as `opts` says.
pub async fn migrate_feature_gates(
    source: &Source,
    opts: &MigrateOptions,
) -> Result<MigrateReport, UpgradeError> {
    match source {
        Source::File { from, to } => configmap::migrate_file(from, to.as_deref(), opts),
        Source::Live { kubeconfig } => {
            migrate::parse_target_version(&opts.target_version)?;
            let (client, server) = crate::kube::client_and_server(kubeconfig.as_deref()).await?;
            configmap::migrate_live(client, &server, opts).await
        }
    }
}

/// The live migration with a ready client; `server` names the API server in errors.
pub async fn migrate_live(
    client: ::kube::Client,
    server: &str,
    opts: &MigrateOptions,
) -> Result<MigrateReport, UpgradeError> {
    configmap::migrate_live(client, server, opts).await
}

/// The pure core: migrates one ClusterConfiguration document. Returns the new YAML (the
/// input itself when nothing changes), the lines describing the changes, and warnings.
pub fn migrate_cluster_configuration(
    cluster_configuration_yaml: &str,
    opts: &MigrateOptions,
) -> Result<(String, Vec<String>, Vec<String>), UpgradeError> {
    let outcome =
        migrate::migrate_document("ClusterConfiguration", cluster_configuration_yaml, opts)?;
    Ok((outcome.yaml, outcome.lines, outcome.warnings))
}

#[cfg(test)]
mod tests;
