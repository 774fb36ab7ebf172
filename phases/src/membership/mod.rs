//! Learner-based etcd membership: adding a member without ever putting quorum at risk.
//!
//! A new member joins as a raft *learner* ([`join`]), which receives the log but does not
//! vote, so a learner that never starts or cannot keep up costs the cluster nothing. Once
//! it has caught up it is promoted to a voter ([`promote`]); only then does it count
//! towards quorum, and only after this tool has fresh evidence that it is alive
//! ([`liveness`]). [`status`], [`health`] and [`remove`] inspect the cluster and roll a
//! learner (or, carefully, a voter) back.
//!
//! Every operation is idempotent: a member is recognised by its peer URL, so running a
//! step again after a crash, or after it succeeded, converges instead of adding twice.
//! Every wait is bounded. Nothing here prints; long operations report typed [`Event`]s to
//! a callback and the binary decides how to show them.
//!
//! Member IDs print in hex, as etcdctl prints them.

mod client;
pub mod cluster;
pub mod datadir;
pub mod discovery;
mod error;
pub mod health;
pub mod join;
pub mod liveness;
mod peers;
pub mod promote;
pub mod remove;
pub mod replace;
pub mod status;
pub mod update;
pub mod version;

/// A scripted etcd cluster for tests of the membership loops (see [`cluster`]).
#[cfg(any(test, feature = "testing"))]
pub mod fake;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use client::{
    Alarm, AlarmKind, EtcdClient, EtcdErrorKind, EtcdTls, MemberStatus, Membership, RpcError,
    DEFAULT_RPC_TIMEOUT, MOVE_LEADER_RPC_TIMEOUT,
};
pub use cluster::Cluster;
pub use error::MembershipError;

pub type Result<T, E = MembershipError> = std::result::Result<T, E>;

/// How long a membership operation waits by default (`--timeout`): the configuration's
/// `timeouts.etcdAPICall` (2m by default) but never less than this. A learner receives the
/// whole database as a snapshot before it can be promoted; etcd assumes 100 MiB/s for a
/// transfer, so an 8 GiB database (etcd's suggested maximum) needs well over a minute
/// before applying anything, on a slow disk several. kubeadm's 2m was repeatedly too short
/// (kubeadm#2997), so the default is generous and every wait reports its progress.
pub const MIN_DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The default `--timeout` for a configuration's `timeouts.etcdAPICall`.
pub fn default_timeout(etcd_api_call: Duration) -> Duration {
    etcd_api_call.max(MIN_DEFAULT_TIMEOUT)
}

/// An etcd member ID. Prints and parses in hex like etcdctl (`8e9e05c52164694d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MemberId(pub u64);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// How messages name a member: `8e9e05c52164694d (node2)`, or only the hex ID while it has
/// no name (a member that has not started, whose display name is its ID).
pub fn member_label(id: MemberId, name: &str) -> String {
    if name.is_empty() || name == id.to_string() {
        id.to_string()
    } else {
        format!("{id} ({name})")
    }
}

impl FromStr for MemberId {
    type Err = String;

    /// Accepts etcdctl's hex, with or without `0x`, in either case.
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.trim().trim_start_matches("0x").trim_start_matches("0X");
        if digits.is_empty() || digits.len() > 16 {
            return Err(format!(
                "invalid member ID {s:?}: expected up to 16 hex digits, as etcdctl prints it"
            ));
        }
        u64::from_str_radix(digits, 16).map(MemberId).map_err(|_| {
            format!("invalid member ID {s:?}: expected hex digits, as etcdctl prints it")
        })
    }
}

impl serde::Serialize for MemberId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A member as the member list shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    pub id: MemberId,
    /// Empty until the member has started and published its attributes.
    pub name: String,
    pub peer_urls: Vec<String>,
    /// Empty until the member has started.
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl MemberInfo {
    /// etcd's `Member.IsStarted()`: the member has published its name.
    pub fn started(&self) -> bool {
        !self.name.is_empty()
    }

    /// The name, or kubeadm's name for a member that has not started: its hex ID.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            self.id.to_string()
        } else {
            self.name.clone()
        }
    }

    /// [`member_label`]: `8e9e05c52164694d (node2)`.
    pub fn label(&self) -> String {
        member_label(self.id, &self.name)
    }

    pub fn has_peer_url(&self, url: &str) -> bool {
        self.peer_urls.iter().any(|u| same_url(u, url))
    }

    pub fn role(&self) -> &'static str {
        if self.is_learner {
            "learner"
        } else {
            "voter"
        }
    }
}

/// URLs compare without a trailing slash: etcd itself normalises them that way.
pub(crate) fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// raft's majority: voters / 2 + 1.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// Which member an operation is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Id(MemberId),
    /// A started member's name. A learner that has not started has no name yet.
    Name(String),
    /// This node's peer URL, from its advertise address.
    PeerUrl(String),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Id(id) => write!(f, "member ID {id}"),
            Selector::Name(name) => write!(f, "member name {name:?}"),
            Selector::PeerUrl(url) => write!(f, "peer URL {url}"),
        }
    }
}

impl Selector {
    /// The member this selector names, if any. A name shared by several members is an
    /// error rather than a guess.
    pub fn find<'m>(&self, members: &'m [MemberInfo]) -> Result<Option<&'m MemberInfo>> {
        let matches: Vec<&MemberInfo> = members
            .iter()
            .filter(|m| match self {
                Selector::Id(id) => m.id == *id,
                Selector::Name(name) => m.name == *name,
                Selector::PeerUrl(url) => m.has_peer_url(url),
            })
            .collect();
        match matches.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            many => Err(MembershipError::Ambiguous {
                selector: self.to_string(),
                ids: many
                    .iter()
                    .map(|m| m.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

/// Why an operation is waiting and retrying rather than failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryReason {
    /// "too many learner members in cluster": another join is in flight.
    OtherLearner { id: MemberId, name: String },
    /// "unhealthy cluster": etcd's strict reconfiguration check refuses for the moment,
    /// as it does for 5 s after the serving member (re)connected to a voter, e.g. right
    /// after a promotion. A refusal that lasts (voters down) is not retried: the join
    /// preflight predicts it and refuses at once.
    Unhealthy,
    /// No member answered or the call timed out; the call may have landed.
    Unavailable,
    /// The learner has not caught up enough for etcd (ErrLearnerNotReady).
    LearnerNotReady,
}

/// What a long operation is doing, for progress display. Reported in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The client URLs in use (voters only).
    Endpoints { endpoints: Vec<String> },
    /// Quorum is there, and how many voters are healthy.
    ClusterHealthy {
        voters: usize,
        healthy: usize,
        learners: usize,
    },
    /// A voter does not answer. Not fatal while quorum holds, but etcd before 3.5.30 and
    /// 3.6.11 refuses to add any member until it is back or removed.
    VoterDown {
        id: MemberId,
        name: String,
        reason: String,
    },
    /// A data directory from another cluster was wiped (`--wipe-data-dir`).
    DataDirWiped {
        path: std::path::PathBuf,
        reason: String,
    },
    /// A member with this peer URL already existed and is reused (a rerun converges).
    MemberReused {
        id: MemberId,
        is_learner: bool,
        started: bool,
    },
    /// `--replace`: the member that stood for this node was down and has been removed
    /// (in a dry run: would be). `evidence` says why it counts as down.
    StaleMemberRemoved {
        id: MemberId,
        name: String,
        was_learner: bool,
        evidence: String,
        dry_run: bool,
    },
    /// The member was added as a learner.
    LearnerAdded { id: MemberId },
    /// A call is retried; `message` is etcd's answer.
    Retrying {
        reason: RetryReason,
        message: String,
        elapsed: Duration,
    },
    /// Waiting for the learner to start (publish its name).
    WaitingForStart { id: MemberId, elapsed: Duration },
    /// The learner has started.
    Started {
        id: MemberId,
        name: String,
        client_url: String,
    },
    /// Catch-up progress: the learner's applied index against the leader's raft index.
    Progress {
        id: MemberId,
        applied: u64,
        leader_index: u64,
        percent: f64,
    },
    /// A database snapshot streaming into the learner, as its data directory on this node
    /// shows it: bytes written so far against the leader's database size (`total`; 0
    /// when the leader did not say). `complete`: received in full, being applied.
    SnapshotProgress {
        id: MemberId,
        received: u64,
        total: u64,
        bytes_per_sec: Option<f64>,
        complete: bool,
    },
    /// The learner stopped answering on its client URL; it will not be promoted while
    /// that lasts.
    LearnerNotAnswering {
        id: MemberId,
        url: String,
        reason: String,
    },
    /// The member is a voter already; nothing to promote.
    AlreadyVoter { id: MemberId },
    /// The member was promoted. `after_error`: the call failed but the promotion landed.
    Promoted {
        id: MemberId,
        after_error: bool,
        since_ready: Duration,
    },
    /// Waiting for the cluster to be healthy with the new voter.
    WaitingForHealth { voters: usize, healthy: usize },
}

/// The callback long operations report to.
pub type Reporter<'a> = &'a mut (dyn FnMut(Event) + Send);

/// A reporter that drops every event.
pub fn ignore_events() -> impl FnMut(Event) + Send {
    |_| {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_hex_like_etcdctl() {
        let id: MemberId = "8e9e05c52164694d".parse().unwrap();
        assert_eq!(id.0, 0x8e9e05c52164694d);
        assert_eq!(id.to_string(), "8e9e05c52164694d");
        assert_eq!("0x1F".parse::<MemberId>().unwrap(), MemberId(31));
        assert!("xyz".parse::<MemberId>().is_err());
        assert!("".parse::<MemberId>().is_err());
        assert!("11112222333344445".parse::<MemberId>().is_err());
    }

    #[test]
    fn quorum_is_a_majority() {
        assert_eq!([1, 2, 3, 4, 5].map(quorum), [1, 2, 2, 3, 3]);
    }

    #[test]
    fn default_timeout_is_generous() {
        assert_eq!(
            default_timeout(Duration::from_secs(120)),
            Duration::from_secs(600)
        );
        assert_eq!(
            default_timeout(Duration::from_secs(900)),
            Duration::from_secs(900)
        );
    }
}
