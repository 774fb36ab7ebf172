//! What the next etcd release would replay from this member's data directory, read before
//! the upgrade changes anything.
//!
//! A member replays, at start, the WAL entries after the last raft snapshot its WAL records
//! (`recoverSnapshot` and `openWALFromSnapshot` in `server/etcdserver/bootstrap.go`, etcd
//! v3.6.14 and v3.7.1). Two releases cannot replay everything an older one wrote:
//! - etcd **3.7** decodes every normal entry as an `InternalRaftRequest` and panics on the
//!   v2 requests etcd 3.5 proposed (every 3.5 member publishes its attributes and the
//!   cluster version through v2 PUTs at start): `apply.Apply` lost its v2 fallback in etcd
//!   PR #21263 (v3.7.0). A cluster that left 3.5 fewer than `--snapshot-count` entries ago
//!   still has them after the last snapshot. etcd ships no check for this.
//! - etcd **3.6** replays only the two v2 requests above and panics on any other
//!   (`v2ToV3Request` in `server/etcdserver/apply_v2.go`, v3.6.14: "detected disallowed v2
//!   WAL"), and refuses custom content in the v2 store of the last snapshot: etcdutl
//!   v3.5.33's `check v2store` (`etcdutl/etcdutl/check_command.go`) checks both, with
//!   `membership.IsMetaStoreOnly` for the store. Only clusters that ran with `--enable-v2`
//!   have such content.
//!
//! Written by hand because no Rust crate reads etcd's WAL or snap files. The formats are
//! etcd's: frames of a little-endian length (the top byte's low 3 bits the padding) and a
//! `walpb.Record` (`server/storage/wal/decoder.go`, `walpb/record.proto`), entries and hard
//! states from raftpb, snap files as `snappb.Snapshot` around a `raftpb.Snapshot` whose
//! data is the v2 store as JSON. The messages below declare only the fields read, with
//! prost. CRCs are not checked (etcd checks them when it starts); the scan reads a live
//! member's files without a lock, as etcdutl's checks do, and a torn last record (the
//! member writing as we read) ends it.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use prost::Message;

/// `walpb.Record`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Record {
    #[prost(int64, optional, tag = "1")]
    pub(crate) r#type: Option<i64>,
    #[prost(uint32, optional, tag = "2")]
    pub(crate) crc: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub(crate) data: Option<Vec<u8>>,
}

/// Record types, `server/storage/wal/wal.go`.
pub(crate) const ENTRY_TYPE: i64 = 2;
pub(crate) const STATE_TYPE: i64 = 3;
pub(crate) const SNAPSHOT_TYPE: i64 = 5;

/// `raftpb.Entry` (proto2; `Type` 0 is `EntryNormal`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Entry {
    #[prost(int32, optional, tag = "1")]
    pub(crate) r#type: Option<i32>,
    #[prost(uint64, optional, tag = "2")]
    pub(crate) term: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub(crate) index: Option<u64>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub(crate) data: Option<Vec<u8>>,
}

/// `raftpb.HardState`: only the commit index.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HardState {
    #[prost(uint64, optional, tag = "3")]
    pub(crate) commit: Option<u64>,
}

/// `walpb.Snapshot`: where a raft snapshot was taken.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WalSnapshot {
    #[prost(uint64, optional, tag = "1")]
    pub(crate) index: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub(crate) term: Option<u64>,
}

/// `InternalRaftRequest`, as far as telling a v2 request apart: field 2 is `v2` (a wrapped
/// `Request`), and in a bare v2 `Request` (what etcd 3.5 proposes) field 2 is its method.
/// No v3 request uses field 2.
#[derive(Clone, PartialEq, prost::Message)]
struct V2Probe {
    #[prost(bytes = "vec", optional, tag = "2")]
    field_2: Option<Vec<u8>>,
}

/// etcd's v2 `Request`: method and path.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct V2RequestMessage {
    #[prost(uint64, optional, tag = "1")]
    pub(crate) id: Option<u64>,
    #[prost(string, optional, tag = "2")]
    pub(crate) method: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub(crate) path: Option<String>,
}

/// `snappb.Snapshot` and `raftpb.Snapshot`: the v2 store's JSON.
#[derive(Clone, PartialEq, prost::Message)]
struct SnapFile {
    #[prost(bytes = "vec", optional, tag = "2")]
    data: Option<Vec<u8>>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct RaftSnapshot {
    #[prost(bytes = "vec", optional, tag = "1")]
    data: Option<Vec<u8>>,
}

/// A v2 request in the WAL, after the last snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct V2Request {
    pub index: u64,
    pub method: String,
    pub path: String,
}

impl V2Request {
    /// One of the two v2 requests etcd 3.6 still replays: a PUT of a member's attributes
    /// (`/0/members/<hex id>/attributes`) or of the cluster version (`/0/version`).
    /// Stricter than etcd's unanchored regular expression: 3.5 wrote exactly these paths.
    pub fn replayable_by_3_6(&self) -> bool {
        let member_attributes = self
            .path
            .strip_prefix("/0/members/")
            .and_then(|rest| rest.strip_suffix("/attributes"))
            .is_some_and(|id| {
                (1..=16).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
            });
        self.method == "PUT" && (member_attributes || self.path == "/0/version")
    }
}

impl std::fmt::Display for V2Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "index {}: {} {}", self.index, self.method, self.path)
    }
}

/// What a member would replay from its WAL at its next start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalScan {
    pub wal_dir: PathBuf,
    /// The last raft snapshot the WAL records with a committed index: replay starts after
    /// it. 0 when the WAL records none (replay from the start).
    pub snapshot_index: u64,
    /// The snapshot's term, naming its snap file.
    pub snapshot_term: u64,
    /// The last entry's index; 0 when there are none.
    pub last_index: u64,
    /// The v2 requests among the entries after the snapshot, by index.
    pub v2_requests: Vec<V2Request>,
    /// Normal entries after the snapshot that are no protobuf message at all (index).
    pub undecodable: Vec<u64>,
}

/// Why a data directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no WAL file (*.wal): not an etcd member's WAL directory (--data-dir/member/wal, or --wal-dir)", dir.display())]
    NoWal { dir: PathBuf },
    #[error("{} at byte {offset}: {reason}", path.display())]
    Format {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

/// One entry after the snapshot: its index and, for a v2 request, what it is.
#[derive(Debug, Clone)]
enum Kind {
    V3,
    V2(V2Request),
    Undecodable,
}

/// Reads every record of the WAL files in `wal_dir`, in order, as etcd's `ReadAll` would
/// from the last committed snapshot.
pub fn scan(wal_dir: &Path) -> Result<WalScan, WalError> {
    let read_err = |path: &Path, source| WalError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(wal_dir)
        .map_err(|e| read_err(wal_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    // etcd names them `<seq:016x>-<index:016x>.wal`: the name order is the write order.
    files.sort();
    if files.is_empty() {
        return Err(WalError::NoWal {
            dir: wal_dir.to_path_buf(),
        });
    }

    // `ValidSnapshotEntries`: a snapshot counts once a hard state commits its index, and
    // replay starts after the last one that counts. Commits only grow, so once one counts
    // the entries up to it are never needed again: dropped at once, which keeps memory to
    // the entries after it, however many WAL files there are.
    let mut base: (u64, u64) = (0, 0);
    let mut pending: Vec<(u64, u64)> = Vec::new();
    // Every entry by index; a later entry at an index drops the ones after it, as a new
    // leader's entries replace an old one's (`ReadAll` truncates the same way).
    let mut entries: BTreeMap<u64, Kind> = BTreeMap::new();
    for path in &files {
        let file = std::fs::File::open(path).map_err(|e| read_err(path, e))?;
        let mut frames = Frames {
            reader: BufReader::with_capacity(1 << 20, file),
            offset: 0,
        };
        while let Some(record) = frames.next(path)? {
            let data = record.data.unwrap_or_default();
            match record.r#type.unwrap_or_default() {
                ENTRY_TYPE => {
                    let entry = Entry::decode(data.as_slice()).map_err(|e| WalError::Format {
                        path: path.clone(),
                        offset: frames.offset,
                        reason: format!("an entry record is no raftpb.Entry: {e}"),
                    })?;
                    let index = entry.index.unwrap_or_default();
                    entries.split_off(&index);
                    entries.insert(index, classify(&entry, index));
                }
                STATE_TYPE => {
                    if let Ok(state) = HardState::decode(data.as_slice()) {
                        let commit = state.commit.unwrap_or_default();
                        if let Some(at) = pending.iter().rposition(|(i, _)| *i <= commit) {
                            if pending[at].0 >= base.0 {
                                base = pending[at];
                                entries = entries.split_off(&(base.0 + 1));
                            }
                            pending.drain(..=at);
                        }
                    }
                }
                SNAPSHOT_TYPE => {
                    if let Ok(s) = WalSnapshot::decode(data.as_slice()) {
                        pending.push((s.index.unwrap_or_default(), s.term.unwrap_or_default()));
                    }
                }
                _ => {}
            }
        }
    }
    let (snapshot_index, snapshot_term) = base;
    let after = entries.split_off(&(snapshot_index + 1));
    let last_index = after.keys().next_back().copied().unwrap_or(snapshot_index);
    let mut v2_requests = Vec::new();
    let mut undecodable = Vec::new();
    for (index, kind) in after {
        match kind {
            Kind::V3 => {}
            Kind::V2(r) => v2_requests.push(r),
            Kind::Undecodable => undecodable.push(index),
        }
    }
    Ok(WalScan {
        wal_dir: wal_dir.to_path_buf(),
        snapshot_index,
        snapshot_term,
        last_index,
        v2_requests,
        undecodable,
    })
}

fn classify(entry: &Entry, index: u64) -> Kind {
    let data = match &entry.data {
        Some(d) if entry.r#type.unwrap_or_default() == 0 && !d.is_empty() => d,
        _ => return Kind::V3,
    };
    let Ok(probe) = V2Probe::decode(data.as_slice()) else {
        return Kind::Undecodable;
    };
    let Some(field_2) = probe.field_2 else {
        return Kind::V3;
    };
    // Wrapped when field 2 is itself a Request with a method; a bare Request's method
    // (upper-case letters) never parses as one.
    let request = match V2RequestMessage::decode(field_2.as_slice()) {
        Ok(inner) if inner.method.as_deref().is_some_and(|m| !m.is_empty()) => inner,
        _ => match V2RequestMessage::decode(data.as_slice()) {
            Ok(bare) => bare,
            Err(_) => return Kind::Undecodable,
        },
    };
    Kind::V2(V2Request {
        index,
        method: request.method.unwrap_or_default(),
        path: request.path.unwrap_or_default(),
    })
}

/// The frames of one WAL file.
struct Frames {
    reader: BufReader<std::fs::File>,
    offset: u64,
}

impl Frames {
    /// The next record; `None` at the end of the file, at its preallocated zeroes, or at a
    /// torn last record.
    fn next(&mut self, path: &Path) -> Result<Option<Record>, WalError> {
        let mut len = [0u8; 8];
        if !read_full(&mut self.reader, &mut len).map_err(|e| WalError::Read {
            path: path.to_path_buf(),
            source: e,
        })? {
            return Ok(None);
        }
        let field = i64::from_le_bytes(len);
        if field == 0 {
            return Ok(None);
        }
        let record_bytes = (field as u64) & !(0xffu64 << 56);
        let pad_bytes = if field < 0 {
            ((field as u64) >> 56) & 0x7
        } else {
            0
        };
        // etcd's own bound (decoder.go): a frame is never larger than its file.
        const MAX_FRAME: u64 = 1 << 30;
        if record_bytes > MAX_FRAME {
            return Err(WalError::Format {
                path: path.to_path_buf(),
                offset: self.offset,
                reason: format!("a frame of {record_bytes} bytes"),
            });
        }
        let mut frame = vec![0u8; (record_bytes + pad_bytes) as usize];
        if !read_full(&mut self.reader, &mut frame).map_err(|e| WalError::Read {
            path: path.to_path_buf(),
            source: e,
        })? {
            return Ok(None);
        }
        self.offset += 8 + record_bytes + pad_bytes;
        match Record::decode(&frame[..record_bytes as usize]) {
            Ok(record) => Ok(Some(record)),
            // A record that does not parse is the torn tail of a write in progress.
            Err(_) => Ok(None),
        }
    }
}

/// Fills `buf`; false when the file ends first.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => return Ok(false),
            n => filled += n,
        }
    }
    Ok(true)
}

/// Custom content in the v2 store of the snapshot the scan starts from: the first key
/// etcd 3.6 refuses (under `/1`, v2 keys; under `/2`, v2 auth users and roles), or
/// `None`. No snap file for that snapshot: `None` (nothing to load).
/// The rule is `membership.IsMetaStoreOnly` (etcd v3.5.33).
pub fn v2store_custom_content(snap_dir: &Path, scan: &WalScan) -> Result<Option<String>, WalError> {
    if scan.snapshot_index == 0 {
        return Ok(None);
    }
    let path = snap_dir.join(format!(
        "{:016x}-{:016x}.snap",
        scan.snapshot_term, scan.snapshot_index
    ));
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WalError::Read { path, source: e }),
    };
    let format = |reason: String| WalError::Format {
        path: path.clone(),
        offset: 0,
        reason,
    };
    let snap = SnapFile::decode(bytes.as_slice())
        .map_err(|e| format(format!("not a snappb.Snapshot: {e}")))?;
    let raft = RaftSnapshot::decode(snap.data.unwrap_or_default().as_slice())
        .map_err(|e| format(format!("not a raftpb.Snapshot: {e}")))?;
    let data = raft.data.unwrap_or_default();
    if data.is_empty() {
        return Ok(None);
    }
    let store: serde_json::Value = serde_json::from_slice(&data)
        .map_err(|e| format(format!("its v2 store is not JSON: {e}")))?;
    Ok(custom_content_key(&store))
}

/// `IsMetaStoreOnly`: under the root, `/0` (membership) may hold anything, `/2` (v2 auth)
/// only empty children (`enabled`, and `roles`/`users` once emptied), any other key no
/// children at all. The answer names the first child that breaks the rule (`/1/registry`,
/// `/2/users`), which says what to move or delete; its top-level key when it has no path.
fn custom_content_key(store: &serde_json::Value) -> Option<String> {
    let children = |node: &serde_json::Value| -> Vec<serde_json::Value> {
        node.get("Children")
            .and_then(|c| c.as_object())
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    };
    let path = |node: &serde_json::Value| {
        node.get("Path")
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let root = store.get("Root")?;
    for node in children(root) {
        let key = path(&node);
        let offending = match key.as_str() {
            "/0" => None,
            "/2" => children(&node)
                .into_iter()
                .find(|child| !children(child).is_empty()),
            _ => children(&node).into_iter().next(),
        };
        if let Some(child) = offending {
            let child_path = path(&child);
            return Some(if child_path.is_empty() {
                key
            } else {
                child_path
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL written as etcd frames it: 8-byte length (padding in the top byte), record,
    /// padding to 8 bytes.
    fn frame(record: &Record) -> Vec<u8> {
        let bytes = record.encode_to_vec();
        let pad = (8 - bytes.len() % 8) % 8;
        let mut len = bytes.len() as u64;
        if pad > 0 {
            len |= (0x80 | pad as u64) << 56;
        }
        let mut out = len.to_le_bytes().to_vec();
        out.extend(&bytes);
        out.extend(std::iter::repeat_n(0, pad));
        out
    }

    fn record(r#type: i64, data: Vec<u8>) -> Record {
        Record {
            r#type: Some(r#type),
            crc: Some(0),
            data: Some(data),
        }
    }

    fn entry(index: u64, data: Vec<u8>) -> Vec<u8> {
        frame(&record(
            ENTRY_TYPE,
            Entry {
                r#type: Some(0),
                term: Some(2),
                index: Some(index),
                data: Some(data),
            }
            .encode_to_vec(),
        ))
    }

    fn bare_v2(method: &str, path: &str) -> Vec<u8> {
        V2RequestMessage {
            id: Some(7),
            method: Some(method.into()),
            path: Some(path.into()),
        }
        .encode_to_vec()
    }

    /// An `InternalRaftRequest` with a v3 `put` (field 4) and a header (field 100).
    fn v3_put() -> Vec<u8> {
        let mut out = vec![0xa2, 0x06, 0x02, 0x08, 0x01]; // header {ID: 1}
        out.extend([0x22, 0x05, 0x0a, 0x01, b'k', 0x12, 0x00]); // put {key: "k"}
        out
    }

    fn snapshot(index: u64) -> Vec<u8> {
        frame(&record(
            SNAPSHOT_TYPE,
            WalSnapshot {
                index: Some(index),
                term: Some(2),
            }
            .encode_to_vec(),
        ))
    }

    fn state(commit: u64) -> Vec<u8> {
        frame(&record(
            STATE_TYPE,
            HardState {
                commit: Some(commit),
            }
            .encode_to_vec(),
        ))
    }

    fn wal(files: &[Vec<u8>]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (i, bytes) in files.iter().enumerate() {
            let mut bytes = bytes.clone();
            // Preallocated space after the last record, as etcd leaves it.
            bytes.extend(std::iter::repeat_n(0, 4096));
            std::fs::write(dir.path().join(format!("{i:016x}-{:016x}.wal", 0)), bytes).unwrap();
        }
        dir
    }

    #[test]
    fn finds_v2_requests_after_the_last_committed_snapshot() {
        let attributes = "/0/members/8e9e05c52164694d/attributes";
        let first = [
            snapshot(0),
            entry(1, bare_v2("PUT", attributes)),
            entry(2, v3_put()),
            state(2),
        ]
        .concat();
        let second = [
            snapshot(2),
            state(3),
            entry(3, bare_v2("PUT", "/0/version")),
            // A wrapped v2 request (InternalRaftRequest.v2).
            entry(4, {
                let inner = bare_v2("PUT", attributes);
                let mut out = vec![0x12, inner.len() as u8];
                out.extend(inner);
                out
            }),
            entry(5, v3_put()),
            // Not committed: replay does not start after it.
            snapshot(5),
            state(4),
        ]
        .concat();
        let dir = wal(&[first, second]);
        let scan = scan(dir.path()).unwrap();
        assert_eq!(scan.snapshot_index, 2);
        assert_eq!(scan.last_index, 5);
        assert_eq!(
            scan.v2_requests,
            vec![
                V2Request {
                    index: 3,
                    method: "PUT".into(),
                    path: "/0/version".into()
                },
                V2Request {
                    index: 4,
                    method: "PUT".into(),
                    path: attributes.into()
                },
            ]
        );
        assert!(scan.v2_requests.iter().all(V2Request::replayable_by_3_6));
        assert!(scan.undecodable.is_empty());
    }

    #[test]
    fn a_later_entry_replaces_the_ones_after_its_index() {
        let dir = wal(&[[
            entry(1, v3_put()),
            entry(2, bare_v2("PUT", "/0/version")),
            entry(3, bare_v2("PUT", "/1/foo")),
            // A new leader's entry 2 drops the old 2 and 3.
            entry(2, v3_put()),
        ]
        .concat()]);
        let scan = scan(dir.path()).unwrap();
        assert_eq!(scan.snapshot_index, 0);
        assert_eq!(scan.last_index, 2);
        assert!(scan.v2_requests.is_empty(), "{:?}", scan.v2_requests);
    }

    #[test]
    fn other_v2_requests_are_not_replayable_by_3_6() {
        let dir = wal(&[[
            entry(1, bare_v2("PUT", "/1/foo")),
            entry(2, bare_v2("SYNC", "")),
            entry(3, bare_v2("PUT", "/0/members/xyz/attributes")),
            entry(4, vec![0xff, 0xff]),
        ]
        .concat()]);
        let scan = scan(dir.path()).unwrap();
        assert_eq!(scan.v2_requests.len(), 3);
        assert!(!scan.v2_requests.iter().any(V2Request::replayable_by_3_6));
        assert_eq!(scan.undecodable, vec![4]);
    }

    #[test]
    fn a_torn_tail_ends_the_scan_and_an_empty_dir_is_refused() {
        let mut bytes = entry(1, bare_v2("PUT", "/0/version"));
        let torn = entry(2, v3_put());
        bytes.extend(&torn[..torn.len() - 3]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("0000000000000000-0000000000000000.wal"),
            bytes,
        )
        .unwrap();
        let scan = scan(dir.path()).unwrap();
        assert_eq!(scan.last_index, 1);

        let empty = tempfile::tempdir().unwrap();
        let err = super::scan(empty.path()).unwrap_err().to_string();
        assert!(err.contains("holds no WAL file"), "{err}");
    }

    #[test]
    fn custom_v2_store_content_is_named() {
        let store = |root: serde_json::Value| serde_json::json!({ "Root": root });
        let meta_only = store(serde_json::json!({"Path": "/", "Children": {
            "0": {"Path": "/0", "Children": {"members": {"Path": "/0/members", "Children": {"a": {}}}}},
            "1": {"Path": "/1", "Children": {}},
            "2": {"Path": "/2", "Children": {
                "enabled": {"Path": "/2/enabled", "Children": null},
                "users": {"Path": "/2/users", "Children": {}}}}
        }}));
        assert_eq!(custom_content_key(&meta_only), None);
        let keys = store(serde_json::json!({"Path": "/", "Children": {
            "1": {"Path": "/1", "Children": {"foo": {"Path": "/1/foo", "Value": "bar"}}}
        }}));
        assert_eq!(custom_content_key(&keys).as_deref(), Some("/1/foo"));
        let users = store(serde_json::json!({"Path": "/", "Children": {
            "2": {"Path": "/2", "Children": {
                "users": {"Path": "/2/users", "Children": {"root": {"Path": "/2/users/root"}}}}}
        }}));
        assert_eq!(custom_content_key(&users).as_deref(), Some("/2/users"));
        let pathless = store(serde_json::json!({"Path": "/", "Children": {
            "1": {"Path": "/1", "Children": {"foo": {"Value": "bar"}}}
        }}));
        assert_eq!(custom_content_key(&pathless).as_deref(), Some("/1"));
    }
}
