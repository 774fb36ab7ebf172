//! Whose an etcd data directory is.
//!
//! A member that joins with a data directory left over from another cluster (or from a
//! member that was removed) fails with "cluster ID mismatch" or "the member has been
//! permanently removed" at best. So before joining we read the identity etcd wrote at the
//! head of every WAL file, the `Metadata { NodeID, ClusterID }` record, and compare it with
//! the member we are about to be.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{MemberId, MembershipError, Result};

/// What is in a data directory, as far as etcd is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDirState {
    /// No `member/` directory: etcd will start from scratch. Other files (a `lost+found`
    /// of a mount point) are not etcd's business.
    Empty,
    /// A member's data: the IDs from its write-ahead log.
    Member {
        member_id: MemberId,
        cluster_id: u64,
    },
    /// A `member/` directory whose identity could not be read.
    Unrecognised { reason: String },
}

/// Reads the identity of the data directory at `dir`. A missing directory is empty.
pub fn inspect(dir: &Path) -> Result<DataDirState> {
    let member = dir.join("member");
    match fs::symlink_metadata(&member) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DataDirState::Empty),
        Err(source) => return Err(read_error(dir, source)),
        Ok(_) => {}
    }
    let wal_dir = member.join("wal");
    let mut wals: Vec<PathBuf> = match fs::read_dir(&wal_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(read_error(dir, source)),
    };
    // WAL names are `<seq>-<index>.wal` in fixed-width hex, so the first sorts first;
    // every WAL file, not only the first ever written, starts with the metadata record.
    wals.sort();
    let Some(first) = wals.first() else {
        return Ok(DataDirState::Unrecognised {
            reason: "it has a member/ directory but no write-ahead log".to_string(),
        });
    };
    let mut head = Vec::new();
    fs::File::open(first)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .map_err(|source| read_error(dir, source))?;
    Ok(match read_wal_metadata(&head) {
        Some((member_id, cluster_id)) => DataDirState::Member {
            member_id: MemberId(member_id),
            cluster_id,
        },
        None => DataDirState::Unrecognised {
            reason: format!(
                "its write-ahead log {} has no readable metadata record",
                first.display()
            ),
        },
    })
}

/// Deletes everything inside `dir`, keeping `dir` itself (it may be a mount point).
pub fn wipe(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(MembershipError::DataDir {
                action: "wipe",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries {
        let result = entry.and_then(|e| {
            let path = e.path();
            if e.file_type()?.is_dir() {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            }
        });
        result.map_err(|source| MembershipError::DataDir {
            action: "wipe",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

fn read_error(dir: &Path, source: io::Error) -> MembershipError {
    MembershipError::DataDir {
        action: "read",
        path: dir.to_path_buf(),
        source,
    }
}

/// `walpb.Record.Type` of the record holding `etcdserverpb.Metadata`.
const METADATA_TYPE: u64 = 1;

/// Finds the metadata record among the first records of a WAL file.
///
/// Each record is framed by a little-endian u64 whose low 56 bits give the length and
/// whose top byte, when its high bit is set, the padding (low 3 bits) that follows;
/// the record is the protobuf `walpb.Record { type = 1, crc = 2, data = 3 }`.
fn read_wal_metadata(bytes: &[u8]) -> Option<(u64, u64)> {
    let mut pos = 0usize;
    for _ in 0..8 {
        let frame = u64::from_le_bytes(bytes.get(pos..pos + 8)?.try_into().ok()?);
        pos += 8;
        let len = (frame & !(0xffu64 << 56)) as usize;
        let pad = if frame >> 63 == 1 {
            ((frame >> 56) & 0x7) as usize
        } else {
            0
        };
        let record = bytes.get(pos..pos + len)?;
        pos += len + pad;
        let mut kind = 0;
        let mut data: &[u8] = &[];
        for field in Fields::new(record) {
            match field? {
                (1, Value::Varint(v)) => kind = v,
                (3, Value::Bytes(b)) => data = b,
                _ => {}
            }
        }
        if kind == METADATA_TYPE {
            let (mut node_id, mut cluster_id) = (0, 0);
            for field in Fields::new(data) {
                match field? {
                    (1, Value::Varint(v)) => node_id = v,
                    (2, Value::Varint(v)) => cluster_id = v,
                    _ => {}
                }
            }
            return (node_id != 0).then_some((node_id, cluster_id));
        }
    }
    None
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

/// The fields of a protobuf message, just enough for WAL records.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.pos)?;
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Option<(u64, Value<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let parsed = (|| {
            let key = self.varint()?;
            let value = match key & 7 {
                0 => Value::Varint(self.varint()?),
                1 => {
                    self.pos += 8;
                    Value::Other
                }
                2 => {
                    let len = self.varint()? as usize;
                    let b = self.bytes.get(self.pos..self.pos + len)?;
                    self.pos += len;
                    Value::Bytes(b)
                }
                5 => {
                    self.pos += 4;
                    Value::Other
                }
                _ => return None,
            };
            Some((key >> 3, value))
        })();
        if parsed.is_none() {
            // Stop at the first malformed field instead of looping on it.
            self.pos = self.bytes.len();
        }
        Some(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn record(kind: u64, crc: u64, data: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        r.push(1 << 3);
        varint(kind, &mut r);
        r.push(2 << 3);
        varint(crc, &mut r);
        if !data.is_empty() {
            r.push((3 << 3) | 2);
            varint(data.len() as u64, &mut r);
            r.extend_from_slice(data);
        }
        let pad = (8 - r.len() % 8) % 8;
        let mut framed = Vec::new();
        let mut frame = r.len() as u64;
        if pad != 0 {
            frame |= (0x80 | pad as u64) << 56;
        }
        framed.extend_from_slice(&frame.to_le_bytes());
        framed.extend_from_slice(&r);
        framed.extend(std::iter::repeat_n(0, pad));
        framed
    }

    fn wal(node_id: u64, cluster_id: u64) -> Vec<u8> {
        let mut metadata = Vec::new();
        metadata.push(1 << 3);
        varint(node_id, &mut metadata);
        metadata.push(2 << 3);
        varint(cluster_id, &mut metadata);
        let mut bytes = record(4, 0, &[]);
        bytes.extend(record(METADATA_TYPE, 0xdead_beef, &metadata));
        bytes.extend(record(3, 0x1234, &[8, 1]));
        bytes
    }

    #[test]
    fn reads_the_identity_from_the_first_wal() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(inspect(dir.path()).unwrap(), DataDirState::Empty);
        assert_eq!(
            inspect(&dir.path().join("missing")).unwrap(),
            DataDirState::Empty
        );

        let wal_dir = dir.path().join("member/wal");
        fs::create_dir_all(&wal_dir).unwrap();
        assert!(matches!(
            inspect(dir.path()).unwrap(),
            DataDirState::Unrecognised { .. }
        ));

        fs::write(
            wal_dir.join("0000000000000000-0000000000000000.wal"),
            wal(0x8e9e05c52164694d, 0xcdf818194e3a8c32),
        )
        .unwrap();
        fs::write(
            wal_dir.join("0000000000000001-0000000000000009.wal"),
            wal(1, 2),
        )
        .unwrap();
        assert_eq!(
            inspect(dir.path()).unwrap(),
            DataDirState::Member {
                member_id: MemberId(0x8e9e05c52164694d),
                cluster_id: 0xcdf818194e3a8c32
            }
        );
    }

    #[test]
    fn garbage_is_unrecognised() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("member/wal");
        fs::create_dir_all(&wal_dir).unwrap();
        fs::write(
            wal_dir.join("0000000000000000-0000000000000000.wal"),
            b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage",
        )
        .unwrap();
        assert!(matches!(
            inspect(dir.path()).unwrap(),
            DataDirState::Unrecognised { .. }
        ));
    }

    #[test]
    fn wipe_keeps_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("member/wal")).unwrap();
        fs::write(dir.path().join("member/wal/x.wal"), b"x").unwrap();
        fs::write(dir.path().join("stray"), b"x").unwrap();
        wipe(dir.path()).unwrap();
        assert!(dir.path().is_dir());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
