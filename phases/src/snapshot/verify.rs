//! etcd's snapshot integrity hash.
//!
//! The Maintenance `Snapshot` RPC streams the bbolt database and then, as one last message,
//! the sha256 of every database byte it sent (`maintenanceServer.Snapshot`,
//! `server/etcdserver/api/v3rpc/maintenance.go`, the same in v3.4, v3.5.30 and v3.6.14).
//! etcdctl writes both to the file, so a snapshot file is `database || sha256(database)`.
//! `etcdutl snapshot restore` (`copyAndVerifyDB`, `etcdutl/snapshot/v3_snapshot.go`)
//! takes the last 32 bytes as the digest when the file size modulo 512 is 32 (a bbolt
//! file is whole pages, so a bare database never is) and refuses a mismatch. This module
//! checks the same thing, in one pass and without holding the file in memory.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::SnapshotError;

/// The length of etcd's digest.
pub const HASH_LEN: usize = 32;

/// etcd's `hasChecksum`: a database is whole pages (multiples of 512 bytes), so a file
/// that is 32 bytes over a multiple of 512 carries a digest.
pub fn has_hash_trailer(file_len: u64) -> bool {
    file_len % 512 == HASH_LEN as u64
}

/// Lowercase hex, as `sha256sum` prints it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A sha256 over a stream whose last 32 bytes are the expected digest of what came
/// before: everything but the newest 32 bytes is hashed as it arrives, so the trailer is
/// known only at the end, whatever the chunking.
pub struct TrailingDigest {
    context: ring::digest::Context,
    /// The newest bytes seen, at most [`HASH_LEN`]; not hashed yet.
    tail: Vec<u8>,
    /// Bytes hashed so far (the database length once finished).
    hashed: u64,
}

impl Default for TrailingDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl TrailingDigest {
    pub fn new() -> Self {
        Self {
            context: ring::digest::Context::new(&ring::digest::SHA256),
            tail: Vec::with_capacity(2 * HASH_LEN),
            hashed: 0,
        }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        if chunk.len() >= HASH_LEN {
            // Everything held back, and all of the chunk but its last 32 bytes, is data.
            self.context.update(&self.tail);
            self.hashed += self.tail.len() as u64;
            let (data, tail) = chunk.split_at(chunk.len() - HASH_LEN);
            self.context.update(data);
            self.hashed += data.len() as u64;
            self.tail.clear();
            self.tail.extend_from_slice(tail);
        } else {
            self.tail.extend_from_slice(chunk);
            if self.tail.len() > HASH_LEN {
                let spill = self.tail.len() - HASH_LEN;
                self.context.update(&self.tail[..spill]);
                self.hashed += spill as u64;
                self.tail.drain(..spill);
            }
        }
    }

    /// `(database length, expected digest, computed digest)`, or `None` when fewer than
    /// 32 bytes arrived.
    pub fn finish(self) -> Option<(u64, Vec<u8>, Vec<u8>)> {
        if self.tail.len() < HASH_LEN {
            return None;
        }
        let computed = self.context.finish().as_ref().to_vec();
        Some((self.hashed, self.tail, computed))
    }
}

/// A snapshot file whose digest matched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    /// The whole file, digest included.
    pub file_size: u64,
    /// The database alone.
    pub db_size: u64,
    /// The sha256 of the database, hex (the digest etcd appended).
    pub sha256: String,
}

/// Checks the digest at the end of a snapshot file, reading it once in 1 MiB pieces.
///
/// A file without a digest (a `member/snap/db` copied out of a data directory, or one
/// truncated to a size that hides it) is refused too: the hash is the only proof that a
/// file is what etcd sent.
pub fn verify_file(path: &Path) -> Result<Verified, SnapshotError> {
    let read_error = |source| SnapshotError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let len = file.metadata().map_err(read_error)?.len();
    if !has_hash_trailer(len) {
        return Err(SnapshotError::NoHash {
            path: path.to_path_buf(),
            reason: format!(
                "its size ({len} bytes) is not whole database pages plus the 32-byte sha256 etcd appends; it was truncated, or it is a bare database file (such as member/snap/db) rather than a snapshot"
            ),
        });
    }
    let mut digest = TrailingDigest::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(read_error)?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
    }
    let (db_size, expected, computed) = digest.finish().ok_or_else(|| SnapshotError::NoHash {
        path: path.to_path_buf(),
        reason: "it is shorter than a digest".to_string(),
    })?;
    if expected != computed {
        return Err(SnapshotError::HashMismatch {
            path: path.to_path_buf(),
            expected: hex(&expected),
            actual: hex(&computed),
        });
    }
    Ok(Verified {
        file_size: len,
        db_size,
        sha256: hex(&expected),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, data)
            .as_ref()
            .to_vec()
    }

    #[test]
    fn the_trailer_is_found_whatever_the_chunking() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        let mut stream = data.clone();
        stream.extend(sha(&data));
        for chunk in [1, 5, 31, 32, 33, 100, 4096, 5000] {
            let mut d = TrailingDigest::new();
            for piece in stream.chunks(chunk) {
                d.update(piece);
            }
            let (len, expected, computed) = d.finish().unwrap();
            assert_eq!(len, 4096, "chunk {chunk}");
            assert_eq!(expected, computed, "chunk {chunk}");
        }
        let mut d = TrailingDigest::new();
        d.update(&[0; 31]);
        assert!(d.finish().is_none());
    }

    #[test]
    fn files_are_checked_like_etcdutl_does() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![42u8; 8192];
        let good = dir.path().join("good.db");
        let mut bytes = data.clone();
        bytes.extend(sha(&data));
        std::fs::write(&good, &bytes).unwrap();
        let v = verify_file(&good).unwrap();
        assert_eq!((v.file_size, v.db_size), (8224, 8192));
        assert_eq!(v.sha256, hex(&sha(&data)));

        let altered = dir.path().join("altered.db");
        let mut bad = bytes.clone();
        bad[100] ^= 1;
        std::fs::write(&altered, &bad).unwrap();
        let err = verify_file(&altered).unwrap_err().to_string();
        assert!(
            err.contains("does not match the one etcd appended"),
            "{err}"
        );
        assert!(err.contains(&hex(&sha(&data))), "{err}");

        let truncated = dir.path().join("truncated.db");
        std::fs::write(&truncated, &bytes[..5000]).unwrap();
        let err = verify_file(&truncated).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");

        // Truncated by exactly whole pages: the size looks right, the digest does not.
        let cut = dir.path().join("cut.db");
        let mut short = data[..4096].to_vec();
        short.extend(sha(&data));
        std::fs::write(&cut, &short).unwrap();
        assert!(matches!(
            verify_file(&cut).unwrap_err(),
            SnapshotError::HashMismatch { .. }
        ));
    }
}
