use std::path::PathBuf;

use crate::manifest::ManifestError;
use crate::membership::MembershipError;

/// Everything that can stop a snapshot save, status or restore.
///
/// Messages name the file, the member or the tool, and say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Membership(#[from] MembershipError),

    #[error(transparent)]
    Manifest(#[from] Box<ManifestError>),

    #[error("no healthy voting member to take the snapshot from: {details}")]
    NoHealthyVoter { details: String },

    #[error("failed to connect to {endpoint} for the snapshot: {message}")]
    Connect { endpoint: String, message: String },

    #[error("the snapshot stream from {endpoint} failed after {received} bytes: {message}; no snapshot was written")]
    Stream {
        endpoint: String,
        received: u64,
        message: String,
    },

    #[error("the snapshot stream from {endpoint} stalled: nothing arrived for {seconds} s after {received} bytes; no snapshot was written")]
    Stalled {
        endpoint: String,
        received: u64,
        seconds: u64,
    },

    /// The bytes received do not hash to the digest etcd appended: the transfer was damaged.
    #[error("the snapshot from {endpoint} does not match the sha256 etcd sent with it (expected {expected}, computed {actual}); no snapshot was written, take it again")]
    StreamHashMismatch {
        endpoint: String,
        expected: String,
        actual: String,
    },

    #[error("the snapshot from {endpoint} is {received} bytes of database, but etcd announced {announced}; no snapshot was written")]
    StreamSize {
        endpoint: String,
        announced: u64,
        received: u64,
    },

    #[error("failed to write the snapshot to {}: {source}; no partial file was left and earlier snapshots are untouched", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{} is not a snapshot with etcd's integrity hash: {reason}", path.display())]
    NoHash { path: PathBuf, reason: String },

    /// A file whose content does not hash to the digest at its end: truncated or altered.
    #[error("{} is damaged: its sha256 does not match the one etcd appended (expected {expected}, computed {actual}); it was truncated or altered, use another snapshot", path.display())]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("{what} is needed for this and was not found: {looked}; {hint}")]
    ToolMissing {
        what: String,
        looked: String,
        hint: String,
    },

    #[error("{} is {found}, but {wanted} is needed: {hint}", path.display())]
    ToolVersion {
        path: PathBuf,
        found: String,
        wanted: String,
        hint: String,
    },

    #[error("{} {args} failed ({status}): {stderr}", tool.display())]
    ToolFailed {
        tool: PathBuf,
        args: String,
        status: String,
        stderr: String,
    },

    #[error("{} snapshot status printed what this tool cannot read ({reason}): {output}", tool.display())]
    ToolOutput {
        tool: PathBuf,
        reason: String,
        output: String,
    },

    #[error("the data directory {} is not empty; a restore never writes over existing data: move it away (it may be the only copy of something) and run again", path.display())]
    DataDirNotEmpty { path: PathBuf },

    #[error("etcd {version} cannot be restored by this tool: {reason}")]
    UnsupportedVersion { version: String, reason: String },

    #[error("invalid snapshot option: {0}")]
    Invalid(String),
}

impl From<ManifestError> for SnapshotError {
    fn from(e: ManifestError) -> Self {
        Self::Manifest(Box::new(e))
    }
}

impl From<crate::config::ConfigError> for SnapshotError {
    fn from(e: crate::config::ConfigError) -> Self {
        Self::Manifest(Box::new(ManifestError::from(e)))
    }
}
