//! A scripted etcd cluster: the [`Cluster`] seam's stand-in for real etcd in tests.
//!
//! It keeps a small model of a cluster (members, who leads, how far each member's log
//! goes, who is up) and answers every call from it as etcd would, with etcd's own error
//! messages. Tests change the model at points in time ([`FakeCluster::at`], on a paused
//! tokio clock these cost no wall time) and can make the next calls of an operation fail
//! ([`FakeCluster::fail_next`]), which covers the transitions real etcd cannot be made to
//! produce on demand: a Status that is slow, a promotion whose answer is lost, an election
//! in the middle of a promotion.
//!
//! The rules that decide etcd's answers (the add check, the learner limit, the promotion
//! readiness, MemberUpdate on a learner) are written here from etcd's source on purpose,
//! independently of the predictions the library makes from them: a test then checks the
//! prediction against the rule, not against itself.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::cluster::Cluster;
use super::version::parse_etcd_version;
use super::{
    quorum, EtcdErrorKind, MemberId, MemberInfo, MemberStatus, Membership, MembershipError, Result,
    RpcError, DEFAULT_RPC_TIMEOUT,
};

/// One member of the model.
#[derive(Debug, Clone)]
pub struct FakeMember {
    /// As the member list shows it.
    pub info: MemberInfo,
    /// What Status reports (`3.5.30`).
    pub version: String,
    /// Its process runs and answers on its client URL.
    pub up: bool,
    /// How long Status takes (a member busy applying a large log). From the client's RPC
    /// timeout on, Status times out.
    pub status_delay: Duration,
    /// Status is refused by the learner's RPC gate ("rpc not supported for learner")
    /// while the member is a learner.
    pub status_refused: bool,
    /// Its committed index (a learner's log, as far as it goes).
    pub raft_index: u64,
    pub applied_index: u64,
    /// The leader it reports instead of the cluster's (`MemberId(0)`: none).
    pub leader_override: Option<MemberId>,
    /// The serving member has been connected to it for 5 s (etcd's add check).
    pub connected: bool,
    /// Errors its Status reports besides "no leader" (alarms).
    pub errors: Vec<String>,
    pub storage_version: String,
    pub db_size: i64,
    pub db_size_in_use: i64,
    pub db_size_quota: i64,
}

/// An operation whose next answers can be scripted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    AddLearner,
    Promote,
    Remove,
    UpdatePeerUrls,
}

/// A membership change the fake was asked for, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    AddLearner { peer_url: String },
    Promote { id: MemberId },
    Remove { id: MemberId },
    UpdatePeerUrls { id: MemberId, was_learner: bool },
}

#[derive(Debug, Clone)]
struct Injected {
    error: RpcError,
    /// The change lands before the error is returned (a lost answer).
    apply: bool,
}

/// The model. Tests change it through [`FakeCluster::with`] and [`FakeCluster::at`].
#[derive(Debug)]
pub struct FakeState {
    pub cluster_id: u64,
    pub members: Vec<FakeMember>,
    /// `None` during an election or without quorum.
    pub leader: Option<MemberId>,
    pub term: u64,
    /// `--max-learners` (etcd 3.6 and newer; 3.4 and 3.5 allow 1 whatever this says).
    pub max_learners: usize,
    pub rpc_timeout: Duration,
    pub endpoints: Vec<String>,
    /// Every membership change asked for.
    pub calls: Vec<Call>,
    injected: HashMap<Op, VecDeque<Injected>>,
    next_id: u64,
}

/// A handle on the model; clones share it.
#[derive(Debug, Clone)]
pub struct FakeCluster {
    state: Arc<Mutex<FakeState>>,
    created: Instant,
}

/// The client URL of the n-th node (`https://10.0.0.<n+1>:2379`).
pub fn client_url(n: usize) -> String {
    format!("https://10.0.0.{}:2379", n + 1)
}

/// The peer URL of the n-th node.
pub fn peer_url(n: usize) -> String {
    format!("https://10.0.0.{}:2380", n + 1)
}

/// The ID the n-th node's member gets (`a0`, `a1`, ...).
pub fn node_id(n: usize) -> MemberId {
    MemberId(0xa0 + n as u64)
}

fn unavailable(url: &str) -> RpcError {
    RpcError {
        kind: EtcdErrorKind::Unavailable,
        message: format!(
            "{url}: tcp connect error: Connection refused (os error 111): transport error"
        ),
    }
}

fn etcd_error(kind: EtcdErrorKind, message: &str) -> RpcError {
    RpcError {
        kind,
        message: message.to_string(),
    }
}

/// The highest index the leader has, the reference for progress.
const LOG_INDEX: u64 = 10_000;

impl FakeCluster {
    /// `voters` started voters running `version`, node 0 the leader, every log at the
    /// same index.
    pub fn new(voters: usize, version: &str) -> Self {
        let members = (0..voters)
            .map(|n| FakeMember {
                info: MemberInfo {
                    id: node_id(n),
                    name: format!("node{n}"),
                    peer_urls: vec![peer_url(n)],
                    client_urls: vec![client_url(n)],
                    is_learner: false,
                },
                version: version.to_string(),
                up: true,
                status_delay: Duration::from_millis(1),
                status_refused: false,
                raft_index: LOG_INDEX,
                applied_index: LOG_INDEX,
                leader_override: None,
                connected: true,
                errors: Vec::new(),
                storage_version: storage_version(version),
                db_size: 20_480,
                db_size_in_use: 16_384,
                db_size_quota: if storage_version(version).is_empty() {
                    0
                } else {
                    2 << 30
                },
            })
            .collect();
        Self {
            state: Arc::new(Mutex::new(FakeState {
                cluster_id: 0xc1,
                members,
                leader: (voters > 0).then(|| node_id(0)),
                term: 2,
                max_learners: 1,
                rpc_timeout: DEFAULT_RPC_TIMEOUT,
                endpoints: (0..voters).map(client_url).collect(),
                calls: Vec::new(),
                injected: HashMap::new(),
                next_id: 0xb0,
            })),
            created: Instant::now(),
        }
    }

    /// Changes the model now.
    pub fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().expect("no panics while holding the lock"))
    }

    /// Changes the model `after` the fake was created (spawns a task; needs a runtime).
    pub fn at(&self, after: Duration, f: impl FnOnce(&mut FakeState) + Send + 'static) {
        let this = self.clone();
        let when = self.created + after;
        tokio::spawn(async move {
            tokio::time::sleep_until(when).await;
            this.with(f);
        });
    }

    /// The next `times` calls of `op` fail with `error`; with `apply`, the change lands
    /// first (its answer is lost).
    pub fn fail_next(&self, op: Op, times: usize, error: RpcError, apply: bool) {
        self.with(|s| {
            let queue = s.injected.entry(op).or_default();
            for _ in 0..times {
                queue.push_back(Injected {
                    error: error.clone(),
                    apply,
                });
            }
        })
    }

    /// The membership changes asked for so far.
    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }

    /// The member list now.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.with(|s| s.members.iter().map(|m| m.info.clone()).collect())
    }

    /// How long since the fake was created, on tokio's clock.
    pub fn elapsed(&self) -> Duration {
        self.created.elapsed()
    }
}

/// What Status reports as the storage version: 3.6 and newer only.
fn storage_version(version: &str) -> String {
    match parse_etcd_version(version) {
        Some(v) if (v.major, v.minor) >= (3, 6) => format!("{}.{}.0", v.major, v.minor),
        _ => String::new(),
    }
}

impl FakeState {
    pub fn member(&self, id: MemberId) -> &FakeMember {
        self.members
            .iter()
            .find(|m| m.info.id == id)
            .unwrap_or_else(|| panic!("no member {id} in the fake"))
    }

    pub fn member_mut(&mut self, id: MemberId) -> &mut FakeMember {
        self.members
            .iter_mut()
            .find(|m| m.info.id == id)
            .unwrap_or_else(|| panic!("no member {id} in the fake"))
    }

    /// Adds node `n` as a learner that has not started (as a join leaves it).
    pub fn add_unstarted_learner(&mut self, n: usize) -> MemberId {
        let version = self.members[0].version.clone();
        let id = node_id(n);
        self.members.push(FakeMember {
            info: MemberInfo {
                id,
                name: String::new(),
                peer_urls: vec![peer_url(n)],
                client_urls: Vec::new(),
                is_learner: true,
            },
            version: version.clone(),
            up: false,
            status_delay: Duration::from_millis(1),
            status_refused: false,
            raft_index: 0,
            applied_index: 0,
            leader_override: None,
            connected: false,
            errors: Vec::new(),
            storage_version: storage_version(&version),
            db_size: 0,
            db_size_in_use: 0,
            db_size_quota: 0,
        });
        id
    }

    /// The member of node `n` starts: it publishes its name and client URL.
    pub fn start(&mut self, id: MemberId, n: usize) {
        let m = self.member_mut(id);
        m.info.name = format!("node{n}");
        m.info.client_urls = vec![client_url(n)];
        m.up = true;
        m.connected = true;
    }

    /// Sets how far a member's log (and applied index) goes, in percent of the leader's.
    pub fn set_progress(&mut self, id: MemberId, percent: u64) {
        let m = self.member_mut(id);
        m.raft_index = LOG_INDEX * percent / 100;
        m.applied_index = m.raft_index;
    }

    /// The member's process dies; a dead leader starts an election.
    pub fn kill(&mut self, id: MemberId) {
        let m = self.member_mut(id);
        m.up = false;
        m.connected = false;
        if self.leader == Some(id) {
            self.leader = None;
        }
    }

    /// `id` wins an election.
    pub fn elect(&mut self, id: MemberId) {
        self.leader = Some(id);
        self.term += 1;
    }

    fn voters(&self) -> impl Iterator<Item = &FakeMember> {
        self.members.iter().filter(|m| !m.info.is_learner)
    }

    fn leader_index(&self) -> u64 {
        self.leader
            .and_then(|l| self.members.iter().find(|m| m.info.id == l))
            .map_or(LOG_INDEX, |m| m.raft_index)
    }

    fn by_client_url(&self, url: &str) -> Option<&FakeMember> {
        self.members
            .iter()
            .find(|m| m.info.client_urls.iter().any(|u| u == url))
    }

    /// The member that serves cluster calls: the first endpoint that is up.
    fn serving(&self) -> Option<&FakeMember> {
        self.endpoints
            .iter()
            .filter_map(|u| self.by_client_url(u))
            .find(|m| m.up)
    }

    fn membership(&self, served_by: &FakeMember) -> Membership {
        Membership {
            cluster_id: self.cluster_id,
            members: self.members.iter().map(|m| m.info.clone()).collect(),
            served_by: served_by.info.client_urls[0].clone(),
        }
    }

    fn injected(&mut self, op: Op) -> Option<Injected> {
        self.injected.get_mut(&op).and_then(|q| q.pop_front())
    }

    /// The serving member and a leader, or etcd's error.
    fn ready_for_change(&self) -> Result<semver::Version, RpcError> {
        let Some(serving) = self.serving() else {
            return Err(unavailable(&self.endpoints.join(",")));
        };
        if self.leader.is_none() {
            return Err(etcd_error(EtcdErrorKind::NoLeader, "etcdserver: no leader"));
        }
        Ok(parse_etcd_version(&serving.version).expect("a valid version in the fake"))
    }

    fn add_learner(&mut self, peer_url: &str) -> Result<MemberId, RpcError> {
        let version = self.ready_for_change()?;
        // mayAddMember (server/etcdserver/server.go): the serving member's connections to
        // the voters, from 3.5.30 and 3.6.11 against a quorum of the grown cluster
        // (isConnectedToQuorumAfterAddingNewMemberSince, util.go), before against every
        // voter (isConnectedFullySince).
        let serving = self.serving().expect("checked").info.id;
        let voters: Vec<&FakeMember> = self.voters().collect();
        let connected = voters
            .iter()
            .filter(|m| m.info.id == serving || m.connected)
            .count();
        let relaxed = match (version.major, version.minor) {
            (3, 5) => version.patch >= 30,
            (3, 6) => version.patch >= 11,
            (3, minor) => minor > 6,
            (major, _) => major > 3,
        };
        let accepts = if relaxed {
            voters.len() == 1 || connected >= quorum(voters.len() + 1)
        } else {
            connected == voters.len()
        };
        if !accepts {
            return Err(etcd_error(
                EtcdErrorKind::Unhealthy,
                "etcdserver: unhealthy cluster",
            ));
        }
        // ValidateConfigurationChange (api/membership/cluster.go).
        if self
            .members
            .iter()
            .any(|m| m.info.peer_urls.iter().any(|u| u == peer_url))
        {
            return Err(etcd_error(
                EtcdErrorKind::PeerUrlExists,
                "etcdserver: Peer URLs already exists",
            ));
        }
        let max_learners = if (version.major, version.minor) >= (3, 6) {
            self.max_learners
        } else {
            1
        };
        if self.members.iter().filter(|m| m.info.is_learner).count() + 1 > max_learners {
            return Err(etcd_error(
                EtcdErrorKind::TooManyLearners,
                "etcdserver: too many learner members in cluster",
            ));
        }
        let id = MemberId(self.next_id);
        self.next_id += 1;
        let version = self.members[0].version.clone();
        self.members.push(FakeMember {
            info: MemberInfo {
                id,
                name: String::new(),
                peer_urls: vec![peer_url.to_string()],
                client_urls: Vec::new(),
                is_learner: true,
            },
            storage_version: storage_version(&version),
            version,
            up: false,
            status_delay: Duration::from_millis(1),
            status_refused: false,
            raft_index: 0,
            applied_index: 0,
            leader_override: None,
            connected: false,
            errors: Vec::new(),
            db_size: 0,
            db_size_in_use: 0,
            db_size_quota: 0,
        });
        Ok(id)
    }

    fn promote(&mut self, id: MemberId) -> Result<(), RpcError> {
        self.ready_for_change()?;
        let leader_index = self.leader_index();
        let voters = self.voters().count();
        let up_voters = self.voters().filter(|m| m.up).count();
        let Some(m) = self.members.iter_mut().find(|m| m.info.id == id) else {
            return Err(etcd_error(
                EtcdErrorKind::MemberNotFound,
                "etcdserver: member not found",
            ));
        };
        if !m.info.is_learner {
            return Err(etcd_error(
                EtcdErrorKind::MemberNotLearner,
                "etcdserver: can only promote a learner member",
            ));
        }
        // isLearnerReady (server.go): the leader's record of the learner's log at 90%
        // of its own.
        if (m.raft_index as f64) < leader_index as f64 * 0.9 {
            return Err(etcd_error(
                EtcdErrorKind::LearnerNotReady,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ));
        }
        // mayPromoteMember: the voters that are up plus the learner must be a quorum of
        // the grown cluster.
        if up_voters + 1 < quorum(voters + 1) {
            return Err(etcd_error(
                EtcdErrorKind::NotEnoughStartedMembers,
                "etcdserver: re-configuration failed due to not enough started members",
            ));
        }
        m.info.is_learner = false;
        Ok(())
    }

    fn remove(&mut self, id: MemberId) -> Result<(), RpcError> {
        self.ready_for_change()?;
        let before = self.members.len();
        self.members.retain(|m| m.info.id != id);
        if self.members.len() == before {
            return Err(etcd_error(
                EtcdErrorKind::MemberNotFound,
                "etcdserver: member not found",
            ));
        }
        Ok(())
    }

    fn update_peer_urls(&mut self, id: MemberId, peer_urls: &[String]) -> Result<(), RpcError> {
        let version = self.ready_for_change()?;
        let Some(m) = self.members.iter_mut().find(|m| m.info.id == id) else {
            return Err(etcd_error(
                EtcdErrorKind::MemberNotFound,
                "etcdserver: member not found",
            ));
        };
        m.info.peer_urls = peer_urls.to_vec();
        // UpdateRaftAttributes (api/membership/cluster.go) replaced all raft attributes,
        // IsLearner with the request's false, until 3.5.31 and 3.6.12 (etcd#21694).
        let fixed = match (version.major, version.minor) {
            (3, 5) => version.patch >= 31,
            (3, 6) => version.patch >= 12,
            (3, minor) => minor > 6,
            (major, _) => major > 3,
        };
        if !fixed {
            m.info.is_learner = false;
        }
        Ok(())
    }

    fn status_of(&self, m: &FakeMember, url: &str) -> MemberStatus {
        let leader = m.leader_override.unwrap_or(self.leader.unwrap_or_default());
        let mut errors = Vec::new();
        if leader.0 == 0 {
            errors.push("etcdserver: no leader".to_string());
        }
        errors.extend(m.errors.iter().cloned());
        MemberStatus {
            endpoint: url.to_string(),
            member_id: m.info.id,
            cluster_id: self.cluster_id,
            version: m.version.clone(),
            db_size: m.db_size,
            db_size_in_use: m.db_size_in_use,
            leader,
            raft_index: m.raft_index,
            raft_term: self.term,
            raft_applied_index: m.applied_index,
            is_learner: m.info.is_learner,
            errors,
            storage_version: m.storage_version.clone(),
            db_size_quota: m.db_size_quota,
        }
    }
}

impl FakeCluster {
    /// Runs a membership change: a scripted answer first, else the model's.
    fn change<T>(
        &self,
        op: Op,
        call: Call,
        f: impl Fn(&mut FakeState) -> Result<T, RpcError>,
    ) -> Result<T, RpcError> {
        self.with(|s| {
            s.calls.push(call);
            match s.injected(op) {
                Some(Injected { error, apply }) => {
                    if apply {
                        let _ = f(s);
                    }
                    Err(error)
                }
                None => f(s),
            }
        })
    }
}

impl Cluster for FakeCluster {
    fn endpoints(&self) -> Vec<String> {
        self.with(|s| s.endpoints.clone())
    }

    fn sync_endpoints(&self, membership: &Membership) -> Result<()> {
        let urls = membership.voter_client_urls();
        if !urls.is_empty() {
            self.with(|s| s.endpoints = urls);
        }
        Ok(())
    }

    fn member_list(&self) -> impl Future<Output = Result<Membership>> + Send {
        let r = self.with(|s| {
            let endpoints = s.endpoints.join(",");
            match (s.serving(), s.leader) {
                (None, _) => Err(MembershipError::NoEndpointAnswered {
                    endpoints: endpoints.clone(),
                    last_error: unavailable(&endpoints).message,
                }),
                (Some(_), None) => Err(MembershipError::NoLeader {
                    endpoints,
                    last_error: "etcdserver: no leader".to_string(),
                }),
                (Some(m), Some(_)) => Ok(s.membership(m)),
            }
        });
        std::future::ready(r)
    }

    fn member_list_local(&self) -> impl Future<Output = Result<Membership>> + Send {
        let r = self.with(|s| match s.serving() {
            None => Err(MembershipError::NoEndpointAnswered {
                endpoints: s.endpoints.join(","),
                last_error: unavailable(&s.endpoints.join(",")).message,
            }),
            Some(m) => Ok(s.membership(m)),
        });
        std::future::ready(r)
    }

    fn status(&self, url: &str) -> impl Future<Output = Result<MemberStatus, RpcError>> + Send {
        let url = url.to_string();
        async move {
            let (delay, timeout) = self.with(|s| match s.by_client_url(&url) {
                Some(m) if m.up => Ok((m.status_delay, s.rpc_timeout)),
                _ => Err(unavailable(&url)),
            })?;
            if delay >= timeout {
                tokio::time::sleep(timeout).await;
                return Err(RpcError::busy(timeout));
            }
            tokio::time::sleep(delay).await;
            self.with(|s| match s.by_client_url(&url) {
                Some(m) if m.up && m.status_refused && m.info.is_learner => Err(etcd_error(
                    EtcdErrorKind::NotSupportedForLearner,
                    "etcdserver: rpc not supported for learner",
                )),
                Some(m) if m.up => Ok(s.status_of(m, &url)),
                _ => Err(unavailable(&url)),
            })
        }
    }

    fn answers(&self, url: &str) -> impl Future<Output = Result<(), RpcError>> + Send {
        let r = self.with(|s| match s.by_client_url(url) {
            Some(m) if m.up => Ok(()),
            _ => Err(unavailable(url)),
        });
        std::future::ready(r)
    }

    fn statuses(
        &self,
        members: &[MemberInfo],
    ) -> impl Future<Output = Vec<Result<MemberStatus, RpcError>>> + Send {
        let members = members.to_vec();
        async move {
            let mut set = tokio::task::JoinSet::new();
            for (i, m) in members.iter().enumerate() {
                let (this, urls) = (self.clone(), m.client_urls.clone());
                set.spawn(async move {
                    let mut last = etcd_error(EtcdErrorKind::Unavailable, "not started");
                    for url in urls {
                        match this.status(&url).await {
                            Ok(s) => return (i, Ok(s)),
                            Err(e) => last = e,
                        }
                    }
                    (i, Err(last))
                });
            }
            let mut out = vec![None; members.len()];
            while let Some(joined) = set.join_next().await {
                let (i, r) = joined.expect("status tasks do not panic");
                out[i] = Some(r);
            }
            out.into_iter()
                .map(|r| r.expect("every member was asked"))
                .collect()
        }
    }

    fn add_learner(
        &self,
        peer_url: &str,
    ) -> impl Future<Output = Result<MemberId, RpcError>> + Send {
        let call = Call::AddLearner {
            peer_url: peer_url.to_string(),
        };
        std::future::ready(self.change(Op::AddLearner, call, |s| s.add_learner(peer_url)))
    }

    fn promote(&self, id: MemberId) -> impl Future<Output = Result<(), RpcError>> + Send {
        std::future::ready(self.change(Op::Promote, Call::Promote { id }, |s| s.promote(id)))
    }

    fn remove(&self, id: MemberId) -> impl Future<Output = Result<(), RpcError>> + Send {
        std::future::ready(self.change(Op::Remove, Call::Remove { id }, |s| s.remove(id)))
    }

    fn update_peer_urls(
        &self,
        id: MemberId,
        peer_urls: &[String],
    ) -> impl Future<Output = Result<(), RpcError>> + Send {
        let was_learner = self.with(|s| {
            s.members
                .iter()
                .any(|m| m.info.id == id && m.info.is_learner)
        });
        let call = Call::UpdatePeerUrls { id, was_learner };
        std::future::ready(self.change(Op::UpdatePeerUrls, call, |s| {
            s.update_peer_urls(id, peer_urls)
        }))
    }

    /// The target wins the next term when it is a started voter and `leader_url` is the
    /// leader's; etcd's answers otherwise.
    fn move_leader(
        &self,
        leader_url: &str,
        target: MemberId,
    ) -> impl Future<Output = Result<(), RpcError>> + Send {
        let leader_url = leader_url.to_string();
        std::future::ready(self.with(|s| {
            let serving = s.by_client_url(&leader_url).map(|m| m.info.id);
            if serving.is_none() || serving != s.leader {
                return Err(etcd_error(
                    EtcdErrorKind::NotLeader,
                    "etcdserver: not leader",
                ));
            }
            match s.members.iter().find(|m| m.info.id == target) {
                Some(m) if !m.info.is_learner && m.up => {
                    s.elect(target);
                    Ok(())
                }
                _ => Err(etcd_error(
                    EtcdErrorKind::Other,
                    "etcdserver: bad leader transferee",
                )),
            }
        }))
    }
}
