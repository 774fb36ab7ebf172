use std::path::PathBuf;

/// A place in a configuration file: `line 7, column 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Renders an optional location as ` (line 7, column 3)`.
pub(crate) fn at(location: &Option<Location>) -> String {
    location.map(|l| format!(" ({l})")).unwrap_or_default()
}

/// What is wrong with a kubeadm configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read kubeadm configuration {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{source_name}: document {document} is not valid YAML{}: {message}",
        at(location)
    )]
    Yaml {
        source_name: String,
        document: usize,
        location: Option<Location>,
        message: String,
    },

    #[error("{source_name}: document {document}{}: missing {missing}; every kubeadm document needs apiVersion and kind", at(location))]
    MissingTypeMeta {
        source_name: String,
        document: usize,
        location: Option<Location>,
        missing: &'static str,
    },

    #[error("{source_name}: document {document} ({kind}): unsupported apiVersion {api_version:?}; expected kubeadm.k8s.io/v1beta3 or kubeadm.k8s.io/v1beta4{hint}")]
    UnknownApiVersion {
        source_name: String,
        document: usize,
        kind: String,
        api_version: String,
        hint: &'static str,
    },

    #[error("{source_name}: document {document}: unknown kind {kind:?} in {api_version}; expected InitConfiguration, JoinConfiguration or ClusterConfiguration")]
    UnknownKind {
        source_name: String,
        document: usize,
        kind: String,
        api_version: String,
    },

    #[error(transparent)]
    Field(Box<FieldError>),

    #[error("{source_name}: more than one {kind} document; a configuration holds at most one of each kind")]
    Duplicate { source_name: String, kind: String },

    #[error("{source_name}: both an InitConfiguration and a JoinConfiguration are given; a node either starts a cluster or joins one, so keep only one of them")]
    InitAndJoin { source_name: String },

    #[error("{source_name}: ClusterConfiguration: etcd.local and etcd.external are both set; they are mutually exclusive: keep etcd.local for a stacked etcd that kubeadm-etcd runs, or etcd.external for a cluster you run yourself")]
    LocalAndExternal { source_name: String },

    #[error("{source_name}: no node name: set nodeRegistration.name in the InitConfiguration or JoinConfiguration, or pass --node-name")]
    MissingNodeName { source_name: String },

    #[error("{source_name}: no advertise address: set localAPIEndpoint.advertiseAddress (InitConfiguration) or controlPlane.localAPIEndpoint.advertiseAddress (JoinConfiguration), or pass --advertise-address")]
    MissingAdvertiseAddress { source_name: String },

    #[error("{source_name}: this phase manages a local (stacked) etcd, but the ClusterConfiguration sets etcd.external; kubeadm-etcd does not manage the members of an external etcd cluster")]
    ExternalEtcd { source_name: String },
}

/// A field with a wrong value; boxed in [`ConfigError::Field`] to keep errors small.
#[derive(Debug, thiserror::Error)]
#[error(
    "{source_name}: {kind} ({api_version}), field {field}{}: {message}",
    at(location)
)]
pub struct FieldError {
    pub source_name: String,
    pub kind: String,
    pub api_version: String,
    pub field: String,
    pub location: Option<Location>,
    pub message: String,
}
