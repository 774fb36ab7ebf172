//! Errors of `phase upgrade migrate-feature-gates`. Every one of them is returned before
//! anything is written to the cluster or to the output file.

use std::path::PathBuf;

use crate::kube::KubeClientError;
use crate::versions::EtcdTagError;

/// Why the kubeadm-config migration failed. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("invalid target version {input:?}: {reason}; expected a Kubernetes version like v1.33.2 (the \"v\" is optional)")]
    InvalidTargetVersion { input: String, reason: String },

    #[error(
        "unsupported API version {requested:?} for the conversion: only kubeadm.k8s.io/v1beta4 \
         (or kubeadm.k8s.io/v1beta3 to keep a v1beta3 configuration) can be asked for"
    )]
    UnknownTargetApiVersion { requested: String },

    #[error("cannot convert {origin} from {from} to {to}: only v1beta3 to v1beta4 is supported")]
    UnsupportedConversion {
        origin: String,
        from: String,
        to: String,
    },

    #[error("failed to read {path:?}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "failed to parse {path:?} as YAML: expected a ConfigMap as printed by \
         \"kubectl get configmap kubeadm-config -n kube-system -o yaml\""
    )]
    ParseConfigMapFile {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },

    #[error(
        "{path:?} is not a ConfigMap (found apiVersion {api_version:?}, kind {kind:?}): expected the \
         output of \"kubectl get configmap kubeadm-config -n kube-system -o yaml\""
    )]
    NotAConfigMap {
        path: PathBuf,
        api_version: String,
        kind: String,
    },

    #[error(
        "ConfigMap {namespace}/{name} not found: is this a kubeadm cluster, and does the kubeconfig \
         point at it? (kubeadm uploads it in \"kubeadm init phase upload-config kubeadm\")"
    )]
    ConfigMapNotFound { namespace: String, name: String },

    #[error(
        "{origin} has no data key {key:?}: expected the ClusterConfiguration that kubeadm uploads \
         (\"kubeadm init phase upload-config kubeadm\" writes it)"
    )]
    KeyMissing { origin: String, key: String },

    #[error("{origin}: data key {key:?} must be a string holding the ClusterConfiguration YAML, found {found}")]
    KeyNotAString {
        origin: String,
        key: String,
        found: String,
    },

    #[error("{origin} is not valid YAML")]
    ParseClusterConfiguration {
        origin: String,
        #[source]
        source: serde_yaml::Error,
    },

    #[error("{origin} must be a YAML mapping (apiVersion, kind, ...), found {found}")]
    NotAMapping { origin: String, found: String },

    #[error(
        "{origin} has apiVersion {found:?}: expected kubeadm.k8s.io/v1beta3 or kubeadm.k8s.io/v1beta4 \
         (migrate an older configuration with \"kubeadm config migrate\" of a kubeadm that still reads it)"
    )]
    UnknownApiVersion { origin: String, found: String },

    #[error("{origin} has kind {found:?}: expected ClusterConfiguration")]
    WrongKind { origin: String, found: String },

    #[error("{origin}: {field} {problem}")]
    InvalidField {
        origin: String,
        field: String,
        problem: String,
    },

    #[error(
        "feature gate {gate:?} is set to false in {origin}, but it is GA and locked to true in \
         Kubernetes v1.{minor}, so kubeadm v1.{minor} rejects the configuration: remove the gate to \
         accept the new behaviour, or use --force to have it dropped"
    )]
    LockedGateDisabled {
        origin: String,
        gate: String,
        minor: u64,
    },

    #[error(
        "etcd learner mode was requested, but Kubernetes {target} has no EtcdLearnerMode feature gate \
         (it is alpha from v1.{introduced}): upgrade to v1.{introduced} or newer first"
    )]
    LearnerModeUnavailable { target: String, introduced: u64 },

    #[error(
        "etcd learner mode is not supported by this etcd version ({version}): the etcd of Kubernetes \
         {target} would be {tag} ({from}) and learner members need etcd {min} or newer; set \
         etcd.local.imageTag to etcd {min} or newer (or remove it to get kubeadm's default)",
        min = min_learner()
    )]
    EtcdTooOldForLearner {
        version: String,
        tag: String,
        from: String,
        target: String,
    },

    #[error("{origin}: etcd.local.imageTag cannot be checked for etcd learner mode support")]
    InvalidEtcdImageTag {
        origin: String,
        #[source]
        source: EtcdTagError,
    },

    #[error(transparent)]
    Client(#[from] KubeClientError),

    #[error(
        "forbidden to {verb} ConfigMap {namespace}/{name}: {message}; use a kubeconfig whose user may \
         get and update it, such as /etc/kubernetes/admin.conf on a control plane node"
    )]
    Forbidden {
        verb: &'static str,
        namespace: String,
        name: String,
        message: String,
    },

    #[error(
        "cannot reach the Kubernetes API server {server} to {verb} ConfigMap {namespace}/{name}: check \
         that it is running and that the kubeconfig points at it"
    )]
    Unreachable {
        server: String,
        verb: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<::kube::Error>,
    },

    #[error("failed to {verb} ConfigMap {namespace}/{name}")]
    Api {
        verb: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<::kube::Error>,
    },

    #[error(
        "ConfigMap {namespace}/{name} is immutable (immutable: true), so its ClusterConfiguration \
         cannot be updated in place; recreate it without immutable: true first"
    )]
    Immutable { namespace: String, name: String },

    #[error(
        "ConfigMap {namespace}/{name} kept changing while it was being updated: {attempts} attempts \
         ended in 409 Conflict and none was applied; retry when other writers are done"
    )]
    ConflictRetriesExhausted {
        namespace: String,
        name: String,
        attempts: usize,
    },

    #[error("failed to write the backup of ConfigMap {namespace}/{name} to {path:?}; the ConfigMap was not changed")]
    Backup {
        namespace: String,
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to write {path:?}")]
    WriteOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to serialize {what} as YAML")]
    Serialize {
        what: String,
        #[source]
        source: serde_yaml::Error,
    },
}

/// etcd's first release with learners, as messages write it ("3.4").
fn min_learner() -> String {
    let v = crate::membership::version::MIN_LEARNER_VERSION;
    format!("{}.{}", v.major, v.minor)
}
