//! Day-2 maintenance of a running etcd cluster: defragmentation ([`defrag`]), alarms
//! ([`alarm`]) and leadership ([`leader`]).
//!
//! The rule throughout is the membership module's: never put quorum at risk without the
//! operator asking for it by name (`--force`). A member that defragments serves nothing
//! until it is done, so members are defragmented one at a time, each only while the
//! others keep quorum, and the cluster is checked again between two of them. Every wait
//! is bounded. Nothing here prints: long operations report [`Event`]s.

pub mod alarm;
pub mod defrag;
mod error;
pub mod leader;

use std::time::Duration;

use crate::membership::{Cluster, MemberId, MemberInfo, MemberStatus, Membership, RpcError};

pub use error::MaintenanceError;

pub type Result<T, E = MaintenanceError> = std::result::Result<T, E>;

/// What a maintenance operation is doing, for the binary to show. Reported in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The members in the order they will be defragmented.
    DefragPlan { order: Vec<String> },
    /// A member is not defragmented, and why.
    DefragSkipped { member: String, reason: String },
    /// `--force` overrode a refusal; what the operator accepted.
    Forced { what: String },
    /// The Defragment call was sent to this member.
    DefragStarted {
        id: MemberId,
        member: String,
        endpoint: String,
    },
    /// The member answered the Defragment call.
    DefragFinished {
        id: MemberId,
        member: String,
        took: Duration,
    },
    /// Waiting for the cluster to be healthy (and the member to catch up) before going on.
    WaitingForHealth { reason: String },
    /// The key history was compacted up to this revision.
    Compacted { revision: i64 },
    /// Leadership is being moved.
    MovingLeader { from: String, to: String },
    /// Leadership moved; the target is seen leading.
    LeaderMoved {
        from: String,
        to: String,
        took: Duration,
    },
    /// An alarm was deactivated.
    Disarmed { alarm: String, member: String },
}

/// The callback maintenance operations report to.
pub type Reporter<'a> = &'a mut (dyn FnMut(Event) + Send);

/// The member list with what every member says about itself, asked at one moment.
#[derive(Debug, Clone)]
pub struct Observed {
    pub membership: Membership,
    /// In the order of `membership.members`.
    pub statuses: Vec<std::result::Result<MemberStatus, RpcError>>,
    /// The leader the serving members agree on.
    pub leader: Option<MemberId>,
}

impl Observed {
    /// Asks for the member list (waiting out an election until `deadline`) and every
    /// member's Status.
    pub async fn collect<C: Cluster>(
        client: &C,
        deadline: tokio::time::Instant,
    ) -> Result<Observed> {
        let membership = client.member_list_until(deadline).await?;
        client.sync_endpoints(&membership)?;
        let statuses = client.statuses(&membership.members).await;
        let mut votes: Vec<(MemberId, usize)> = Vec::new();
        for s in statuses.iter().flatten().filter(|s| serving(s)) {
            match votes.iter_mut().find(|(id, _)| *id == s.leader) {
                Some((_, n)) => *n += 1,
                None => votes.push((s.leader, 1)),
            }
        }
        // The leader counts only when a majority of the voters name it: a member cut off
        // from the others may still name an old one.
        let voters = membership.voters().count();
        let leader = votes
            .iter()
            .max_by_key(|(_, n)| *n)
            .filter(|(_, n)| *n >= crate::membership::quorum(voters))
            .map(|(id, _)| *id);
        Ok(Observed {
            membership,
            statuses,
            leader,
        })
    }

    pub fn members(
        &self,
    ) -> impl Iterator<Item = (&MemberInfo, &std::result::Result<MemberStatus, RpcError>)> {
        self.membership.members.iter().zip(&self.statuses)
    }

    pub fn status_of(&self, id: MemberId) -> Option<&MemberStatus> {
        self.members()
            .find(|(m, _)| m.id == id)
            .and_then(|(_, s)| s.as_ref().ok())
    }

    /// Why a member is not serving, or `None` when it is.
    pub fn problem(&self, id: MemberId) -> Option<String> {
        let (m, s) = self.members().find(|(m, _)| m.id == id)?;
        member_problem(m, s)
    }

    /// The members that are not serving, with why: `(id, label, reason)`.
    pub fn down(&self) -> Vec<(MemberId, String, String)> {
        self.members()
            .filter_map(|(m, s)| member_problem(m, s).map(|why| (m.id, m.label(), why)))
            .collect()
    }

    /// The voters that serve, apart from `except`.
    pub fn serving_voters_except(&self, except: MemberId) -> usize {
        self.members()
            .filter(|(m, s)| !m.is_learner && m.id != except && member_problem(m, s).is_none())
            .count()
    }

    pub fn voters(&self) -> usize {
        self.membership.voters().count()
    }

    /// The highest committed index any member reports: what a member must have applied
    /// to have caught up.
    pub fn committed_index(&self) -> u64 {
        self.statuses
            .iter()
            .flatten()
            .map(|s| s.raft_index)
            .max()
            .unwrap_or(0)
    }
}

/// Answered Status, knows a leader, and reports nothing but alarms. An alarm is cluster
/// state every member repeats, not a fault of the member: NOSPACE is exactly when
/// defragmenting is needed.
pub fn serving(s: &MemberStatus) -> bool {
    s.leader.0 != 0 && s.errors.iter().all(|e| e.contains("alarm:"))
}

fn member_problem(
    m: &MemberInfo,
    s: &std::result::Result<MemberStatus, RpcError>,
) -> Option<String> {
    if !m.started() {
        return Some("has never started".to_string());
    }
    match s {
        Err(e) => Some(format!("does not answer: {e}")),
        Ok(s) if s.leader.0 == 0 => Some("knows no leader".to_string()),
        Ok(s) if !serving(s) => Some(
            s.errors
                .iter()
                .filter(|e| !e.contains("alarm:"))
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Ok(_) => None,
    }
}

/// `1.5 MiB`: sizes in reports and messages.
pub(crate) fn size(bytes: i64) -> String {
    crate::membership::status::human_bytes(bytes)
}

/// Go's duration syntax, to the millisecond.
pub(crate) fn secs(d: Duration) -> String {
    crate::config::GoDuration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

/// How often waits poll.
pub(crate) const POLL: Duration = Duration::from_millis(200);
