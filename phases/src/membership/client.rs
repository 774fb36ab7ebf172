//! A thin, careful wrapper around `etcd_client`: TLS only, a bounded time for every call,
//! one cached connection per member, and etcd's errors sorted into the few cases the
//! membership logic reacts to.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    AlarmAction, AlarmOptions, AlarmType, Certificate, Client, CompactionOptions, ConnectOptions,
    GetOptions, Identity, MemberAddOptions, TlsOptions,
};

use super::cluster::Cluster;
use super::{MemberId, MemberInfo, MembershipError, Result};

/// kubeadm's `etcdTimeout`: how long one etcd call may take.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// The client certificate and CA used to talk to etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl EtcdTls {
    /// kubeadm's choice: `etcd/ca.crt` and the `etcd/healthcheck-client` pair of the
    /// certificate directory.
    pub fn from_cert_dir(cert_dir: &Path) -> Self {
        Self {
            ca: cert_dir.join("etcd/ca.crt"),
            cert: cert_dir.join("etcd/healthcheck-client.crt"),
            key: cert_dir.join("etcd/healthcheck-client.key"),
        }
    }

    /// Replaces the files that are given.
    pub fn with_overrides(
        mut self,
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Self {
        if let Some(ca) = ca {
            self.ca = ca;
        }
        if let Some(cert) = cert {
            self.cert = cert;
        }
        if let Some(key) = key {
            self.key = key;
        }
        self
    }

    /// The TLS options, and why the client certificate may be refused when it is not
    /// signed by the CA file: not an error, since the members may trust another CA than
    /// the one that signed their server certificates, but the likely reason when a
    /// member closes the connection.
    fn load(&self) -> Result<(TlsOptions, Option<String>)> {
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| MembershipError::ReadTls {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let ca = read("CA certificate", &self.ca)?;
        let cert = read("client certificate", &self.cert)?;
        let key = read("client key", &self.key)?;
        check_client_validity(&self.cert, &cert)?;
        let untrusted = (!signed_by_any(&cert, &ca)).then(|| {
            format!(
                "this tool's client certificate {} is not signed by the CA {}",
                self.cert.display(),
                self.ca.display()
            )
        });
        let options = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key));
        Ok((options, untrusted))
    }
}

/// Refuses a client certificate that is expired or not yet valid. etcd answers both, and
/// a certificate from another CA, with the same TLS alert (`BadCertificate`), so only here
/// can the reason be told. A certificate that does not parse is left to the handshake.
fn check_client_validity(path: &Path, pem: &[u8]) -> Result<()> {
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(pem) else {
        return Ok(());
    };
    let Ok(cert) = block.parse_x509() else {
        return Ok(());
    };
    let validity = cert.validity();
    let now = time::OffsetDateTime::now_utc();
    let problem = if validity.not_after.to_datetime() < now {
        format!(
            "expired on {}; renew it (kubeadm-etcd phase certs etcd-healthcheck-client) or pass a valid one with --etcd-certfile and --etcd-keyfile",
            validity.not_after
        )
    } else if validity.not_before.to_datetime() > now {
        format!(
            "is not valid before {}; check this machine's clock",
            validity.not_before
        )
    } else {
        return Ok(());
    };
    Err(MembershipError::ClientCertificate {
        path: path.to_path_buf(),
        problem,
    })
}

/// Whether the first certificate of `cert_pem` is signed by one of the certificates of
/// `ca_pem`. Files that do not parse count as signed: the handshake will tell.
fn signed_by_any(cert_pem: &[u8], ca_pem: &[u8]) -> bool {
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(cert_pem) else {
        return true;
    };
    let Ok(cert) = block.parse_x509() else {
        return true;
    };
    let mut any_ca = false;
    for pem in x509_parser::pem::Pem::iter_from_buffer(ca_pem).flatten() {
        let Ok(ca) = pem.parse_x509() else { continue };
        any_ca = true;
        if cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok() {
            return true;
        }
    }
    !any_ca
}

/// What a failed TLS handshake means and what to do about it, from rustls' words (a
/// problem with the server's certificate) or the server's alert (a problem with ours).
/// `None` when the failure is not about TLS.
///
/// With TLS 1.3 the server checks the client certificate after the client has finished
/// its handshake, and etcd built with some Go releases closes the connection without the
/// alert arriving: a closed connection is then explained by `untrusted_client`, when set.
fn tls_hint(message: &str, files: &EtcdTls, untrusted_client: Option<&str>) -> Option<String> {
    let any = |words: &[&str]| words.iter().any(|w| message.contains(w));
    if message.contains("invalid peer certificate") {
        return Some(if any(&["expired", "Expired"]) {
            "the etcd server presents an expired certificate: renew that member's etcd/server certificate and restart it, or check this machine's clock".to_string()
        } else if any(&["not valid yet", "NotValidYet"]) {
            "the etcd server's certificate is not valid yet: check the clocks of this machine and of that member".to_string()
        } else if any(&["not valid for name", "NotValidForName"]) {
            "the etcd server's certificate does not cover the address this tool connected to: use an endpoint whose address the certificate lists, or reissue that member's etcd/server certificate with it (advertise address or etcd.local.serverCertSANs)".to_string()
        } else if any(&["BadSignature", "UnknownIssuer"]) {
            format!(
                "the etcd server's certificate is not signed by the CA this tool trusts ({}): pass this cluster's etcd CA with --etcd-cafile",
                files.ca.display()
            )
        } else {
            format!(
                "the etcd server's certificate is not accepted with the CA {}",
                files.ca.display()
            )
        });
    }
    if message.contains("received fatal alert")
        && any(&[
            "BadCertificate",
            "UnknownCA",
            "CertificateExpired",
            "CertificateRequired",
            "CertificateUnknown",
            "CertificateRevoked",
            "UnsupportedCertificate",
        ])
    {
        return Some(format!(
            "the etcd server refused this tool's client certificate {}: it must be signed by the CA the members trust (--trusted-ca-file, kubeadm's etcd/ca.crt) and be valid; pass another with --etcd-certfile and --etcd-keyfile",
            files.cert.display()
        ));
    }
    if let Some(untrusted) = untrusted_client {
        if any(&["connection closed", "broken pipe", "connection reset"]) {
            return Some(format!(
                "the etcd server closed the connection after the TLS handshake, and {untrusted}: etcd refuses client certificates that are not signed by the CA it trusts (--trusted-ca-file, kubeadm's etcd/ca.crt); pass one signed by it with --etcd-certfile and --etcd-keyfile"
            ));
        }
    }
    if any(&["InvalidContentType", "corrupt message"]) {
        return Some("the endpoint does not speak TLS: it is a plain-HTTP port (such as etcd's metrics port 2381) or not etcd; give the member's https:// client URL (port 2379)".to_string());
    }
    None
}

/// The etcd errors the membership logic tells apart. etcd's Go client recognises them by
/// their message (`rpctypes`), and so do we: the gRPC codes are shared by several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdErrorKind {
    /// `etcdserver: too many learner members in cluster`
    TooManyLearners,
    /// `etcdserver: unhealthy cluster` (strict reconfiguration check)
    Unhealthy,
    /// `etcdserver: can only promote a learner member which is in sync with leader`
    LearnerNotReady,
    /// `etcdserver: can only promote a learner member`
    MemberNotLearner,
    /// `etcdserver: Peer URLs already exists`
    PeerUrlExists,
    /// `etcdserver: member not found`
    MemberNotFound,
    /// `etcdserver: re-configuration failed due to not enough started members`
    NotEnoughStartedMembers,
    /// `etcdserver: rpc not supported for learner`
    NotSupportedForLearner,
    /// `etcdserver: no leader` and friends
    NoLeader,
    /// The call did not finish in time; it may or may not have landed.
    Timeout,
    /// `etcdserver: not leader`: a call only the leader serves (MoveLeader) reached a
    /// follower, or the leader changed in between.
    NotLeader,
    /// The member could not be reached (connection refused, TLS failure, ...).
    Unavailable,
    Other,
}

/// A failed etcd call: its kind and etcd's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    pub kind: EtcdErrorKind,
    pub message: String,
}

impl RpcError {
    fn timeout(after: Duration) -> Self {
        Self {
            kind: EtcdErrorKind::Timeout,
            message: format!("no answer within {}", crate::config::GoDuration(after)),
        }
    }

    /// A call given up after `after` because the member was slow, not because it failed.
    pub fn busy(after: Duration) -> Self {
        Self::timeout(after)
    }

    /// Transport trouble, after which another member may answer.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self.kind,
            EtcdErrorKind::Timeout | EtcdErrorKind::Unavailable | EtcdErrorKind::NoLeader
        )
    }
}

impl From<etcd_client::Error> for RpcError {
    fn from(e: etcd_client::Error) -> Self {
        classify(&e)
    }
}

fn classify(e: &etcd_client::Error) -> RpcError {
    use EtcdErrorKind::*;
    let status = match e {
        etcd_client::Error::GRpcStatus(s) => s,
        etcd_client::Error::TransportError(_) => {
            return RpcError {
                kind: Unavailable,
                message: chain(e),
            }
        }
        _ => {
            return RpcError {
                kind: Other,
                message: chain(e),
            }
        }
    };
    let message = status.message();
    let kind = if message.contains("too many learner members") {
        TooManyLearners
    } else if message.contains("unhealthy cluster") {
        Unhealthy
    } else if message.contains("can only promote a learner member which is in sync") {
        LearnerNotReady
    } else if message.contains("can only promote a learner member") {
        MemberNotLearner
    } else if message.contains("Peer URLs already exists") || message.contains("peerURL exists") {
        PeerUrlExists
    } else if message.contains("member not found") {
        MemberNotFound
    } else if message.contains("not enough started members") {
        NotEnoughStartedMembers
    } else if message.contains("not supported for learner") {
        NotSupportedForLearner
    } else if message.contains("no leader") || message.contains("leader changed") {
        NoLeader
    } else if message.contains("etcdserver: not leader") {
        NotLeader
    } else {
        match status.code() {
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => Timeout,
            tonic::Code::Unavailable | tonic::Code::Unknown
                if !message.starts_with("etcdserver:") =>
            {
                Unavailable
            }
            _ => Other,
        }
    };
    let mut text = if message.is_empty() {
        format!("{:?}", status.code())
    } else {
        message.to_string()
    };
    // tonic puts the reason a connection failed (refused, certificate) in the source chain.
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    RpcError {
        kind,
        message: text,
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// One member's answer to the Status RPC.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub endpoint: String,
    pub member_id: MemberId,
    pub cluster_id: u64,
    pub version: String,
    pub db_size: i64,
    pub db_size_in_use: i64,
    /// The leader this member knows of; 0 when it knows none.
    pub leader: MemberId,
    /// The member's committed index.
    pub raft_index: u64,
    pub raft_term: u64,
    pub raft_applied_index: u64,
    pub is_learner: bool,
    /// `etcdserver: no leader`, alarms (`memberID:... alarm:NOSPACE`).
    pub errors: Vec<String>,
    /// The version of the data on disk (etcd 3.6 and newer; empty before).
    pub storage_version: String,
    /// `--quota-backend-bytes` as the member applies it (etcd 3.6 and newer; 0 before).
    pub db_size_quota: i64,
}

impl MemberStatus {
    /// Healthy as kubeadm's quorum check sees it: it answered, reported no error and
    /// knows a leader.
    pub fn healthy(&self) -> bool {
        self.errors.is_empty() && self.leader.0 != 0
    }
}

/// The member list and the cluster it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub cluster_id: u64,
    pub members: Vec<MemberInfo>,
    /// The client URL that answered.
    pub served_by: String,
}

impl Membership {
    pub fn voters(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.iter().filter(|m| !m.is_learner)
    }

    pub fn learners(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.iter().filter(|m| m.is_learner)
    }

    pub fn by_id(&self, id: MemberId) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn by_peer_url(&self, url: &str) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.has_peer_url(url))
    }

    /// The client URLs to send cluster calls to: started voters only. A learner rejects
    /// almost every call ("rpc not supported for learner", kubeadm#3287).
    pub fn voter_client_urls(&self) -> Vec<String> {
        let mut urls = Vec::new();
        for m in self.voters() {
            for u in &m.client_urls {
                if !urls.contains(u) {
                    urls.push(u.clone());
                }
            }
        }
        urls
    }
}

/// A handle on an etcd cluster, reached through the client URLs of its voters.
///
/// Connections are made lazily, one per URL, and reused by every later call: polling a
/// learner every 100 ms must not mean a TLS handshake every 100 ms.
#[derive(Clone)]
pub struct EtcdClient {
    tls: TlsOptions,
    /// The files behind `tls`, named in TLS errors.
    tls_files: EtcdTls,
    /// Why the members may refuse the client certificate (see [`EtcdTls::load`]).
    untrusted_client: Option<String>,
    rpc_timeout: Duration,
    endpoints: Arc<Mutex<Vec<String>>>,
    clients: Arc<Mutex<HashMap<String, Client>>>,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.endpoints())
            .field("rpc_timeout", &self.rpc_timeout)
            .finish()
    }
}

impl EtcdClient {
    /// A client for the cluster behind `endpoints` (client URLs). Only `https://` URLs are
    /// accepted: this tool never talks to etcd in plaintext, not even as a fallback.
    pub fn new(endpoints: &[String], tls: &EtcdTls, rpc_timeout: Duration) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(MembershipError::NoEndpoints);
        }
        for url in endpoints {
            check_https(url)?;
        }
        let (options, untrusted_client) = tls.load()?;
        Ok(Self {
            tls: options,
            tls_files: tls.clone(),
            untrusted_client,
            rpc_timeout,
            endpoints: Arc::new(Mutex::new(dedup(endpoints))),
            clients: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The client URLs cluster calls go to.
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints
            .lock()
            .expect("no panics while holding the lock")
            .clone()
    }

    pub fn rpc_timeout(&self) -> Duration {
        self.rpc_timeout
    }

    /// kubeadm's `Sync()`: replace the endpoints with the client URLs of the started
    /// voters, so that every later call can reach any voter, and never a learner. Keeps the
    /// old endpoints when the list has none (a cluster whose voters have not started).
    pub fn sync_endpoints(&self, membership: &Membership) -> Result<()> {
        let urls = membership.voter_client_urls();
        if urls.is_empty() {
            return Ok(());
        }
        for url in &urls {
            check_https(url)?;
        }
        *self
            .endpoints
            .lock()
            .expect("no panics while holding the lock") = urls;
        Ok(())
    }

    async fn client(&self, url: &str) -> Result<Client, RpcError> {
        if let Some(c) = self
            .clients
            .lock()
            .expect("no panics while holding the lock")
            .get(url)
        {
            return Ok(c.clone());
        }
        let options = ConnectOptions::new()
            .with_tls(self.tls.clone())
            .with_connect_timeout(self.rpc_timeout)
            .with_timeout(self.rpc_timeout)
            .with_keep_alive(Duration::from_secs(10), self.rpc_timeout);
        let client = Client::connect([url], Some(options)).await?;
        self.clients
            .lock()
            .expect("no panics while holding the lock")
            .insert(url.to_string(), client.clone());
        Ok(client)
    }

    /// Runs one call with the per-call time bound. tonic waits for a connection that is
    /// not ready yet without limit; this is what makes every call finish.
    async fn call<T, F, Fut>(&self, url: &str, f: F) -> Result<T, RpcError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let result = match self.client(url).await {
            Ok(client) => match tokio::time::timeout(self.rpc_timeout, f(client)).await {
                Ok(result) => result.map_err(RpcError::from),
                Err(_) => Err(RpcError::timeout(self.rpc_timeout)),
            },
            Err(e) => Err(e),
        };
        let untrusted = self.untrusted_client.as_deref();
        result.map_err(|e| match tls_hint(&e.message, &self.tls_files, untrusted) {
            Some(hint) => RpcError {
                message: format!("{hint} ({})", e.message),
                ..e
            },
            None => e,
        })
    }

    /// The Status RPC on one member, which learners serve too.
    pub async fn status(&self, url: &str) -> Result<MemberStatus, RpcError> {
        let r = self
            .call(url, |mut c| async move { c.status().await })
            .await?;
        let header = r.header();
        Ok(MemberStatus {
            endpoint: url.to_string(),
            member_id: MemberId(header.map_or(0, |h| h.member_id())),
            cluster_id: header.map_or(0, |h| h.cluster_id()),
            version: r.version().to_string(),
            db_size: r.db_size(),
            db_size_in_use: r.raft_used_db_size(),
            leader: MemberId(r.leader()),
            raft_index: r.raft_index(),
            raft_term: r.raft_term(),
            raft_applied_index: r.raft_applied_index(),
            is_learner: r.is_learner(),
            errors: r.errors().to_vec(),
            storage_version: r.storage_version().to_string(),
            db_size_quota: r.db_size_quota(),
        })
    }

    /// Whether the member at `url` is alive and serving: a MemberList, which a learner's
    /// RPC gate refuses at once ("rpc not supported for learner") without touching its
    /// backend, so a learner busy applying a large log still answers it, where Status can
    /// keep it waiting for seconds.
    pub async fn answers(&self, url: &str) -> Result<(), RpcError> {
        match self
            .call(url, |mut c| async move { c.member_list().await })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind == EtcdErrorKind::NotSupportedForLearner => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The member list as the cluster has agreed on it, from the first endpoint that
    /// answers.
    ///
    /// etcd-client sends MemberList with `linearizable: false`, so a member that lags
    /// behind could answer with an old list. A linearizable read on the same member first
    /// makes it catch up with the leader's commit index (this is exactly what etcd 3.5's
    /// `linearizable: true` does on the server, and 3.4 has no such field), so the list
    /// that follows reflects every change committed before the call.
    pub async fn member_list(&self) -> Result<Membership> {
        self.member_list_with(true).await
    }

    /// [`Cluster::member_list_until`] on the real cluster.
    pub async fn member_list_until(&self, deadline: tokio::time::Instant) -> Result<Membership> {
        Cluster::member_list_until(self, deadline).await
    }

    /// The member list as whichever endpoint answers first knows it, even without a
    /// leader: for status reports on a broken cluster.
    pub async fn member_list_local(&self) -> Result<Membership> {
        self.member_list_with(false).await
    }

    async fn member_list_with(&self, linearizable: bool) -> Result<Membership> {
        let endpoints = self.endpoints();
        let mut last_error = None;
        // Some member is there but cannot serve the list for want of a leader: an
        // election (or lost quorum), which a caller may choose to wait out.
        let mut leaderless = false;
        for url in &endpoints {
            if linearizable {
                let barrier = self
                    .call(url, |mut c| async move {
                        c.get(
                            "kubeadm-etcd/linearizable-barrier",
                            Some(GetOptions::new().with_count_only()),
                        )
                        .await
                    })
                    .await;
                if let Err(e) = barrier {
                    leaderless |=
                        matches!(e.kind, EtcdErrorKind::NoLeader | EtcdErrorKind::Timeout);
                    last_error = Some(format!("{url}: {e}"));
                    continue;
                }
            }
            match self
                .call(url, |mut c| async move { c.member_list().await })
                .await
            {
                Ok(r) => {
                    return Ok(Membership {
                        cluster_id: r.header().map_or(0, |h| h.cluster_id()),
                        members: r.members().iter().map(member_info).collect(),
                        served_by: url.clone(),
                    })
                }
                Err(e) => {
                    leaderless |=
                        matches!(e.kind, EtcdErrorKind::NoLeader | EtcdErrorKind::Timeout);
                    last_error = Some(format!("{url}: {e}"));
                }
            }
        }
        let (endpoints, last_error) = (endpoints.join(","), last_error.unwrap_or_default());
        Err(if leaderless {
            MembershipError::NoLeader {
                endpoints,
                last_error,
            }
        } else {
            MembershipError::NoEndpointAnswered {
                endpoints,
                last_error,
            }
        })
    }

    /// Sends a cluster call to the endpoints in turn until one answers with something
    /// other than transport trouble. etcd's own answers (errors included) are final.
    async fn cluster_call<T, F, Fut>(&self, f: F) -> Result<(T, String), RpcError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = None;
        for url in self.endpoints() {
            match self.call(&url, &f).await {
                Ok(v) => return Ok((v, url)),
                // A learner's URL among the endpoints (before the first sync) cannot
                // serve cluster calls; another endpoint may.
                Err(e) if e.is_unavailable() || e.kind == EtcdErrorKind::NotSupportedForLearner => {
                    last = Some(RpcError {
                        message: format!("{url}: {}", e.message),
                        ..e
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(RpcError {
            kind: EtcdErrorKind::Unavailable,
            message: "no endpoints".to_string(),
        }))
    }

    /// MemberAdd with `isLearner`. Returns the new member's ID.
    pub async fn add_learner(&self, peer_url: &str) -> Result<MemberId, RpcError> {
        let urls = vec![peer_url.to_string()];
        let (r, _) = self
            .cluster_call(|mut c| {
                let urls = urls.clone();
                async move {
                    c.member_add(urls, Some(MemberAddOptions::new().with_is_learner()))
                        .await
                }
            })
            .await?;
        r.member()
            .map(|m| MemberId(m.id()))
            .ok_or_else(|| RpcError {
                kind: EtcdErrorKind::Other,
                message: "MemberAdd answered without the new member".to_string(),
            })
    }

    /// MemberPromote.
    pub async fn promote(&self, id: MemberId) -> Result<(), RpcError> {
        self.cluster_call(|mut c| async move { c.member_promote(id.0).await })
            .await
            .map(|_| ())
    }

    /// MemberRemove.
    pub async fn remove(&self, id: MemberId) -> Result<(), RpcError> {
        self.cluster_call(|mut c| async move { c.member_remove(id.0).await })
            .await
            .map(|_| ())
    }

    /// MemberUpdate of the peer URLs. Private: only [`super::update::update_peer_urls`]
    /// calls it (through [`Cluster`]), after making sure the member is not a learner.
    async fn member_update(&self, id: MemberId, peer_urls: &[String]) -> Result<(), RpcError> {
        let urls = peer_urls.to_vec();
        self.cluster_call(|mut c| {
            let urls = urls.clone();
            async move { c.member_update(id.0, urls).await }
        })
        .await
        .map(|_| ())
    }

    /// Status of every member on its client URLs (the first that answers), in the
    /// order of `members`, all asked at once. Members that have not started have no client
    /// URL and get an error.
    pub async fn statuses(&self, members: &[MemberInfo]) -> Vec<Result<MemberStatus, RpcError>> {
        let mut set = tokio::task::JoinSet::new();
        for (i, m) in members.iter().enumerate() {
            let this = self.clone();
            let urls = m.client_urls.clone();
            set.spawn(async move {
                if urls.is_empty() {
                    return (
                        i,
                        Err(RpcError {
                            kind: EtcdErrorKind::Unavailable,
                            message: "not started".to_string(),
                        }),
                    );
                }
                let mut last = None;
                for url in urls {
                    match this.status(&url).await {
                        Ok(s) => return (i, Ok(s)),
                        Err(e) => last = Some(e),
                    }
                }
                (i, Err(last.expect("at least one URL")))
            });
        }
        let mut out: Vec<Option<Result<MemberStatus, RpcError>>> = vec![None; members.len()];
        while let Some(joined) = set.join_next().await {
            let (i, r) = joined.expect("status tasks do not panic");
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.expect("every member was asked"))
            .collect()
    }
}

impl Cluster for EtcdClient {
    fn endpoints(&self) -> Vec<String> {
        EtcdClient::endpoints(self)
    }

    fn sync_endpoints(&self, membership: &Membership) -> Result<()> {
        EtcdClient::sync_endpoints(self, membership)
    }

    fn member_list(&self) -> impl Future<Output = Result<Membership>> + Send {
        EtcdClient::member_list(self)
    }

    fn member_list_local(&self) -> impl Future<Output = Result<Membership>> + Send {
        EtcdClient::member_list_local(self)
    }

    fn status(&self, url: &str) -> impl Future<Output = Result<MemberStatus, RpcError>> + Send {
        EtcdClient::status(self, url)
    }

    fn answers(&self, url: &str) -> impl Future<Output = Result<(), RpcError>> + Send {
        EtcdClient::answers(self, url)
    }

    fn statuses(
        &self,
        members: &[MemberInfo],
    ) -> impl Future<Output = Vec<Result<MemberStatus, RpcError>>> + Send {
        EtcdClient::statuses(self, members)
    }

    fn active_peers(
        &self,
        url: &str,
    ) -> impl Future<Output = Result<Vec<MemberId>, RpcError>> + Send {
        let (tls, url) = (self.tls_files.clone(), url.to_string());
        // The whole metrics page, not one small answer: more than one RPC's time.
        let timeout = self.rpc_timeout.max(Duration::from_secs(5));
        async move { super::peers::active_peers(&tls, &url, timeout).await }
    }

    fn add_learner(
        &self,
        peer_url: &str,
    ) -> impl Future<Output = Result<MemberId, RpcError>> + Send {
        EtcdClient::add_learner(self, peer_url)
    }

    fn promote(&self, id: MemberId) -> impl Future<Output = Result<(), RpcError>> + Send {
        EtcdClient::promote(self, id)
    }

    fn remove(&self, id: MemberId) -> impl Future<Output = Result<(), RpcError>> + Send {
        EtcdClient::remove(self, id)
    }

    fn update_peer_urls(
        &self,
        id: MemberId,
        peer_urls: &[String],
    ) -> impl Future<Output = Result<(), RpcError>> + Send {
        self.member_update(id, peer_urls)
    }

    fn move_leader(
        &self,
        leader_url: &str,
        target: MemberId,
    ) -> impl Future<Output = Result<(), RpcError>> + Send {
        EtcdClient::move_leader(self, leader_url, target)
    }
}

/// An alarm as etcd lists it: the member it is about and its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Alarm {
    /// The member that raised it; a CORRUPT alarm can carry 0 on releases before
    /// etcd#14272.
    pub member: MemberId,
    pub kind: AlarmKind,
}

/// etcd's alarm types (`etcdserverpb.AlarmType`), without `NONE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum AlarmKind {
    /// The backend reached `--quota-backend-bytes`: writes are refused.
    #[serde(rename = "NOSPACE")]
    NoSpace,
    /// The corruption check found members whose data differ: writes and reads through
    /// raft are refused.
    #[serde(rename = "CORRUPT")]
    Corrupt,
}

impl std::fmt::Display for AlarmKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AlarmKind::NoSpace => "NOSPACE",
            AlarmKind::Corrupt => "CORRUPT",
        })
    }
}

impl AlarmKind {
    fn wire(self) -> AlarmType {
        match self {
            AlarmKind::NoSpace => AlarmType::Nospace,
            AlarmKind::Corrupt => AlarmType::Corrupt,
        }
    }
}

/// How long a MoveLeader call may take: etcd answers once the target leads, and raft
/// gives a transfer up after an election timeout (1 s by default, more on slow links),
/// so a few of those are plenty.
pub const MOVE_LEADER_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// The maintenance calls (`phases::maintenance`). Defragment and MoveLeader get their own
/// connection with their own time bound: the cached connections carry the short
/// per-call bound as a channel timeout, which a longer call could not escape.
impl EtcdClient {
    /// One call on a connection of its own whose every bound is `timeout`.
    async fn call_with_timeout<T, F, Fut>(
        &self,
        url: &str,
        timeout: Duration,
        f: F,
    ) -> Result<T, RpcError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let options = ConnectOptions::new()
            .with_tls(self.tls.clone())
            .with_connect_timeout(self.rpc_timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), self.rpc_timeout);
        let result =
            match tokio::time::timeout(self.rpc_timeout, Client::connect([url], Some(options)))
                .await
            {
                Err(_) => Err(RpcError::timeout(self.rpc_timeout)),
                Ok(Err(e)) => Err(RpcError::from(e)),
                Ok(Ok(client)) => match tokio::time::timeout(timeout, f(client)).await {
                    Ok(result) => result.map_err(RpcError::from),
                    Err(_) => Err(RpcError::timeout(timeout)),
                },
            };
        let untrusted = self.untrusted_client.as_deref();
        result.map_err(|e| match tls_hint(&e.message, &self.tls_files, untrusted) {
            Some(hint) => RpcError {
                message: format!("{hint} ({})", e.message),
                ..e
            },
            None => e,
        })
    }

    /// Defragment on the member at `url`, allowed to take `timeout`. etcd keeps going
    /// when the client gives up, so a timeout does not mean the member is done.
    pub async fn defragment(&self, url: &str, timeout: Duration) -> Result<(), RpcError> {
        self.call_with_timeout(url, timeout, |mut c| async move { c.defragment().await })
            .await
            .map(|_| ())
    }

    /// MoveLeader, sent to the leader at `leader_url` (any other member refuses it with
    /// "not leader"). etcd answers once `target` leads.
    pub async fn move_leader(&self, leader_url: &str, target: MemberId) -> Result<(), RpcError> {
        self.call_with_timeout(leader_url, MOVE_LEADER_RPC_TIMEOUT, |mut c| async move {
            c.move_leader(target.0).await
        })
        .await
        .map(|_| ())
    }

    /// Every active alarm of the cluster (an Alarm GET, which goes through raft).
    pub async fn alarms(&self) -> Result<Vec<Alarm>, RpcError> {
        let (r, _) = self
            .cluster_call(
                |mut c| async move { c.alarm(AlarmAction::Get, AlarmType::None, None).await },
            )
            .await?;
        let mut alarms: Vec<Alarm> = r
            .alarms()
            .iter()
            .filter_map(|a| {
                let kind = match a.alarm() {
                    AlarmType::Nospace => AlarmKind::NoSpace,
                    AlarmType::Corrupt => AlarmKind::Corrupt,
                    AlarmType::None => return None,
                };
                Some(Alarm {
                    member: MemberId(a.member_id()),
                    kind,
                })
            })
            .collect();
        alarms.sort();
        Ok(alarms)
    }

    /// Deactivates one alarm.
    pub async fn disarm(&self, alarm: Alarm) -> Result<(), RpcError> {
        self.cluster_call(|mut c| async move {
            let mut options = AlarmOptions::new();
            options.with_member(alarm.member.0);
            c.alarm(AlarmAction::Deactivate, alarm.kind.wire(), Some(options))
                .await
        })
        .await
        .map(|_| ())
    }

    /// The cluster's current revision, from a linearizable read's header.
    pub async fn current_revision(&self) -> Result<i64, RpcError> {
        let (r, _) = self
            .cluster_call(|mut c| async move {
                c.get(
                    "kubeadm-etcd/revision",
                    Some(GetOptions::new().with_count_only()),
                )
                .await
            })
            .await?;
        Ok(r.header().map_or(0, |h| h.revision()))
    }

    /// Whether the history before `revision` is compacted away: a read at it is refused
    /// with "required revision has been compacted".
    pub async fn compacted_through(&self, revision: i64) -> Result<bool, RpcError> {
        let r = self
            .cluster_call(|mut c| async move {
                c.get(
                    "kubeadm-etcd/revision",
                    Some(GetOptions::new().with_count_only().with_revision(revision)),
                )
                .await
            })
            .await;
        match r {
            Ok(_) => Ok(false),
            Err(e) if e.message.contains("required revision has been compacted") => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Compacts the key history up to `revision`, waiting until every member has
    /// removed it from its backend (`physical`), so that a defragmentation right after
    /// gives the space back. Compaction walks the whole keyspace: allowed `timeout`.
    pub async fn compact(&self, revision: i64, timeout: Duration) -> Result<(), RpcError> {
        let mut last = None;
        for url in self.endpoints() {
            match self
                .call_with_timeout(&url, timeout, |mut c| async move {
                    c.compact(revision, Some(CompactionOptions::new().with_physical()))
                        .await
                })
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.is_unavailable() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(RpcError {
            kind: EtcdErrorKind::Unavailable,
            message: "no endpoints".to_string(),
        }))
    }
}

fn member_info(m: &etcd_client::Member) -> MemberInfo {
    MemberInfo {
        id: MemberId(m.id()),
        name: m.name().to_string(),
        peer_urls: m.peer_urls().to_vec(),
        client_urls: m.client_urls().to_vec(),
        is_learner: m.is_learner(),
    }
}

fn check_https(url: &str) -> Result<()> {
    if url.starts_with("https://") {
        Ok(())
    } else {
        Err(MembershipError::NotHttps {
            url: url.to_string(),
        })
    }
}

fn dedup(urls: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in urls {
        if !out.contains(u) {
            out.push(u.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: tonic::Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message))
    }

    #[test]
    fn etcd_errors_are_told_apart_by_message() {
        use tonic::Code::*;
        let cases = [
            (
                FailedPrecondition,
                "etcdserver: too many learner members in cluster",
                EtcdErrorKind::TooManyLearners,
            ),
            (
                Unavailable,
                "etcdserver: unhealthy cluster",
                EtcdErrorKind::Unhealthy,
            ),
            (
                FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
                EtcdErrorKind::LearnerNotReady,
            ),
            (
                FailedPrecondition,
                "etcdserver: can only promote a learner member",
                EtcdErrorKind::MemberNotLearner,
            ),
            (
                FailedPrecondition,
                "etcdserver: Peer URLs already exists",
                EtcdErrorKind::PeerUrlExists,
            ),
            (
                NotFound,
                "etcdserver: member not found",
                EtcdErrorKind::MemberNotFound,
            ),
            (
                Unavailable,
                "etcdserver: rpc not supported for learner",
                EtcdErrorKind::NotSupportedForLearner,
            ),
            (
                Unavailable,
                "etcdserver: no leader",
                EtcdErrorKind::NoLeader,
            ),
            (
                DeadlineExceeded,
                "context deadline exceeded",
                EtcdErrorKind::Timeout,
            ),
            (Unavailable, "tcp connect error", EtcdErrorKind::Unavailable),
            (
                Unavailable,
                "etcdserver: request timed out, waiting for the applied index took too long",
                EtcdErrorKind::Other,
            ),
        ];
        for (code, message, kind) in cases {
            assert_eq!(
                RpcError::from(status(code, message)).kind,
                kind,
                "{message}"
            );
        }
    }

    #[test]
    fn tls_failures_say_what_is_wrong_and_what_to_do() {
        let files = EtcdTls::from_cert_dir(Path::new("/pki"));
        let cases = [
            (
                "invalid peer certificate: BadSignature: transport error",
                "the etcd server's certificate is not signed by the CA this tool trusts (/pki/etcd/ca.crt): pass this cluster's etcd CA with --etcd-cafile",
            ),
            (
                "invalid peer certificate: UnknownIssuer",
                "not signed by the CA this tool trusts",
            ),
            (
                "invalid peer certificate: certificate expired: verification time 20 (UNIX), but certificate is not valid after 10 (10 seconds ago)",
                "the etcd server presents an expired certificate",
            ),
            (
                "invalid peer certificate: certificate not valid yet: verification time 10 (UNIX), but certificate is not valid before 20 (10 seconds in future)",
                "not valid yet: check the clocks",
            ),
            (
                "invalid peer certificate: certificate not valid for name \"10.0.0.9\"; certificate is only valid for IpAddress(10.0.0.1)",
                "does not cover the address this tool connected to",
            ),
            (
                "received fatal alert: BadCertificate: transport error",
                "the etcd server refused this tool's client certificate /pki/etcd/healthcheck-client.crt",
            ),
            (
                "received fatal alert: CertificateExpired",
                "refused this tool's client certificate",
            ),
            (
                "received corrupt message of type InvalidContentType: transport error",
                "the endpoint does not speak TLS",
            ),
        ];
        for (message, hint) in cases {
            let got = tls_hint(message, &files, None).unwrap_or_default();
            assert!(got.contains(hint), "{message}: {got}");
        }
        for message in [
            "tcp connect error: Connection refused (os error 111)",
            "etcdserver: unhealthy cluster",
            "transport error: connection closed",
        ] {
            assert_eq!(tls_hint(message, &files, None), None, "{message}");
        }
        // A closed connection is explained only by a client certificate the CA did not sign.
        let got = tls_hint(
            "operation was canceled: transport error: connection closed",
            &files,
            Some("this tool's client certificate c.crt is not signed by the CA ca.crt"),
        )
        .unwrap();
        assert!(
            got.starts_with("the etcd server closed the connection after the TLS handshake, and this tool's client certificate c.crt is not signed by the CA ca.crt"),
            "{got}"
        );
    }

    #[test]
    fn plaintext_endpoints_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tls = EtcdTls::from_cert_dir(dir.path());
        let err = EtcdClient::new(
            &["http://127.0.0.1:2379".to_string()],
            &tls,
            DEFAULT_RPC_TIMEOUT,
        )
        .unwrap_err();
        assert!(matches!(err, MembershipError::NotHttps { .. }), "{err}");
        let err = EtcdClient::new(&["127.0.0.1:2379".to_string()], &tls, DEFAULT_RPC_TIMEOUT)
            .unwrap_err();
        assert!(matches!(err, MembershipError::NotHttps { .. }), "{err}");
    }

    #[test]
    fn default_tls_files_are_kubeadms() {
        let tls = EtcdTls::from_cert_dir(Path::new("/etc/kubernetes/pki")).with_overrides(
            None,
            Some("/tmp/c.crt".into()),
            None,
        );
        assert_eq!(tls.ca, Path::new("/etc/kubernetes/pki/etcd/ca.crt"));
        assert_eq!(tls.cert, Path::new("/tmp/c.crt"));
        assert_eq!(
            tls.key,
            Path::new("/etc/kubernetes/pki/etcd/healthcheck-client.key")
        );
    }
}
