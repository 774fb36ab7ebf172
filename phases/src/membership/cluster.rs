//! The etcd operations the membership logic is built on, as a trait: implemented by the
//! real client ([`super::EtcdClient`]) and, for tests, by a scripted fake
//! (`membership::fake`, behind the `testing` feature), so that every transition of the
//! join, promote and remove loops can be driven on a paused clock, including the ones
//! real etcd cannot be made to produce on demand.
//!
//! The futures are `Send`: the phases run them on a multi-threaded runtime and tests
//! spawn them.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::{MemberId, MemberInfo, MemberStatus, Membership, MembershipError, Result, RpcError};

/// An etcd cluster as the membership logic talks to it.
pub trait Cluster: Send + Sync {
    /// The client URLs cluster calls go to.
    fn endpoints(&self) -> Vec<String>;

    /// kubeadm's `Sync()`: send later cluster calls to the started voters' client URLs.
    fn sync_endpoints(&self, membership: &Membership) -> Result<()>;

    /// The member list as the cluster has agreed on it (needs a leader).
    fn member_list(&self) -> impl Future<Output = Result<Membership>> + Send;

    /// The member list as whichever endpoint answers first knows it, even without a
    /// leader (a serializable read).
    fn member_list_local(&self) -> impl Future<Output = Result<Membership>> + Send;

    /// [`member_list`](Self::member_list), waiting until `deadline` while the cluster has
    /// no leader: an election takes a second or two, and a phase that starts during one
    /// (a join right after a leader died) must not fail for it. Any other error is final.
    fn member_list_until(
        &self,
        deadline: Instant,
    ) -> impl Future<Output = Result<Membership>> + Send {
        async move {
            const ELECTION_POLL: Duration = Duration::from_millis(250);
            loop {
                match self.member_list().await {
                    Err(MembershipError::NoLeader { .. })
                        if Instant::now() + ELECTION_POLL < deadline =>
                    {
                        tokio::time::sleep(ELECTION_POLL).await
                    }
                    other => return other,
                }
            }
        }
    }

    /// The Status RPC on one member, which learners serve too.
    fn status(&self, url: &str) -> impl Future<Output = Result<MemberStatus, RpcError>> + Send;

    /// Whether the member at `url` is alive and serving. A learner's RPC gate refuses
    /// the question at once without touching its backend, which counts as an answer: a
    /// learner busy applying a large log answers this where Status keeps it waiting.
    fn answers(&self, url: &str) -> impl Future<Output = Result<(), RpcError>> + Send;

    /// Status of every member on its client URLs, in the order of `members`, all asked
    /// at once. Members that have not started get an error.
    fn statuses(
        &self,
        members: &[MemberInfo],
    ) -> impl Future<Output = Vec<Result<MemberStatus, RpcError>>> + Send;

    /// The members the member at `url` has an active raft connection to, as it reports
    /// them (its `etcd_network_active_peers` gauge, see `membership::peers`). A cluster
    /// that cannot tell says so, and `--replace` then refuses.
    fn active_peers(
        &self,
        url: &str,
    ) -> impl Future<Output = Result<Vec<MemberId>, RpcError>> + Send {
        let url = url.to_string();
        async move {
            Err(RpcError {
                kind: super::EtcdErrorKind::Other,
                message: format!("{url}: this cluster does not report peer connections"),
            })
        }
    }

    /// MemberAdd with `isLearner`. Returns the new member's ID.
    fn add_learner(
        &self,
        peer_url: &str,
    ) -> impl Future<Output = Result<MemberId, RpcError>> + Send;

    /// MemberPromote.
    fn promote(&self, id: MemberId) -> impl Future<Output = Result<(), RpcError>> + Send;

    /// MemberRemove.
    fn remove(&self, id: MemberId) -> impl Future<Output = Result<(), RpcError>> + Send;

    /// MemberUpdate (peer URLs), unguarded. Call it only through
    /// [`super::update::update_peer_urls`], which refuses learners.
    fn update_peer_urls(
        &self,
        id: MemberId,
        peer_urls: &[String],
    ) -> impl Future<Output = Result<(), RpcError>> + Send;

    /// MoveLeader, sent to the current leader at `leader_url`; answered once `target`
    /// leads.
    fn move_leader(
        &self,
        leader_url: &str,
        target: MemberId,
    ) -> impl Future<Output = Result<(), RpcError>> + Send;
}
