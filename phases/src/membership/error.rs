use std::path::PathBuf;
use std::time::Duration;

use super::{member_label, MemberId};

/// Everything that can stop a membership operation.
///
/// Messages name the member (hex ID as etcdctl prints it), the endpoint or the file, and
/// say what to do next where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("failed to read the etcd {what} {}", path.display())]
    ReadTls {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("etcd endpoint {url:?} is not an https:// URL; this tool talks to etcd over TLS only, never in plaintext: give the member's https:// client URL (port 2379)")]
    NotHttps { url: String },

    #[error("the etcd client certificate {} {problem}", path.display())]
    ClientCertificate { path: PathBuf, problem: String },

    #[error("no etcd endpoints: pass --endpoints, set etcd.external.endpoints in the ClusterConfiguration, or pass --kubeconfig to discover them from the etcd Pods")]
    NoEndpoints,

    #[error("failed to discover the etcd endpoints from the API server: {message}")]
    Discovery { message: String },

    #[error("no etcd member answered on {endpoints}: {last_error}")]
    NoEndpointAnswered {
        endpoints: String,
        last_error: String,
    },

    #[error("the etcd cluster behind {endpoints} has no leader to answer (an election is under way, or quorum is lost): {last_error}")]
    NoLeader {
        endpoints: String,
        last_error: String,
    },

    #[error("{endpoint}: etcd learner mode is not supported by this etcd version ({version})")]
    UnsupportedVersion { endpoint: String, version: String },

    #[error("the etcd cluster has no quorum: {healthy} of {voters} voting members are healthy, {needed} are needed ({details})")]
    NoQuorum {
        voters: usize,
        healthy: usize,
        needed: usize,
        details: String,
    },

    #[error("{}", voters_down(down, version, *voters, *rule))]
    VotersDown {
        /// (ID, name, why it is down) of each voting member that did not answer.
        down: Vec<(MemberId, String, String)>,
        /// The etcd version that refuses the add.
        version: String,
        /// How many voting members the cluster has.
        voters: usize,
        /// The rule of that version.
        rule: super::version::AddRule,
    },

    #[error("the etcd member name {name:?} is already taken by member {id} with peer URLs [{}]; this node would join with peer URL {peer_url}. If this node replaces that member (re-imaged with the same name), rerun with --replace: it removes the member when it is down and its removal keeps quorum, then joins. Otherwise remove the stale member first (kubeadm-etcd phase etcd remove-member --id {id}) or choose another node name", peer_urls.join(","))]
    NameTaken {
        name: String,
        id: MemberId,
        peer_urls: Vec<String>,
        peer_url: String,
    },

    #[error("the etcd data directory {} {reason}; etcd would refuse to start with it or, worse, rejoin as the wrong member. Pass --wipe-data-dir to delete its contents", path.display())]
    ForeignDataDir { path: PathBuf, reason: String },

    #[error("failed to {action} the etcd data directory {}", path.display())]
    DataDir {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("no etcd member matches {selector}")]
    MemberNotFound { selector: String },

    #[error("{selector} matches several etcd members ({ids})")]
    Ambiguous { selector: String, ids: String },

    #[error("the learner {id} ({peer_url}) never started within {}: no etcd process has joined with that peer URL (is the static Pod running? check the kubelet and the etcd container's log)", secs(*waited))]
    NeverStarted {
        id: MemberId,
        peer_url: String,
        waited: Duration,
    },

    #[error("the learner {} started but is stuck at {percent}% of the leader's log after {}: it has not caught up enough to be promoted (etcd needs 90%); a large database may need a longer --timeout{}", member_label(*id, name), secs(*waited), restarted_note(*restarts))]
    Stuck {
        id: MemberId,
        name: String,
        percent: u32,
        waited: Duration,
        /// How often the learner was seen to restart during the wait.
        restarts: u32,
    },

    #[error("refusing to promote the learner {}: it does not answer on its client URL {url} ({reason}). etcd would promote it anyway if it caught up before going down, adding a voting member that is down and, on a one-member cluster, losing quorum{}", member_label(*id, name), restarted_note(*restarts))]
    Unreachable {
        id: MemberId,
        name: String,
        url: String,
        reason: String,
        waited: Duration,
        /// How often the learner was seen to restart during the wait.
        restarts: u32,
    },

    #[error("the learner {} runs (its metrics listener answers with its member ID) but has received nothing from the leader in {}: no log entry committed, no snapshot bytes in its data directory. A learner joining a cluster with history is sent the database as a snapshot, over a connection the leader opens to the learner's peer URL {peer_url}: check that the other members reach that address (a firewall, a --listen-peer-urls that does not cover it, or a peer certificate without it), and look in the leader's log for \"failed to send database snapshot\"", member_label(*id, name), secs(*waited))]
    Starved {
        id: MemberId,
        name: String,
        peer_url: String,
        waited: Duration,
    },

    #[error("refusing to replace member {} (--replace): {reason}. Nothing was changed", member_label(*id, name))]
    ReplaceRefused {
        id: MemberId,
        name: String,
        /// Which check refused, with what it saw.
        reason: String,
    },

    #[error("the learner {} made no progress for {} (--stall-timeout): {cause}", member_label(*id, name), secs(*stalled_for))]
    Stalled {
        id: MemberId,
        name: String,
        stalled_for: Duration,
        /// What the wait saw: never started, stuck, not answering.
        cause: Box<MembershipError>,
    },

    #[error("{cause}. Removed the learner {id} from the etcd cluster (--rollback-on-timeout), so that it no longer blocks the next join (etcd takes one learner at a time: \"too many learner members\"); quorum was not affected, a learner has no vote. Fix the node (is its static Pod running? the kubelet, the image, the etcd container's log) and run the join again{}", rejoin_note(*started))]
    RolledBack {
        id: MemberId,
        /// Whether the learner had started: its data directory then belongs to the
        /// removed member.
        started: bool,
        cause: Box<MembershipError>,
    },

    #[error("{cause}. Not rolled back (--rollback-on-timeout): {why}")]
    NotRolledBack {
        cause: Box<MembershipError>,
        why: String,
    },

    #[error("the learner {id} was removed from the cluster while waiting to promote it")]
    LearnerRemoved { id: MemberId },

    #[error("refusing to {action} member {}: {detail}. Pass --force to do it anyway", member_label(*id, name))]
    QuorumAtRisk {
        action: &'static str,
        id: MemberId,
        name: String,
        detail: String,
    },

    #[error("refusing to change the peer URLs of the learner {member}: etcd before 3.5.31 and 3.6.12 turns a learner into a voter in its member list on MemberUpdate while raft still counts it as a learner (etcd#21694). Promote it first (kubeadm-etcd phase etcd promote --id {id}), or remove it (kubeadm-etcd phase etcd remove-member --id {id}) and join again")]
    LearnerUpdate { member: String, id: MemberId },

    #[error("refusing to remove {member}: it leads the cluster, and moving leadership to another voting member first failed, so its removal would cost an election with no leader until it ends. Pass --force to remove it anyway")]
    LeaderTransfer {
        member: String,
        #[source]
        source: Box<crate::maintenance::MaintenanceError>,
    },

    #[error("timed out after {} waiting to {what}: {last_error}", secs(*waited))]
    Timeout {
        what: String,
        waited: Duration,
        last_error: String,
    },

    #[error("{op} on {endpoint} failed")]
    Rpc {
        op: &'static str,
        endpoint: String,
        #[source]
        source: super::RpcError,
    },

    // Boxed: both embed the configuration's large error, which would make every
    // `Result` of this module as large.
    #[error(transparent)]
    Manifest(Box<crate::manifest::ManifestError>),

    #[error(transparent)]
    Config(Box<crate::config::ConfigError>),
}

impl From<crate::manifest::ManifestError> for MembershipError {
    fn from(e: crate::manifest::ManifestError) -> Self {
        Self::Manifest(Box::new(e))
    }
}

impl From<crate::config::ConfigError> for MembershipError {
    fn from(e: crate::config::ConfigError) -> Self {
        Self::Config(Box::new(e))
    }
}

impl MembershipError {
    /// The learner this failure left behind, when there is one to roll back: the caller
    /// prints the `remove-member` command for it.
    pub fn rollback_id(&self) -> Option<MemberId> {
        match self {
            Self::NeverStarted { id, .. }
            | Self::Stuck { id, .. }
            | Self::Unreachable { id, .. }
            | Self::Starved { id, .. }
            | Self::Stalled { id, .. } => Some(*id),
            Self::NotRolledBack { cause, .. } => cause.rollback_id(),
            _ => None,
        }
    }
}

/// What a rejoin after a rollback needs: a learner that started wrote its data
/// directory as the member that is now removed.
fn rejoin_note(started: bool) -> &'static str {
    if started {
        " with --wipe-data-dir: the learner had started, so this node's data directory belongs to the removed member"
    } else {
        ""
    }
}

/// Said when a learner restarted while promote waited: each restart starts its catch-up
/// over, and the usual cause is the kubelet's startup probe.
fn restarted_note(restarts: u32) -> String {
    if restarts == 0 {
        return String::new();
    }
    format!(
        ". The learner restarted {restarts} time{} during the wait, and each restart starts its catch-up over: on etcd 3.5.19 and later /readyz answers 503 while a member is a learner, so a kubelet whose startup probe gives up before the promotion (failureThreshold x periodSeconds from timeouts.controlPlaneComponentHealthCheck) kills it. Rewrite its manifest with `phase etcd join-learner` (its startup probe outlasts the promotion), or raise timeouts.controlPlaneComponentHealthCheck above --timeout",
        if restarts == 1 { "" } else { "s" }
    )
}

fn voters_down(
    down: &[(MemberId, String, String)],
    version: &str,
    voters: usize,
    rule: super::version::AddRule,
) -> String {
    let who: Vec<String> = down
        .iter()
        .map(|(id, name, reason)| {
            if *name == id.to_string() {
                format!("{id} ({reason})")
            } else {
                format!("{id} ({name}: {reason})")
            }
        })
        .collect();
    let remove: Vec<String> = down
        .iter()
        .map(|(id, _, _)| format!("`kubeadm-etcd phase etcd remove-member --id {id}`"))
        .collect();
    let (members, are, them) = if down.len() == 1 {
        ("member", "is", "it")
    } else {
        ("members", "are", "them")
    };
    format!(
        "refusing to add a member while voting {members} {} {are} down: etcd {version} {}, and {} of {voters} answer. Start {them} again, or remove {them} first with {}, then rerun the join",
        who.join(", "),
        rule.describe(voters),
        voters - down.len(),
        remove.join(" and ")
    )
}

fn secs(d: Duration) -> String {
    crate::config::GoDuration(Duration::from_millis(d.as_millis() as u64)).to_string()
}
