use std::path::PathBuf;

use crate::manifest::ManifestError;
use crate::membership::{MemberId, MembershipError};
use crate::snapshot::SnapshotError;

/// etcd's procedure for going back a minor (3.6+: `etcdctl downgrade validate|enable`,
/// then members replaced one by one), named in every downgrade refusal.
pub const DOWNGRADE_DOC: &str = "https://etcd.io/docs/v3.6/downgrades/downgrade_3_6/";

/// Everything that stops `upgrade etcd`. Every refusal in preflight comes before any
/// change; messages name the member (name and hex ID) and the release to move it to.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeEtcdError {
    #[error(transparent)]
    Membership(#[from] MembershipError),

    #[error(transparent)]
    Snapshot(#[from] SnapshotError),

    #[error(transparent)]
    Manifest(#[from] Box<ManifestError>),

    #[error("invalid target etcd version {given:?}: {reason}")]
    Target { given: String, reason: String },

    #[error("no member of the cluster has this node's peer URL {peer_url}; `upgrade etcd` upgrades this node's own member (members: {members})")]
    NotAMember { peer_url: String, members: String },

    #[error("member {name} ({id}) is a learner: a join is in flight; finish it (phase etcd promote) or roll it back (phase etcd remove-member --id {id}) before upgrading")]
    LearnerInFlight { id: MemberId, name: String },

    #[error(
        "refusing to upgrade to etcd 3.7: member {name} ({id}) reports storage version {} (etcd \
         moves it to 3.6 a few seconds after every member runs 3.6 and the cluster version is \
         3.6); finish the move to 3.6 on every member, then retry",
        if storage_version.is_empty() { "none".to_string() } else { format!("{storage_version:?}") }
    )]
    StorageVersionBehind {
        id: MemberId,
        name: String,
        storage_version: String,
    },

    #[error("{}", voters_down(down))]
    VotersDown {
        down: Vec<(MemberId, String, String)>,
    },

    #[error("member {name} ({id}) reports etcd version {version:?}, which this tool cannot read")]
    VersionUnknown {
        id: MemberId,
        name: String,
        version: String,
    },

    #[error("refusing to downgrade member {name} ({id}) from etcd {from} to {to}: etcd does not support going back by replacing the binary; follow etcd's downgrade procedure ({DOWNGRADE_DOC}: etcdctl downgrade validate, then enable, then replace the members one by one)")]
    Downgrade {
        id: MemberId,
        name: String,
        from: String,
        to: String,
    },

    #[error("refusing to upgrade member {name} ({id}) from etcd {from} to {to}: etcd upgrades one minor at a time; upgrade every member to the newest {next} release first, then to {to}")]
    MinorSkipped {
        id: MemberId,
        name: String,
        from: String,
        to: String,
        next: String,
    },

    #[error("refusing to upgrade to etcd {to}: {}; upgrade {} to {minimum} or newer first ({why})", members_below(members), if members.len() == 1 { "it" } else { "them" })]
    BelowMinimum {
        to: String,
        minimum: String,
        members: Vec<(MemberId, String, String)>,
        why: &'static str,
    },

    #[error("refusing to upgrade to etcd {to}: member {name} ({id}) runs etcd {version}, more than one minor behind; upgrade it to the newest {needed} release first")]
    MemberBehind {
        id: MemberId,
        name: String,
        version: String,
        to: String,
        needed: String,
    },

    #[error("cannot check what etcd {to} would replay from member {name} ({id})'s data directory: {source}; run this on that member's node, as a user that can read its data directory (root)")]
    DataDirUnreadable {
        id: MemberId,
        name: String,
        to: String,
        source: super::wal::WalError,
    },

    #[error(transparent)]
    V2RequestsBefore37(Box<V2RequestsBefore37>),

    #[error("refusing to upgrade member {name} ({id}) to etcd {to}: {what}. etcd 3.6 replays only the v2 requests that set a member's attributes or the cluster version and refuses any other v2 content (\"detected disallowed v2 WAL\", \"detected disallowed custom content in v2store\"; etcdutl check v2store of 3.5.32 or newer reports the same): this cluster used etcd's v2 API (--enable-v2). Move that data to the v3 API and delete it from v2 (etcd's v2 migration guide, https://etcd.io/docs/v3.5/upgrades/upgrade_3_6/), wait for the member's next raft snapshot, then rerun.")]
    V2ContentBefore36 {
        id: MemberId,
        name: String,
        to: String,
        what: String,
    },

    #[error("this node's etcd manifest {}: {reason}", path.display())]
    ManifestUnusable { path: PathBuf, reason: String },

    #[error("failed to move the leadership from this member ({from}) to {to}: {message}; nothing was changed, run again")]
    MoveLeader {
        from: MemberId,
        to: MemberId,
        message: String,
    },

    #[error("the upgrade to etcd {to} failed: {reason}. The previous manifest was put back (the failed one is {}) and the member is running etcd {from} again. Nothing was lost; the snapshot taken before the change, {}, is there to restore from (phase etcd snapshot restore) if the data was damaged.", failed_manifest.display(), snapshot.display())]
    /// `reason` names the member.
    RolledBack {
        from: String,
        to: String,
        reason: String,
        snapshot: PathBuf,
        failed_manifest: PathBuf,
    },

    #[error("the upgrade to etcd {to} failed ({reason}), and after the previous manifest was put back the member did not return: {rollback}. Its old manifest is {}; the snapshot taken before the change is {}: if the member's data is damaged, remove the member, and rejoin this node (join-learner, promote), or restore the cluster from it (phase etcd snapshot restore).", old_manifest.display(), snapshot.display())]
    RollbackFailed {
        to: String,
        reason: String,
        rollback: String,
        snapshot: PathBuf,
        old_manifest: PathBuf,
    },
}

/// etcd 3.5's v2 requests still to be replayed, which etcd 3.7 cannot read.
#[derive(Debug, thiserror::Error)]
#[error("refusing to upgrade member {name} ({id}) to etcd {to}: its write-ahead log ({}) still holds {count} etcd v2 request(s) after its last raft snapshot (index {snapshot_index}), the first {first}, written while members ran etcd 3.5. etcd 3.7 no longer reads v2 requests (etcd PR #21263) and would crash replaying them at start. They are no longer replayed once this member takes its next raft snapshot, after --snapshot-count ({snapshot_count}) entries past index {snapshot_index}: about {remaining} more writes (applied index now {applied}). Let the cluster run until then (etcd 3.6 keeps serving meanwhile) and rerun.", wal_dir.display())]
pub struct V2RequestsBefore37 {
    pub id: MemberId,
    pub name: String,
    pub to: String,
    pub wal_dir: PathBuf,
    pub count: usize,
    pub first: String,
    pub snapshot_index: u64,
    pub snapshot_count: u64,
    pub applied: u64,
    pub remaining: u64,
}

impl From<ManifestError> for UpgradeEtcdError {
    fn from(e: ManifestError) -> Self {
        Self::Manifest(Box::new(e))
    }
}

impl From<crate::config::ConfigError> for UpgradeEtcdError {
    fn from(e: crate::config::ConfigError) -> Self {
        Self::Manifest(Box::new(ManifestError::from(e)))
    }
}

fn voters_down(down: &[(MemberId, String, String)]) -> String {
    let list = down
        .iter()
        .map(|(id, name, why)| format!("{name} ({id}): {why}"))
        .collect::<Vec<_>>()
        .join("; ");
    let first = down
        .first()
        .map(|(id, _, _)| id.to_string())
        .unwrap_or_default();
    format!(
        "refusing to upgrade while a voting member is down ({list}): restarting this member would leave the cluster one more failure from losing quorum; bring it back, or remove it (phase etcd remove-member --id {first}) first"
    )
}

fn members_below(members: &[(MemberId, String, String)]) -> String {
    members
        .iter()
        .map(|(id, name, v)| format!("member {name} ({id}) runs etcd {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
