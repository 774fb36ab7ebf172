//! Changing a member's peer URLs (MemberUpdate), never a learner's.
//!
//! etcd before 3.5.31 and 3.6.12 replaced all of a member's raft attributes on
//! MemberUpdate, `IsLearner` included, with the request's `false`: the member list then
//! calls the learner a voter while raft still counts it as a learner, and the member can
//! be neither promoted nor trusted (etcd#21694; fixed by `UpdateRaftAttributes` in
//! `server/etcdserver/api/membership/cluster.go`, v3.5.31 and v3.6.12). Which etcd will
//! apply the change is not known in advance (any voter may serve it), so a learner is
//! refused on every version: promote it first, or remove it and join again.

use super::cluster::Cluster;
use super::{MembershipError, Result, Selector};

/// Sets the peer URLs of the member `selector` names. Refuses a learner.
pub async fn update_peer_urls<C: Cluster>(
    client: &C,
    selector: &Selector,
    peer_urls: &[String],
) -> Result<()> {
    let membership = client.member_list().await?;
    let Some(member) = selector.find(&membership.members)? else {
        return Err(MembershipError::MemberNotFound {
            selector: selector.to_string(),
        });
    };
    if member.is_learner {
        return Err(MembershipError::LearnerUpdate {
            member: member.label(),
            id: member.id,
        });
    }
    client
        .update_peer_urls(member.id, peer_urls)
        .await
        .map_err(|source| MembershipError::Rpc {
            op: "MemberUpdate",
            endpoint: client.endpoints().join(","),
            source,
        })
}
