use crate::membership::version::MIN_LEARNER_VERSION;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::pki::PkiError;
use crate::versions::EtcdTagError;

/// Why a manifest (or a host bundle) could not be made or written. Nothing is written
/// when one of these comes back from rendering.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    // Boxed: configuration errors carry file, field and location, and would make every
    // Result of this module as large as they are.
    #[error(transparent)]
    Config(Box<ConfigError>),

    #[error("{source_name}: etcd.local.imageTag: {source}")]
    ImageTag {
        source_name: String,
        #[source]
        source: EtcdTagError,
    },

    #[error("{source_name}: {field}: {reason}")]
    Unsupported {
        source_name: String,
        field: String,
        reason: String,
    },

    #[error(
        "etcd learner mode is not supported by etcd {version} ({}.{} or newer is needed)",
        MIN_LEARNER_VERSION.major,
        MIN_LEARNER_VERSION.minor
    )]
    UnsupportedEtcd { version: semver::Version },

    #[error("{source_name}: etcd.local.extraEnvs[{index}] ({name}): invalid valueFrom: {reason}")]
    ExtraEnv {
        source_name: String,
        index: usize,
        name: String,
        reason: String,
    },

    #[error("the initial cluster of a joining member is empty; it must list every member, this one ({node_name}) included")]
    EmptyInitialCluster { node_name: String },

    #[error("the initial cluster [{members}] does not list this member ({node_name}); etcd would refuse to start with \"couldn't find local name in the initial cluster configuration\"")]
    NotInInitialCluster { node_name: String, members: String },

    #[error("invalid host {input:?}: {reason}")]
    InvalidHost { input: String, reason: String },

    #[error("failed to serialize the etcd Pod: {0}")]
    Serialize(String),

    #[error("failed to read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Pki(Box<PkiError>),
}

impl From<ConfigError> for ManifestError {
    fn from(e: ConfigError) -> Self {
        Self::Config(Box::new(e))
    }
}

impl From<PkiError> for ManifestError {
    fn from(e: PkiError) -> Self {
        Self::Pki(Box::new(e))
    }
}
