//! `snapshot save`: the Maintenance API's snapshot of a healthy voter, streamed to disk.
//!
//! The stream goes chunk by chunk (etcd sends 32 KiB pieces) through a bounded channel to
//! a writer thread that hashes and writes it, so at most a few hundred KiB are in memory
//! whatever the database size, and the async runtime never blocks on the disk. The file
//! is a temporary in the target directory (mode 0600 from its creation), fsynced, checked
//! against the digest etcd appends, and only then renamed into place and the directory
//! fsynced: a failure at any point (the disk filling up, the member dying, a damaged
//! transfer) removes the temporary and leaves every earlier snapshot as it was.

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use super::verify::{hex, TrailingDigest};
use super::SnapshotError;
use crate::fsutil;
use crate::membership::{EtcdClient, EtcdTls, MemberId, MemberStatus, RpcError};

/// kubeadm's temporary directory, where it keeps its own etcd backups during an upgrade
/// (`/etc/kubernetes/tmp/kubeadm-backup-etcd-*`); snapshots go to a folder of their own
/// under it.
pub const DEFAULT_SNAPSHOT_DIR: &str = "/etc/kubernetes/tmp/etcd-snapshots";
/// Snapshot files are keys to the whole cluster: owner only.
pub const SNAPSHOT_FILE_MODE: u32 = 0o600;
pub const SNAPSHOT_DIR_MODE: u32 = 0o700;
/// The names this tool gives its snapshots; retention only ever removes files named so.
pub const FILE_PREFIX: &str = "etcd-snapshot-";
pub const FILE_SUFFIX: &str = ".db";
/// How long the stream may go without a message before the save is abandoned.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunks in flight between the stream and the writer thread (32 KiB each from etcd).
const CHANNEL_CHUNKS: usize = 8;
/// Progress is reported at most this often (and once at the end).
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Where and how to save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveOptions {
    /// `--dir`: created 0700 when missing.
    pub dir: PathBuf,
    /// The file name; `None`: `etcd-snapshot-<UTC time>.db`.
    pub file_name: Option<String>,
    /// `--keep N`: after a successful save, keep the newest N of this tool's snapshots in
    /// `dir` and remove the older ones. `None` keeps everything.
    pub keep: Option<usize>,
    /// Abandon the save when the stream stalls this long.
    pub stall_timeout: Duration,
}

impl SaveOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            file_name: None,
            keep: None,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// What a save is doing, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveEvent {
    /// The member the snapshot comes from.
    Source {
        id: MemberId,
        name: String,
        endpoint: String,
        version: String,
    },
    /// `bytes` of `total` received (`total` is the database size etcd announced).
    Progress {
        bytes: u64,
        total: u64,
        elapsed: Duration,
    },
    /// An older snapshot removed by `--keep`.
    Removed { path: PathBuf },
}

/// Bytes per second, for progress displays.
pub fn rate(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        bytes as f64 / secs
    } else {
        0.0
    }
}

/// A snapshot on disk, checked.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub path: PathBuf,
    pub member_id: MemberId,
    pub member_name: String,
    pub endpoint: String,
    /// The member's etcd release.
    pub etcd_version: String,
    /// The member's revision right before the snapshot began; the snapshot holds this
    /// revision or, if a write landed in between, a later one.
    pub revision: i64,
    /// The database, without the digest.
    pub db_size: u64,
    /// The file, digest included.
    pub file_size: u64,
    /// The sha256 etcd appended (of the database), hex.
    pub sha256: String,
    /// The storage version etcd 3.6+ sends with the snapshot; empty before 3.6.
    pub storage_version: String,
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
    /// Older snapshots removed by `--keep`.
    pub removed: Vec<PathBuf>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// Takes a snapshot from a healthy voter of the cluster behind `client` and writes it to
/// `opts.dir`.
///
/// The first of the client's endpoints is used when it is a healthy voter (this node's
/// member, usually); else a healthy follower, to keep the load off the leader; else the
/// leader. A learner is never used: it may be behind.
pub async fn save(
    client: &EtcdClient,
    tls: &EtcdTls,
    opts: &SaveOptions,
    report: &mut (dyn FnMut(SaveEvent) + Send),
) -> Result<Saved, SnapshotError> {
    let started = Instant::now();
    let file_name = match &opts.file_name {
        Some(name) => check_file_name(name)?,
        None => default_file_name(time::OffsetDateTime::now_utc()),
    };
    let deadline = tokio::time::Instant::now() + client.rpc_timeout().max(Duration::from_secs(10));
    let (info_name, status) = pick_source(client, deadline).await?;
    let endpoint = status.endpoint.clone();
    report(SaveEvent::Source {
        id: status.member_id,
        name: info_name.clone(),
        endpoint: endpoint.clone(),
        version: status.version.clone(),
    });

    let mut etcd = connect(&endpoint, tls, client.rpc_timeout()).await?;
    let revision = tokio::time::timeout(client.rpc_timeout(), etcd.status())
        .await
        .map_err(|_| SnapshotError::Connect {
            endpoint: endpoint.clone(),
            message: RpcError::busy(client.rpc_timeout()).to_string(),
        })?
        .map_err(|e| SnapshotError::Connect {
            endpoint: endpoint.clone(),
            message: RpcError::from(e).to_string(),
        })?
        .header()
        .map_or(0, |h| h.revision());
    let stream = tokio::time::timeout(opts.stall_timeout, etcd.snapshot())
        .await
        .map_err(|_| SnapshotError::Stalled {
            endpoint: endpoint.clone(),
            received: 0,
            seconds: opts.stall_timeout.as_secs(),
        })?
        .map_err(|e| SnapshotError::Stream {
            endpoint: endpoint.clone(),
            received: 0,
            message: RpcError::from(e).to_string(),
        })?;

    fsutil::create_dir_all_with_mode(&opts.dir, SNAPSHOT_DIR_MODE).map_err(|source| {
        SnapshotError::Write {
            path: opts.dir.clone(),
            source,
        }
    })?;
    remove_stale_temporaries(&opts.dir);
    let target = unique_path(&opts.dir, &file_name);
    let received = receive(
        EtcdStream(stream),
        &target,
        Box::new(open_file),
        opts.stall_timeout,
        &endpoint,
        report,
    )
    .await?;

    let removed = match opts.keep {
        Some(keep) => apply_retention(&opts.dir, keep, &target, report)?,
        None => Vec::new(),
    };
    Ok(Saved {
        path: target,
        member_id: status.member_id,
        member_name: info_name,
        endpoint,
        etcd_version: status.version,
        revision,
        db_size: received.db_size,
        file_size: received.db_size + super::verify::HASH_LEN as u64,
        sha256: received.sha256,
        storage_version: received.storage_version,
        elapsed: started.elapsed(),
        removed,
    })
}

/// The member to take the snapshot from: `(name, status)`.
async fn pick_source(
    client: &EtcdClient,
    deadline: tokio::time::Instant,
) -> Result<(String, MemberStatus), SnapshotError> {
    let membership = client.member_list_until(deadline).await?;
    let voters: Vec<_> = membership.voters().cloned().collect();
    let statuses = client.statuses(&voters).await;
    let preferred = client.endpoints().into_iter().next().unwrap_or_default();
    let mut healthy = Vec::new();
    let mut problems = Vec::new();
    for (member, status) in voters.iter().zip(statuses) {
        match status {
            Ok(s) if s.healthy() && !s.is_learner => healthy.push((member.display_name(), s)),
            Ok(s) => problems.push(format!(
                "{} ({}): {}",
                member.display_name(),
                member.id,
                if s.errors.is_empty() {
                    "knows no leader".to_string()
                } else {
                    s.errors.join(", ")
                }
            )),
            Err(e) => problems.push(format!("{} ({}): {e}", member.display_name(), member.id)),
        }
    }
    // The preferred endpoint first, then followers, then the leader.
    healthy.sort_by_key(|(_, s)| (s.endpoint != preferred, s.leader == s.member_id));
    healthy
        .into_iter()
        .next()
        .ok_or_else(|| SnapshotError::NoHealthyVoter {
            details: if problems.is_empty() {
                "the member list has no started voter".to_string()
            } else {
                problems.join("; ")
            },
        })
}

/// A client for one member, for the stream: TLS as the membership client has it, no
/// per-call time limit (a large snapshot takes minutes) but HTTP/2 keep-alives, so a
/// member that vanishes is noticed, and the stall timeout in [`receive`].
pub(crate) async fn connect(
    endpoint: &str,
    tls: &EtcdTls,
    connect_timeout: Duration,
) -> Result<Client, SnapshotError> {
    let read = |path: &Path| {
        fs::read(path).map_err(|source| SnapshotError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let options = ConnectOptions::new()
        .with_tls(
            TlsOptions::new()
                .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
                .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?)),
        )
        .with_connect_timeout(connect_timeout)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
    match tokio::time::timeout(connect_timeout, Client::connect([endpoint], Some(options))).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(SnapshotError::Connect {
            endpoint: endpoint.to_string(),
            message: RpcError::from(e).to_string(),
        }),
        Err(_) => Err(SnapshotError::Connect {
            endpoint: endpoint.to_string(),
            message: RpcError::busy(connect_timeout).to_string(),
        }),
    }
}

/// One message of the snapshot stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub blob: Vec<u8>,
    pub remaining: u64,
    pub version: String,
}

/// Where the chunks come from: etcd's stream, or in tests a list.
pub(crate) trait ChunkSource: Send {
    fn next(&mut self) -> impl Future<Output = Result<Option<Chunk>, String>> + Send;
}

struct EtcdStream(etcd_client::SnapshotStreaming);

impl ChunkSource for EtcdStream {
    async fn next(&mut self) -> Result<Option<Chunk>, String> {
        self.0
            .message()
            .await
            .map(|m| {
                m.map(|m| Chunk {
                    blob: m.blob().to_vec(),
                    remaining: m.remaining_bytes(),
                    version: m.version().to_string(),
                })
            })
            .map_err(|e| RpcError::from(e).to_string())
    }
}

/// Where the bytes go: a file, or in tests one that fails like a full disk.
pub(crate) trait SnapshotSink: Write + Send {
    fn sync(&mut self) -> io::Result<()>;
}

impl SnapshotSink for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

pub(crate) type Opener = Box<dyn FnOnce(&Path) -> io::Result<Box<dyn SnapshotSink>> + Send>;

fn open_file(path: &Path) -> io::Result<Box<dyn SnapshotSink>> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(SNAPSHOT_FILE_MODE)
        .open(path)?;
    // The umask can only have narrowed the mode; make it exact.
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(SNAPSHOT_FILE_MODE))?;
    Ok(Box::new(file))
}

#[derive(Debug)]
pub(crate) struct Received {
    pub db_size: u64,
    pub sha256: String,
    pub storage_version: String,
}

/// Streams the chunks `next` yields into a temporary beside `target`, checks them, and
/// renames the temporary to `target`. On any error the temporary is gone.
pub(crate) async fn receive<S: ChunkSource>(
    mut source: S,
    target: &Path,
    opener: Opener,
    stall_timeout: Duration,
    endpoint: &str,
    report: &mut (dyn FnMut(SaveEvent) + Send),
) -> Result<Received, SnapshotError> {
    let temp = temp_path(target);
    let write_error = |source| SnapshotError::Write {
        path: target.to_path_buf(),
        source,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(CHANNEL_CHUNKS);
    let writer_temp = temp.clone();
    let writer = tokio::task::spawn_blocking(move || write_chunks(&writer_temp, opener, rx));

    let started = Instant::now();
    let mut last_report = started;
    let mut received = 0u64;
    let mut announced = None;
    let mut storage_version = String::new();
    let streamed: Result<(), SnapshotError> = async {
        loop {
            let message = tokio::time::timeout(stall_timeout, source.next())
                .await
                .map_err(|_| SnapshotError::Stalled {
                    endpoint: endpoint.to_string(),
                    received,
                    seconds: stall_timeout.as_secs(),
                })?
                .map_err(|message| SnapshotError::Stream {
                    endpoint: endpoint.to_string(),
                    received,
                    message,
                })?;
            let Some(chunk) = message else { break };
            // The first message tells the database size: what it carries plus what remains.
            let total = *announced.get_or_insert(chunk.blob.len() as u64 + chunk.remaining);
            if storage_version.is_empty() {
                storage_version = chunk.version;
            }
            received += chunk.blob.len() as u64;
            if tx.send(chunk.blob).await.is_err() {
                // The writer stopped: its error is what matters.
                break;
            }
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                report(SaveEvent::Progress {
                    bytes: received.min(total),
                    total,
                    elapsed: started.elapsed(),
                });
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    let written = writer
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("the writer thread failed: {e}"))));

    let result = (|| {
        streamed?;
        let digest = written.map_err(write_error)?;
        let (db_size, expected, computed) = digest.finish().ok_or(SnapshotError::Stream {
            endpoint: endpoint.to_string(),
            received,
            message: "the stream ended before etcd's sha256".to_string(),
        })?;
        let announced = announced.unwrap_or(0);
        if db_size != announced {
            return Err(SnapshotError::StreamSize {
                endpoint: endpoint.to_string(),
                announced,
                received: db_size,
            });
        }
        if expected != computed {
            return Err(SnapshotError::StreamHashMismatch {
                endpoint: endpoint.to_string(),
                expected: hex(&expected),
                actual: hex(&computed),
            });
        }
        fs::rename(&temp, target).map_err(write_error)?;
        let dir = target.parent().unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_error)?;
        report(SaveEvent::Progress {
            bytes: db_size,
            total: announced,
            elapsed: started.elapsed(),
        });
        Ok(Received {
            db_size,
            sha256: hex(&expected),
            storage_version,
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// The writer thread: every chunk to the sink and the digest, then fsync.
fn write_chunks(
    temp: &Path,
    opener: Opener,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> io::Result<TrailingDigest> {
    let mut sink = opener(temp)?;
    let mut digest = TrailingDigest::new();
    while let Some(chunk) = rx.blocking_recv() {
        sink.write_all(&chunk)?;
        digest.update(&chunk);
    }
    sink.flush()?;
    sink.sync()?;
    Ok(digest)
}

/// `.<name>.partial-<pid>`: hidden, never matching the snapshot pattern, so a crash's
/// leftover is never taken for a snapshot nor counted by retention.
fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Removes temporaries of saves whose process is gone (killed mid-save).
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&format!(".{FILE_PREFIX}")) else {
            continue;
        };
        let Some((_, pid)) = rest.rsplit_once(".partial-") else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// `etcd-snapshot-20261202T005323.123Z.db`: sorts by time.
pub fn default_file_name(now: time::OffsetDateTime) -> String {
    format!(
        "{FILE_PREFIX}{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z{FILE_SUFFIX}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

fn check_file_name(name: &str) -> Result<String, SnapshotError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(SnapshotError::Invalid(format!(
            "snapshot file name {name:?}: give a plain file name (no '/', not hidden); the directory is --dir"
        )));
    }
    Ok(name.to_string())
}

/// `dir/name`, or `dir/<stem>-N<ext>` when taken: a save never replaces a snapshot.
fn unique_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.strip_suffix(FILE_SUFFIX) {
        Some(stem) => (stem, FILE_SUFFIX),
        None => (name, ""),
    };
    (1..)
        .map(|n| dir.join(format!("{stem}-{n}{ext}")))
        .find(|p| !p.exists())
        .expect("some suffix is free")
}

/// This tool's snapshots in `dir`, oldest first (the names sort by time).
pub fn list_snapshots(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(FILE_PREFIX)
                && name.ends_with(FILE_SUFFIX)
                && e.file_type().is_ok_and(|t| t.is_file())
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found)
}

/// Keeps the newest `keep` of this tool's snapshots in `dir` (never `just_saved`), removes
/// the rest. Other files are never touched.
fn apply_retention(
    dir: &Path,
    keep: usize,
    just_saved: &Path,
    report: &mut (dyn FnMut(SaveEvent) + Send),
) -> Result<Vec<PathBuf>, SnapshotError> {
    let keep = keep.max(1);
    let all = list_snapshots(dir).map_err(|source| SnapshotError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let excess = all.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for path in all.into_iter().take(excess) {
        if path == just_saved {
            continue;
        }
        fs::remove_file(&path).map_err(|source| SnapshotError::Write {
            path: path.clone(),
            source,
        })?;
        report(SaveEvent::Removed { path: path.clone() });
        removed.push(path);
    }
    if !removed.is_empty() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| SnapshotError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct List(std::collections::VecDeque<Chunk>);

    impl ChunkSource for List {
        async fn next(&mut self) -> Result<Option<Chunk>, String> {
            Ok(self.0.pop_front())
        }
    }

    fn sha(data: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, data)
            .as_ref()
            .to_vec()
    }

    /// etcd's framing: 32 KiB pieces with the bytes remaining, then the digest.
    fn etcd_stream(db: &[u8], digest: Vec<u8>) -> Vec<Chunk> {
        let mut out = Vec::new();
        let mut sent = 0;
        for piece in db.chunks(32 * 1024) {
            sent += piece.len();
            out.push(Chunk {
                blob: piece.to_vec(),
                remaining: (db.len() - sent) as u64,
                version: String::new(),
            });
        }
        out.push(Chunk {
            blob: digest,
            remaining: 0,
            version: String::new(),
        });
        out
    }

    async fn run(
        chunks: Vec<Chunk>,
        target: &Path,
        opener: Opener,
    ) -> Result<Received, SnapshotError> {
        receive(
            List(chunks.into()),
            target,
            opener,
            Duration::from_secs(5),
            "https://127.0.0.1:2379",
            &mut |_| {},
        )
        .await
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[tokio::test]
    async fn a_good_stream_lands_whole_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let db: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let target = dir.path().join("etcd-snapshot-a.db");
        let r = run(etcd_stream(&db, sha(&db)), &target, Box::new(open_file))
            .await
            .unwrap();
        assert_eq!(r.db_size, 100_000);
        let mut expected = db.clone();
        expected.extend(sha(&db));
        assert_eq!(fs::read(&target).unwrap(), expected);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(names(dir.path()), ["etcd-snapshot-a.db"]);
    }

    #[tokio::test]
    async fn a_damaged_or_short_stream_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = vec![7u8; 70_000];
        let target = dir.path().join("etcd-snapshot-b.db");
        let mut wrong = sha(&db);
        wrong[0] ^= 1;
        let err = run(etcd_stream(&db, wrong), &target, Box::new(open_file))
            .await
            .unwrap_err();
        assert!(
            matches!(err, SnapshotError::StreamHashMismatch { .. }),
            "{err}"
        );
        // The stream ends early: etcd announced more than arrived.
        let mut short = etcd_stream(&db, sha(&db));
        short.remove(1);
        let err = run(short, &target, Box::new(open_file)).await.unwrap_err();
        assert!(matches!(err, SnapshotError::StreamSize { .. }), "{err}");
        assert!(names(dir.path()).is_empty());
    }

    /// A file that takes `room` bytes, then fails like a full disk.
    struct FullDisk {
        file: File,
        room: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.file.write(&buf[..n])
        }
        fn flush(&mut self) -> io::Result<()> {
            self.file.flush()
        }
    }

    impl SnapshotSink for FullDisk {
        fn sync(&mut self) -> io::Result<()> {
            self.file.sync_all()
        }
    }

    #[tokio::test]
    async fn a_full_disk_leaves_no_partial_file_and_the_old_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("etcd-snapshot-20260101T000000.000Z.db");
        fs::write(&old, b"an earlier snapshot").unwrap();
        let db = vec![1u8; 200_000];
        let target = dir.path().join("etcd-snapshot-20260102T000000.000Z.db");
        let opener: Opener = Box::new(|p: &Path| {
            let file = File::create(p)?;
            Ok(Box::new(FullDisk { file, room: 50_000 }) as Box<dyn SnapshotSink>)
        });
        let err = run(etcd_stream(&db, sha(&db)), &target, opener)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("No space left on device"), "{text}");
        assert!(text.contains("no partial file was left"), "{text}");
        assert_eq!(names(dir.path()), ["etcd-snapshot-20260101T000000.000Z.db"]);
        assert_eq!(fs::read(&old).unwrap(), b"an earlier snapshot");
    }

    #[test]
    fn retention_keeps_the_newest_of_ours_only() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "etcd-snapshot-20260101T000000.000Z.db",
            "etcd-snapshot-20260102T000000.000Z.db",
            "etcd-snapshot-20260103T000000.000Z.db",
            "etcd-snapshot-20260104T000000.000Z.db",
            "someone-elses.db",
            ".etcd-snapshot-20260105T000000.000Z.db.partial-1",
        ] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        let newest = dir.path().join("etcd-snapshot-20260104T000000.000Z.db");
        let mut events = Vec::new();
        let removed = apply_retention(dir.path(), 2, &newest, &mut |e| events.push(e)).unwrap();
        assert_eq!(removed.len(), 2);
        assert_eq!(events.len(), 2);
        assert_eq!(
            names(dir.path()),
            [
                ".etcd-snapshot-20260105T000000.000Z.db.partial-1",
                "etcd-snapshot-20260103T000000.000Z.db",
                "etcd-snapshot-20260104T000000.000Z.db",
                "someone-elses.db",
            ]
        );
        remove_stale_temporaries(dir.path());
        // pid 1 exists: its temporary is left alone.
        assert_eq!(names(dir.path()).len(), 4);
    }

    #[test]
    fn names_sort_by_time_and_never_collide() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_796_172_803_123_000_000).unwrap();
        assert_eq!(
            default_file_name(t),
            "etcd-snapshot-20261202T005323.123Z.db"
        );
        let dir = tempfile::tempdir().unwrap();
        let a = unique_path(dir.path(), "etcd-snapshot-x.db");
        fs::write(&a, b"").unwrap();
        assert_eq!(
            unique_path(dir.path(), "etcd-snapshot-x.db"),
            dir.path().join("etcd-snapshot-x-1.db")
        );
        assert!(check_file_name("../x").is_err());
    }
}
