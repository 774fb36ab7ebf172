use std::time::Duration;

use crate::membership::{MembershipError, RpcError};

use super::secs;

/// Everything that stops a maintenance operation. Messages name the member (hex ID and
/// name), say what etcd or the cluster would do, and what to run instead.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Membership(#[from] MembershipError),

    #[error("refusing to defragment while {} {} down: {}. A member that defragments serves nothing until it is done, and with {} down as well the cluster may lose quorum or its last up-to-date copy for that time. Start {} again (or remove {} with `kubeadm-etcd phase etcd remove-member`), or pass --force to defragment the members that answer anyway", plural(down.len(), "member", "members"), if down.len() == 1 { "is" } else { "are" }, list(down), if down.len() == 1 { "it" } else { "them" }, if down.len() == 1 { "it" } else { "them" }, if down.len() == 1 { "it" } else { "them" })]
    MembersDown {
        /// `(label, why)` of every member that does not serve.
        down: Vec<(String, String)>,
    },

    #[error("refusing to defragment {member}: while it defragments it serves nothing, and the other voting members that serve ({others} of {voters}) are not a quorum ({needed} needed), so the cluster would stop taking writes until it is done. Pass --force to accept that pause")]
    QuorumAtRisk {
        member: String,
        others: usize,
        voters: usize,
        needed: usize,
    },

    #[error("the etcd cluster did not become healthy within {} {after}: {problem}; stopping before the next member (rerun once it is healthy: members already done are quick to do again)", secs(*waited))]
    Unhealthy {
        after: String,
        problem: String,
        waited: Duration,
    },

    #[error("defragmenting {member} failed")]
    DefragFailed {
        member: String,
        #[source]
        source: RpcError,
    },

    #[error("{member} did not finish defragmenting within {} (--timeout): etcd keeps going when the client gives up, so it may still be defragmenting; no other member is touched. Wait until its log says \"finished defragment\" (or its Status answers again) before rerunning, with a longer --timeout for a database this size ({db_size})", secs(*waited))]
    DefragTimedOut {
        member: String,
        waited: Duration,
        db_size: String,
    },

    #[error("no etcd member matches {selector}")]
    NotFound { selector: String },

    #[error("cannot move leadership to {target}: {why}")]
    BadTarget { target: String, why: String },

    #[error("the etcd cluster has no leader to move leadership from (an election is under way, or quorum is lost): {detail}")]
    NoLeader { detail: String },

    #[error("leadership did not move to {target} within {}: {detail}", secs(*waited))]
    LeaderNotMoved {
        target: String,
        waited: Duration,
        detail: String,
    },

    #[error("{op} on {endpoint} failed")]
    Rpc {
        op: &'static str,
        endpoint: String,
        #[source]
        source: RpcError,
    },

    #[error("refusing to disarm the CORRUPT alarm of {members}: it means members hold different data, and disarming it lets the cluster serve (and replicate) whatever the diverged member holds. Never disarm it blindly: find the member etcd named in its log (\"found data inconsistency with peers\"), replace it (remove-member, empty its data directory, join-learner and promote) or restore the cluster from a snapshot taken before the corruption, check that `etcdctl endpoint hashkv --cluster` agrees on every member, and only then disarm with --corrupt-resolved")]
    CorruptNotResolved { members: String },

    #[error("refusing to disarm NOSPACE: {why}")]
    NoSpaceNotResolved { why: String },
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        one.to_string()
    } else {
        format!("{n} {many}")
    }
}

fn list(items: &[(String, String)]) -> String {
    items
        .iter()
        .map(|(who, why)| format!("{who} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}
