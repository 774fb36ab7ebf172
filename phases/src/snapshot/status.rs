//! `snapshot status`: is a snapshot file whole, and what does it hold.

use std::path::{Path, PathBuf};

use super::tools::{self, Tool, ToolLookup};
use super::verify::{verify_file, Verified};
use super::SnapshotError;

/// A snapshot file's status: its digest checked by this tool, its content read by etcd's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    pub path: PathBuf,
    #[serde(flatten)]
    pub verified: Verified,
    /// The newest revision in the snapshot.
    pub revision: i64,
    /// The key count as etcd's tool reports it (`totalKey`): `etcdutl` 3.6+ counts the
    /// keys alive at that revision; 3.4's etcdctl and 3.5's etcdutl count every entry of
    /// every bucket (revisions, members, meta), so the same file reads a few more there.
    pub total_keys: u64,
    /// etcd's hash of the database's content (crc32, as `etcdutl snapshot status` prints
    /// it; not the sha256).
    pub content_hash: u32,
    /// The storage version (etcd 3.6+ snapshots); empty before.
    pub storage_version: String,
    /// The tool that read it.
    pub read_with: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct EtcdStatus {
    hash: u32,
    revision: i64,
    total_key: u64,
    #[serde(default)]
    version: String,
}

/// Checks the digest first (a damaged file is refused before anything reads it), then
/// asks `etcdutl snapshot status -w json` (or etcd 3.4's etcdctl) for the rest.
pub fn status(path: &Path, lookup: &ToolLookup) -> Result<SnapshotStatus, SnapshotError> {
    let verified = verify_file(path)?;
    let tool = tools::status_tool(lookup)?;
    status_with(path, verified, &tool)
}

pub(crate) fn status_with(
    path: &Path,
    verified: Verified,
    tool: &Tool,
) -> Result<SnapshotStatus, SnapshotError> {
    let args = vec![
        "snapshot".to_string(),
        "status".to_string(),
        path.display().to_string(),
        "-w".to_string(),
        "json".to_string(),
    ];
    let out = tools::run(tool, &args)?;
    // etcdutl 3.5+ may print a deprecation line before the JSON on some releases.
    let json = out
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or(out.as_str());
    let s: EtcdStatus = serde_json::from_str(json).map_err(|e| SnapshotError::ToolOutput {
        tool: tool.path.clone(),
        reason: e.to_string(),
        output: out.clone(),
    })?;
    Ok(SnapshotStatus {
        path: path.to_path_buf(),
        verified,
        revision: s.revision,
        total_keys: s.total_key,
        content_hash: s.hash,
        storage_version: s.version,
        read_with: format!("{} {}", tool.kind.name(), tool.version),
    })
}
