//! Fresh evidence that this node's learner process is alive while it is too busy to answer
//! on its client URL, and what this node sees of the snapshot it is taking in.
//!
//! A learner fed a database snapshot serves nothing on its client URL until it has
//! applied it: etcd's client listener accepts connections from the start but serves them
//! only after the server's `ReadyNotify`, which fires once the member has applied its own
//! publish entry, after the snapshot (`server/embed/serve.go`, `<-s.ReadyNotify()` in
//! 3.5, `case <-s.ReadyNotify()` in 3.6 and 3.7). At 512 MiB that is seconds without an
//! answer, while etcd already accepts the promotion.
//!
//! The metrics listener of the same process (`--listen-metrics-urls`; kubeadm's is
//! `http://127.0.0.1:2381`, private to the node) has no such gate: `serveMetrics`
//! (`server/embed/etcd.go`) serves `/metrics` from right after `NewServer`, and there
//! `etcd_server_id{server_id="<hex member ID>"} 1` is set in `NewServer` itself
//! (`server/etcdserver/server.go`; the same in 3.4.23, 3.5.1, 3.5.30, 3.6.14, 3.7.1). An
//! answer carrying the learner's own ID, taken right before a promotion attempt, is
//! evidence that the learner's process runs and serves: a killed learner refuses the
//! connection, a paused one (SIGSTOP) never answers within the bound, and any other
//! process on the port (an earlier member of this node) reports another ID or none. This
//! evidence is only taken on the learner's own node: the learner is found in this node's
//! static Pod manifest, by its peer URL.
//!
//! The same node sees the snapshot arrive in the learner's data directory: etcd streams
//! it into `member/snap/tmp<digits>` (`snap/db.go` `SaveDBFrom`: `CreateTemp(dir,
//! "tmp")`), renames it to `<index as %016x>.snap.db` once complete, and renames that to
//! `member/snap/db` when it applies it (`OpenSnapshotBackend`); stale `tmp*` files are
//! removed when etcd starts (`cleanupSnapdir`). Same names in 3.4 to 3.7.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use tokio::time::Instant;

use super::{MemberId, MemberInfo};

/// How long the metrics listener may take to answer. It answers in a few milliseconds
/// even while the learner applies a snapshot; a paused process never does.
pub const METRICS_TIMEOUT: Duration = Duration::from_millis(500);
/// etcd's `/metrics` is a few hundred kB; more than this is not etcd.
const METRICS_MAX_BYTES: usize = 16 << 20;

/// What can go wrong reading this node's manifest for the learner's listeners.
#[derive(Debug, thiserror::Error)]
pub enum LivenessError {
    #[error("failed to read this node's etcd static Pod manifest {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("this node's etcd static Pod manifest {} does not say how the learner runs: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
}

/// This node's etcd member as its static Pod manifest runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLearner {
    /// Where this was read from.
    pub manifest: PathBuf,
    /// `--initial-advertise-peer-urls`: which member of the cluster this is.
    pub peer_urls: Vec<String>,
    /// The plain-HTTP metrics URLs to ask, in order.
    pub metrics_urls: Vec<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

impl LocalLearner {
    /// Reads `<manifest_dir>/etcd.yaml`. `Ok(None)` when there is none (promote run from
    /// another node, with `--id`): then only the client URL counts as evidence.
    ///
    /// `advertise` is this node's address. A member whose advertise address is itself a
    /// loopback address shares the host with others (`hack/local-cluster.sh`, the tests):
    /// the kubelet stand-in moves its localhost listeners to that address, so a localhost
    /// metrics URL is also asked there. Asking a wrong address is harmless: only an answer
    /// with the learner's own member ID counts.
    pub fn from_manifest(
        path: &Path,
        advertise: Option<IpAddr>,
    ) -> Result<Option<Self>, LivenessError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LivenessError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let unusable = |reason: String| LivenessError::Unusable {
            path: path.to_path_buf(),
            reason,
        };
        let pod: k8s_openapi::api::core::v1::Pod =
            serde_yaml::from_str(&text).map_err(|e| unusable(format!("not a Pod: {e}")))?;
        let containers = pod.spec.map(|s| s.containers).unwrap_or_default();
        let command = containers
            .iter()
            .find(|c| c.name == "etcd")
            .or(containers.first())
            .and_then(|c| c.command.clone())
            .ok_or_else(|| unusable("no container with a command".to_string()))?;
        Ok(Some(Self::from_command(path, &command, advertise)))
    }

    /// The listeners and data directory an etcd command line gives.
    pub fn from_command(manifest: &Path, command: &[String], advertise: Option<IpAddr>) -> Self {
        let flag = |name: &str| crate::snapshot::restore::command_flag(command, name);
        let list = |name: &str| -> Vec<String> {
            flag(name)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut metrics_urls = Vec::new();
        for url in list("listen-metrics-urls") {
            // kubeadm serves metrics in plain HTTP; an https:// listener would need a
            // client certificate, and the client URL stays the evidence there.
            if !url.starts_with("http://") {
                continue;
            }
            if let Some(moved) = advertise
                .filter(IpAddr::is_loopback)
                .and_then(|ip| on_address(&url, ip))
            {
                if !metrics_urls.contains(&moved) {
                    metrics_urls.push(moved);
                }
            }
            if !metrics_urls.contains(&url) {
                metrics_urls.push(url);
            }
        }
        Self {
            manifest: manifest.to_path_buf(),
            peer_urls: list("initial-advertise-peer-urls"),
            metrics_urls,
            data_dir: flag("data-dir").map(PathBuf::from),
        }
    }

    /// Whether this manifest runs `member` (same peer URL).
    pub fn runs(&self, member: &MemberInfo) -> bool {
        self.peer_urls.iter().any(|u| member.has_peer_url(u))
    }
}

/// `url` with a localhost host replaced by `ip`; `None` when its host is not localhost.
fn on_address(url: &str, ip: IpAddr) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    ["127.0.0.1", "[::1]", "localhost"]
        .iter()
        .find_map(|local| {
            let tail = rest.strip_prefix(local)?;
            (tail.is_empty() || tail.starts_with(':') || tail.starts_with('/'))
                .then(|| format!("http://{host}{tail}"))
        })
}

/// What promote keeps about this node's learner across its polls.
#[derive(Debug)]
pub struct LocalWatch {
    learner: LocalLearner,
    id: MemberId,
    snapshot: SnapshotTracker,
}

/// What the learner's `/metrics` says of its progress, from gauges its raft and apply
/// loops set whether or not it serves clients (`server/etcdserver`, 3.4.23 to 3.7.1):
/// `proposals_committed_total` from each raft `Ready`'s hard state (`raft.go`),
/// `proposals_applied_total` after each apply (`applyAll` in `server.go`), and
/// `snapshot_apply_in_progress_total` around `applySnapshot`. A learner that runs but
/// receives nothing (no log, no snapshot) shows none of them moving.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vitals {
    pub committed: Option<u64>,
    pub applied: Option<u64>,
    pub applying_snapshot: bool,
}

impl Vitals {
    /// The gauges from a Prometheus text page. Values are printed as floats (`1.5e+06`
    /// for a large index).
    pub fn from_metrics(body: &str) -> Self {
        let mut vitals = Self::default();
        for line in body.lines() {
            // `name value [timestamp]`: etcd prints no timestamp, the format allows one.
            let mut fields = line.split_whitespace();
            let (Some(name), Some(value)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            match name {
                "etcd_server_proposals_committed_total" => vitals.committed = Some(value as u64),
                "etcd_server_proposals_applied_total" => vitals.applied = Some(value as u64),
                "etcd_server_snapshot_apply_in_progress_total" => {
                    vitals.applying_snapshot = value >= 1.0;
                }
                _ => {}
            }
        }
        vitals
    }

    /// Whether the learner moved since `before`: its log or applied index grew, or it is
    /// applying a snapshot (seconds of disk work for a large one, with neither index
    /// moving).
    pub fn moved_since(&self, before: &Self) -> bool {
        let grew = |now: Option<u64>, then: Option<u64>| now.unwrap_or(0) > then.unwrap_or(0);
        self.applying_snapshot
            || grew(self.committed, before.committed)
            || grew(self.applied, before.applied)
    }

    /// Nothing from the leader yet: no committed entry, none applied.
    pub fn empty(&self) -> bool {
        self.committed.unwrap_or(0) == 0 && self.applied.unwrap_or(0) == 0
    }
}

/// The snapshot in the learner's data directory, as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotState {
    /// None in flight.
    Idle,
    /// `member/snap/tmp*` growing: this many bytes so far.
    Receiving { bytes: u64 },
    /// `*.snap.db` complete, not yet applied.
    Received { bytes: u64 },
}

/// A snapshot's progress, for [`super::Event::SnapshotProgress`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnapshotProgress {
    pub received: u64,
    pub complete: bool,
    /// Since this snapshot was first seen; `None` until there is enough to tell.
    pub bytes_per_sec: Option<f64>,
}

#[derive(Debug, Default)]
struct SnapshotTracker {
    /// When the current snapshot was first seen, and its size then.
    first: Option<(Instant, u64)>,
    last: Option<(Instant, u64)>,
    /// When a complete snapshot was first seen (received, or gone into `member/snap/db`).
    landed: Option<Instant>,
    /// The inode of `member/snap/db` last time: a snapshot applied between two looks
    /// (a transfer faster than the polls) replaces that file.
    db_inode: Option<u64>,
}

impl LocalWatch {
    /// A watch on `member` when `learner` is the manifest that runs it, `None` otherwise
    /// (promote for another node's member: only its client URL counts).
    pub fn new(learner: LocalLearner, member: &MemberInfo) -> Option<Self> {
        learner.runs(member).then(|| Self {
            learner,
            id: member.id,
            snapshot: SnapshotTracker::default(),
        })
    }

    /// Fresh evidence that the learner's process is alive and serving: one of its metrics
    /// listeners answers now, within [`METRICS_TIMEOUT`], with the learner's member ID.
    /// `Ok` carries what the same page says of its progress; `Err` says why not.
    pub async fn alive(&self) -> Result<Vitals, String> {
        if self.learner.metrics_urls.is_empty() {
            return Err(format!(
                "{} names no http:// --listen-metrics-urls",
                self.learner.manifest.display()
            ));
        }
        let mut reasons = Vec::new();
        for url in &self.learner.metrics_urls {
            match fetch_metrics(url, METRICS_TIMEOUT).await {
                Ok(body) => match reports_member(&body, self.id) {
                    Ok(()) => return Ok(Vitals::from_metrics(&body)),
                    Err(e) => reasons.push(format!("{url}: {e}")),
                },
                Err(e) => reasons.push(format!("{url}: {e}")),
            }
        }
        Err(reasons.join("; "))
    }

    /// Returns once the learner's data directory shows no snapshot in flight, looked at
    /// every `poll`: it landed (or the transfer was dropped). Never, without a data
    /// directory.
    pub async fn until_not_receiving(&self, poll: Duration) {
        let Some(snap_dir) = self.snap_dir() else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(poll).await;
            if !matches!(look(&snap_dir), Ok(SnapshotState::Receiving { .. })) {
                return;
            }
        }
    }

    /// Where etcd keeps snapshots and its database: `<data-dir>/member/snap`.
    fn snap_dir(&self) -> Option<PathBuf> {
        Some(
            self.learner
                .data_dir
                .as_deref()?
                .join("member")
                .join("snap"),
        )
    }

    /// Looks at the learner's data directory. `Idle` when it has none or it cannot be read.
    pub fn observe(&mut self) -> SnapshotState {
        let snap_dir = self.snap_dir();
        let state = snap_dir.as_deref().map_or(SnapshotState::Idle, |d| {
            look(d).unwrap_or(SnapshotState::Idle)
        });
        let now = Instant::now();
        let db = snap_dir.and_then(|d| std::fs::metadata(d.join("db")).ok());
        let t = &mut self.snapshot;
        let db_replaced = match (&db, t.db_inode) {
            (Some(meta), Some(inode)) => std::os::unix::fs::MetadataExt::ino(meta) != inode,
            _ => false,
        };
        if let Some(meta) = &db {
            t.db_inode = Some(std::os::unix::fs::MetadataExt::ino(meta));
        }
        match state {
            SnapshotState::Receiving { bytes } => {
                // A new transfer (a restart, a second snapshot) starts over.
                if t.last.is_none_or(|(_, b)| bytes < b) || t.landed.is_some() {
                    t.first = Some((now, bytes));
                    t.landed = None;
                }
                t.last = Some((now, bytes));
            }
            SnapshotState::Received { bytes } => {
                t.landed.get_or_insert(now);
                t.first.get_or_insert((now, bytes));
                t.last = Some((now, bytes));
            }
            SnapshotState::Idle => {
                // Gone from tmp* or *.snap.db into member/snap/db between two looks:
                // received in full, and applied. What arrived is that file.
                if let Some((_, seen)) = t.last.filter(|_| t.landed.is_none()) {
                    t.landed = Some(now);
                    t.last = Some((now, db.map_or(seen, |m| m.len().max(seen))));
                } else if t.last.is_none() && db_replaced {
                    // Received and applied between two looks.
                    let size = db.map_or(0, |m| m.len());
                    t.landed = Some(now);
                    t.first = Some((now, size));
                    t.last = Some((now, size));
                }
            }
        }
        state
    }

    /// The current snapshot's progress, after [`observe`](Self::observe).
    pub fn progress(&self) -> Option<SnapshotProgress> {
        let t = &self.snapshot;
        let (last_at, received) = t.last?;
        let bytes_per_sec = t.first.and_then(|(first_at, first)| {
            let secs = last_at.duration_since(first_at).as_secs_f64();
            (secs >= 0.2 && received > first).then(|| (received - first) as f64 / secs)
        });
        Some(SnapshotProgress {
            received,
            complete: t.landed.is_some(),
            bytes_per_sec,
        })
    }

    /// Since when a complete snapshot has been in the learner's data directory: from then
    /// on etcd may accept the promotion any moment, before the learner answers on its
    /// client URL.
    pub fn landed(&self) -> Option<Instant> {
        self.snapshot.landed
    }

    /// The learner answered on its client URL: whatever was in flight is done.
    pub fn answered(&mut self) {
        self.snapshot = SnapshotTracker::default();
    }
}

/// The snapshot state of `snap_dir` (`<data-dir>/member/snap`).
fn look(snap_dir: &Path) -> std::io::Result<SnapshotState> {
    let mut tmp: Option<(std::time::SystemTime, u64)> = None;
    let mut received: Option<u64> = None;
    for entry in std::fs::read_dir(snap_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Gone between the listing and the stat: renamed, look again next time.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        if name.starts_with("tmp") {
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            if tmp.is_none_or(|(m, _)| modified >= m) {
                tmp = Some((modified, meta.len()));
            }
        } else if name.ends_with(".snap.db") {
            received = Some(received.unwrap_or(0).max(meta.len()));
        }
    }
    Ok(match (tmp, received) {
        (Some((_, bytes)), _) => SnapshotState::Receiving { bytes },
        (None, Some(bytes)) => SnapshotState::Received { bytes },
        (None, None) => SnapshotState::Idle,
    })
}

/// `GET <url>/metrics` in plain HTTP/1.1, bounded by `timeout` as a whole.
async fn fetch_metrics(url: &str, timeout: Duration) -> Result<String, String> {
    match tokio::time::timeout(timeout, fetch_metrics_unbounded(url)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {}ms", timeout.as_millis())),
    }
}

async fn fetch_metrics_unbounded(url: &str) -> Result<String, String> {
    let uri: hyper::Uri = format!(
        "{}/metrics",
        url.trim_end_matches('/')
            .split('/')
            .take(3)
            .collect::<Vec<_>>()
            .join("/")
    )
    .parse()
    .map_err(|e| format!("not a URL: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| "no host".to_string())?
        .clone();
    let address = match authority.port_u16() {
        Some(_) => authority.to_string(),
        None => format!("{authority}:80"),
    };
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    // Ends when the answer has been read and `sender` is dropped, or with the timeout.
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(uri.path())
        .header(hyper::header::HOST, authority.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        connection.abort();
        return Err(format!("HTTP {}", response.status()));
    }
    let body = Limited::new(response.into_body(), METRICS_MAX_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    connection.abort();
    String::from_utf8(body.to_vec()).map_err(|_| "the answer is not text".to_string())
}

/// Whether a `/metrics` page is that of member `id`: `etcd_server_id{server_id="<hex>"} 1`.
fn reports_member(body: &str, id: MemberId) -> Result<(), String> {
    let mut others = Vec::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("etcd_server_id{server_id=\"") else {
            continue;
        };
        let Some((reported, value)) = rest.split_once("\"}") else {
            continue;
        };
        if value.trim() != "1" {
            continue;
        }
        if reported == id.to_string() {
            return Ok(());
        }
        others.push(reported.to_string());
    }
    if others.is_empty() {
        Err("the metrics name no etcd member (no etcd_server_id)".to_string())
    } else {
        Err(format!(
            "the metrics are those of member {}, not {id}",
            others.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_page_gives_the_learners_indexes() {
        let page = "# HELP etcd_server_proposals_applied_total The total number of consensus proposals applied.\n\
            # TYPE etcd_server_proposals_applied_total gauge\n\
            etcd_server_proposals_applied_total 1.234567e+06\n\
            etcd_server_proposals_committed_total 1.234599e+06\n\
            etcd_server_proposals_committed_total_other 7\n\
            etcd_server_snapshot_apply_in_progress_total 0 1700000000000\n";
        let v = Vitals::from_metrics(page);
        assert_eq!(
            v,
            Vitals {
                committed: Some(1_234_599),
                applied: Some(1_234_567),
                applying_snapshot: false,
            }
        );
        assert!(!v.empty());
        assert!(!v.moved_since(&v));

        let fresh = Vitals::from_metrics(
            "etcd_server_proposals_applied_total 0\netcd_server_proposals_committed_total 0\n",
        );
        assert!(fresh.empty());
        assert!(!fresh.moved_since(&Vitals::default()));
        assert!(v.moved_since(&fresh));
        assert!(!fresh.moved_since(&v), "a restart replays: not progress");
        let applying = Vitals {
            applying_snapshot: true,
            ..fresh
        };
        assert!(applying.moved_since(&fresh));
        // A page without the gauges (not etcd's) says nothing moved.
        assert!(Vitals::from_metrics("up 1\n").empty());
    }

    fn command(args: &[&str]) -> Vec<String> {
        std::iter::once("etcd")
            .chain(args.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn the_manifest_gives_the_metrics_urls_the_peer_url_and_the_data_dir() {
        let cmd = command(&[
            "--data-dir=/var/lib/etcd",
            "--initial-advertise-peer-urls=https://10.0.0.2:2380",
            "--listen-metrics-urls=http://127.0.0.1:2381,https://10.0.0.2:9379",
        ]);
        let l = LocalLearner::from_command(
            Path::new("/m/etcd.yaml"),
            &cmd,
            Some("10.0.0.2".parse().unwrap()),
        );
        assert_eq!(l.metrics_urls, ["http://127.0.0.1:2381"]);
        assert_eq!(l.peer_urls, ["https://10.0.0.2:2380"]);
        assert_eq!(l.data_dir.as_deref(), Some(Path::new("/var/lib/etcd")));
        let member = |peer: &str| MemberInfo {
            id: MemberId(1),
            name: String::new(),
            peer_urls: vec![peer.into()],
            client_urls: vec![],
            is_learner: true,
        };
        assert!(l.runs(&member("https://10.0.0.2:2380/")));
        assert!(!l.runs(&member("https://10.0.0.3:2380")));

        // Members sharing a host on loopback addresses: asked at their own address first.
        let l = LocalLearner::from_command(
            Path::new("/m/etcd.yaml"),
            &cmd,
            Some("127.5.0.11".parse().unwrap()),
        );
        assert_eq!(
            l.metrics_urls,
            ["http://127.5.0.11:2381", "http://127.0.0.1:2381"]
        );
    }

    #[test]
    fn only_the_learners_own_id_counts() {
        let page = "# HELP etcd_server_id Server or member ID\n# TYPE etcd_server_id gauge\netcd_server_id{server_id=\"8e9e05c52164694d\"} 1\netcd_server_is_learner 1\n";
        assert!(reports_member(page, MemberId(0x8e9e05c52164694d)).is_ok());
        let err = reports_member(page, MemberId(0xab)).unwrap_err();
        assert!(err.contains("8e9e05c52164694d, not ab"), "{err}");
        let err = reports_member("go_goroutines 12\n", MemberId(0xab)).unwrap_err();
        assert!(err.contains("no etcd_server_id"), "{err}");
    }

    #[test]
    fn the_data_dir_shows_the_snapshot_arriving_then_landing() {
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("member").join("snap");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("db"), [0u8; 16]).unwrap();
        assert_eq!(look(&snap).unwrap(), SnapshotState::Idle);
        std::fs::write(snap.join("tmp123456"), [0u8; 100]).unwrap();
        assert_eq!(
            look(&snap).unwrap(),
            SnapshotState::Receiving { bytes: 100 }
        );
        std::fs::rename(
            snap.join("tmp123456"),
            snap.join("0000000000000010.snap.db"),
        )
        .unwrap();
        assert_eq!(look(&snap).unwrap(), SnapshotState::Received { bytes: 100 });

        let learner = LocalLearner {
            manifest: PathBuf::from("/m/etcd.yaml"),
            peer_urls: vec!["https://10.0.0.2:2380".into()],
            metrics_urls: vec![],
            data_dir: Some(dir.path().to_path_buf()),
        };
        let member = MemberInfo {
            id: MemberId(1),
            name: String::new(),
            peer_urls: vec!["https://10.0.0.2:2380".into()],
            client_urls: vec![],
            is_learner: true,
        };
        let mut w = LocalWatch::new(learner, &member).unwrap();
        assert_eq!(w.observe(), SnapshotState::Received { bytes: 100 });
        assert!(w.landed().is_some());
        assert_eq!(
            w.progress().map(|p| (p.received, p.complete)),
            Some((100, true))
        );
        w.answered();
        assert!(w.progress().is_none());

        // A transfer faster than the polls: only member/snap/db being replaced shows it.
        std::fs::remove_file(snap.join("0000000000000010.snap.db")).unwrap();
        assert_eq!(w.observe(), SnapshotState::Idle);
        assert!(w.progress().is_none());
        std::fs::write(snap.join("db.new"), [0u8; 300]).unwrap();
        std::fs::rename(snap.join("db.new"), snap.join("db")).unwrap();
        assert_eq!(w.observe(), SnapshotState::Idle);
        assert_eq!(
            w.progress().map(|p| (p.received, p.complete)),
            Some((300, true))
        );
    }

    /// The wait promote races a slow metrics page with: it lasts while a temporary file
    /// is in the snapshot directory and ends once etcd has renamed it.
    #[tokio::test]
    async fn until_not_receiving_ends_when_the_snapshot_lands() {
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("member").join("snap");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("tmp123456"), [0u8; 100]).unwrap();
        let learner = LocalLearner {
            manifest: PathBuf::from("/m/etcd.yaml"),
            peer_urls: vec!["https://10.0.0.2:2380".into()],
            metrics_urls: vec![],
            data_dir: Some(dir.path().to_path_buf()),
        };
        let member = MemberInfo {
            id: MemberId(1),
            name: String::new(),
            peer_urls: vec!["https://10.0.0.2:2380".into()],
            client_urls: vec![],
            is_learner: true,
        };
        let w = LocalWatch::new(learner, &member).unwrap();
        let poll = Duration::from_millis(2);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), w.until_not_receiving(poll))
                .await
                .is_err(),
            "returned while the snapshot was still arriving"
        );
        std::fs::rename(
            snap.join("tmp123456"),
            snap.join("0000000000000010.snap.db"),
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(10), w.until_not_receiving(poll))
            .await
            .expect("the landing ends the wait");
    }
}
