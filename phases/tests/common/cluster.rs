//! A test cluster built only through our phases: each node has its own kubeadm
//! configuration, certificate directory (sharing one CA) and data directory; members run
//! from the manifest our phases wrote, the way the kubelet would run them.
//!
//! The cluster is shared between tasks (`Arc<TestCluster>`), so joins can run
//! concurrently; every member process is killed when the cluster is dropped, also when a
//! test fails.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use phases::config::KubeadmConfig;
use phases::manifest::{self, ManifestOptions};
use phases::membership::join::{self, JoinOptions, Joined, ManifestStep};
use phases::membership::liveness::LocalLearner;
use phases::membership::promote::PromoteOptions;
use phases::membership::{EtcdClient, EtcdTls, Event, Result, Selector, DEFAULT_RPC_TIMEOUT};

use super::kubelet::{self, KubeletEvent, KubeletOptions, Runtime};
use super::{
    client_url, etcdctl, loopback_range_for, peer_url, run_ok, ClientTls, EtcdProcess, EtcdVersion,
    TestCa,
};

/// The etcdctl used for independent checks, whatever the members run: Debian's 3.4 speaks
/// the same v3 API to 3.5 members, and one client keeps the checks comparable.
pub const ETCDCTL: EtcdVersion = EtcdVersion::V3_4;

/// How long a member may take to answer after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One node: its files and, once started, its etcd process.
pub struct Node {
    pub index: u8,
    pub name: String,
    pub ip: IpAddr,
    pub dir: PathBuf,
    pub cert_dir: PathBuf,
    pub data_dir: PathBuf,
    pub manifest_dir: PathBuf,
    pub backup_dir: PathBuf,
    pub config: KubeadmConfig,
    pub process: Mutex<Option<EtcdProcess>>,
}

impl Node {
    pub fn client_url(&self) -> String {
        client_url(self.ip)
    }

    pub fn peer_url(&self) -> String {
        peer_url(self.ip)
    }

    pub fn manifest_path(&self) -> PathBuf {
        manifest::manifest_path(&self.manifest_dir)
    }

    pub fn tls(&self) -> EtcdTls {
        EtcdTls::from_cert_dir(&self.cert_dir)
    }
}

/// The nodes of one test, on the loopback range of its test id.
pub struct TestCluster {
    pub version: EtcdVersion,
    pub etcd: PathBuf,
    pub dir: tempfile::TempDir,
    pub ca: TestCa,
    pub nodes: Vec<Node>,
}

impl TestCluster {
    /// `nodes` nodes (certificates and configuration made, nothing started) for etcd
    /// `version` on the addresses of `test_id` for that version
    /// ([`loopback_range_for`]). Fails the test when that etcd is not installed.
    pub fn new(version: EtcdVersion, test_id: u8, nodes: u8) -> Self {
        let etcd = super::require_etcd(version);
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = TestCa::new(&dir.path().join("ca"));
        let address = loopback_range_for(test_id, version);
        let nodes = (0..nodes)
            .map(|i| make_node(dir.path(), &ca, version, i, IpAddr::V4(address(i))))
            .collect();
        Self {
            version,
            etcd,
            dir,
            ca,
            nodes,
        }
    }

    pub fn node(&self, n: usize) -> &Node {
        &self.nodes[n]
    }

    /// A client of the cluster, reaching it through node `via`'s client URL, with node
    /// `creds`'s healthcheck-client certificate.
    pub fn client(&self, via: usize, creds: usize) -> EtcdClient {
        EtcdClient::new(
            &[self.node(via).client_url()],
            &self.node(creds).tls(),
            DEFAULT_RPC_TIMEOUT,
        )
        .expect("a client")
    }

    /// Node 0 as the first member of a new cluster: its manifest from `etcd_pod` with no
    /// initial cluster, started, and healthy.
    pub fn bootstrap(&self) {
        self.write_first_member_manifest();
        self.start(0);
        self.wait_healthy(0);
    }

    /// Node 0's manifest as the first member of a new cluster, as `phase etcd local`
    /// writes it; nothing started.
    pub fn write_first_member_manifest(&self) {
        let node = self.node(0);
        let pod = manifest::etcd_pod(
            &node.config,
            &ManifestOptions::first_member(node.cert_dir.clone()),
        )
        .expect("first member manifest");
        let yaml = manifest::render_yaml(&pod).expect("yaml");
        manifest::write_manifest(&node.manifest_dir, &node.backup_dir, &yaml)
            .expect("write manifest");
    }

    /// Starts node `n` from the manifest on disk, as the kubelet would.
    pub fn start(&self, n: usize) {
        let node = self.node(n);
        let text = std::fs::read_to_string(node.manifest_path())
            .unwrap_or_else(|e| panic!("no manifest for {}: {e}", node.name));
        let pod: Pod = serde_yaml::from_str(&text).expect("a Pod");
        let command = pod.spec.expect("spec").containers[0]
            .command
            .clone()
            .expect("a command");
        let process = EtcdProcess::start(&self.etcd, &command, node.ip, &node.dir.join("etcd.log"))
            .unwrap_or_else(|e| panic!("start {}: {e}", node.name));
        *node.process.lock().unwrap() = Some(process);
    }

    /// Waits until node `n` answers (a learner: Status; a voter: also a linearizable read).
    pub fn wait_healthy(&self, n: usize) {
        let node = self.node(n);
        let mut guard = node.process.lock().unwrap();
        let process = guard
            .as_mut()
            .unwrap_or_else(|| panic!("{} is not started", node.name));
        process
            .wait_healthy(
                &node.client_url(),
                &ClientTls::healthcheck(&node.cert_dir),
                START_TIMEOUT,
            )
            .unwrap_or_else(|e| panic!("{} ({}): {e}", node.name, self.version));
    }

    /// SIGKILL for node `n`'s member.
    pub fn kill(&self, n: usize) {
        if let Some(p) = self.node(n).process.lock().unwrap().as_mut() {
            p.kill();
        }
    }

    /// The end of node `n`'s member log (also of a member a kubelet stand-in runs: both
    /// append to `<node dir>/etcd.log`).
    pub fn log_tail(&self, n: usize) -> String {
        match self.node(n).process.lock().unwrap().as_ref() {
            Some(p) => p.log_tail(30),
            None => {
                let log = std::fs::read_to_string(self.node(n).dir.join("etcd.log"))
                    .unwrap_or_else(|_| "<not started>".to_string());
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(30)..].join("\n")
            }
        }
    }

    /// Waits up to `timeout` until node `n`'s member answers Status knowing a leader;
    /// the member's version.
    pub async fn wait_answering(&self, n: usize, timeout: Duration) -> String {
        let client = self.client(n, n);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = match client.status(&self.node(n).client_url()).await {
                Ok(s) if s.healthy() => return s.version,
                Ok(s) => format!("{:?}", s.errors),
                Err(e) => e.to_string(),
            };
            assert!(
                tokio::time::Instant::now() < deadline,
                "node{n} did not answer within {timeout:?}: {last}\n{}",
                self.log_tail(n)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every node a member, each run from its manifest by its own kubelet stand-in
    /// ([`Self::run_kubelet_by_image`], probes scaled by `time_scale`): node 0 the first
    /// member, the others joined as learners and promoted one after the other, as
    /// `kubeadm-etcd init` and `join` would. The kubelets, in node order; dropping them
    /// stops the members.
    pub async fn start_with_kubelets(&self, time_scale: f64, timeout: Duration) -> Vec<KubeletRun> {
        self.write_first_member_manifest();
        let mut kubelets =
            vec![self.run_kubelet_by_image(0, time_scale, Duration::from_millis(200))];
        self.wait_answering(0, timeout).await;
        for n in 1..self.nodes.len() {
            let events = Mutex::new(Vec::new());
            self.join(n, timeout, &events)
                .await
                .unwrap_or_else(|e| panic!("join node{n}: {e}"));
            kubelets.push(self.run_kubelet_by_image(n, time_scale, Duration::from_millis(200)));
            phases::membership::promote::promote(
                &self.client(0, n),
                &self.promote_options(n, timeout),
                &mut |_| {},
            )
            .await
            .unwrap_or_else(|e| panic!("promote node{n}: {e}\n{}", self.log_tail(n)));
        }
        for n in 0..self.nodes.len() {
            self.wait_answering(n, timeout).await;
        }
        kubelets
    }

    /// What `phase etcd join-learner` passes for node `n`.
    pub fn join_options(&self, n: usize, timeout: Duration) -> JoinOptions {
        let node = self.node(n);
        JoinOptions {
            name: node.name.clone(),
            peer_url: node.peer_url(),
            data_dir: node.data_dir.clone(),
            wipe_data_dir: false,
            replace: false,
            timeout,
            dry_run: false,
        }
    }

    /// `phase etcd join-learner` for node `n` through node 0: add as a learner, then write
    /// the manifest. Events go to `events`.
    pub async fn join(
        &self,
        n: usize,
        timeout: Duration,
        events: &Mutex<Vec<Event>>,
    ) -> Result<(Joined, ManifestStep)> {
        self.join_with(n, self.join_options(n, timeout), events)
            .await
    }

    pub async fn join_with(
        &self,
        n: usize,
        opts: JoinOptions,
        events: &Mutex<Vec<Event>>,
    ) -> Result<(Joined, ManifestStep)> {
        let node = self.node(n);
        let client = self.client(0, n);
        let joined =
            join::add_learner(&client, &opts, &mut |e| events.lock().unwrap().push(e)).await?;
        let step = join::write_manifest(
            &node.config,
            &node.cert_dir,
            &node.manifest_dir,
            &node.backup_dir,
            &joined,
            false,
        )?;
        Ok((joined, step))
    }

    /// What `phase etcd promote` passes for node `n`: its peer URL.
    pub fn promote_options(&self, n: usize, timeout: Duration) -> PromoteOptions {
        PromoteOptions {
            selectors: vec![Selector::PeerUrl(self.node(n).peer_url())],
            timeout,
            health_timeout: Duration::from_secs(20),
            stall_timeout: None,
            rollback_on_timeout: false,
            local: self.local_learner(n),
        }
    }

    /// What `phase etcd promote` reads on node `n`: its manifest, for the learner's
    /// metrics listener and data directory (`None` before join-learner wrote it).
    pub fn local_learner(&self, n: usize) -> Option<LocalLearner> {
        let node = self.node(n);
        LocalLearner::from_manifest(&node.manifest_path(), Some(node.ip))
            .unwrap_or_else(|e| panic!("node{n}: {e}"))
    }

    /// `etcdctl member list` with node `creds`'s healthcheck-client certificate, through
    /// node 0: `(hex id, name, is_learner)`, sorted by name.
    pub fn etcdctl_members(&self, creds: usize) -> Vec<(String, String, bool)> {
        let node = self.node(creds);
        let out = run_ok(
            etcdctl(
                ETCDCTL,
                &[self.node(0).client_url()],
                &ClientTls::healthcheck(&node.cert_dir),
            )
            .args(["member", "list", "-w", "json"]),
        );
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let mut members: Vec<(String, String, bool)> = v["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| {
                (
                    format!("{:x}", m["ID"].as_u64().expect("ID")),
                    m["name"].as_str().unwrap_or_default().to_string(),
                    m["isLearner"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        members.sort_by(|a, b| a.1.cmp(&b.1));
        members
    }

    /// `etcdctl put` through node `via`: proves the cluster commits writes (has quorum).
    pub fn etcdctl_put(&self, via: usize, key: &str) {
        let node = self.node(via);
        run_ok(
            etcdctl(
                ETCDCTL,
                &[node.client_url()],
                &ClientTls::healthcheck(&node.cert_dir),
            )
            .args(["put", key, "v"]),
        );
    }
}

fn make_node(root: &Path, ca: &TestCa, version: EtcdVersion, index: u8, ip: IpAddr) -> Node {
    let name = format!("node{index}");
    let dir = root.join(&name);
    let cert_dir = ca.node_certs(&dir.join("pki"), &name, ip);
    let data_dir = dir.join("data");
    let (kind, endpoint) = if index == 0 {
        (
            "InitConfiguration",
            format!("localAPIEndpoint:\n  advertiseAddress: {ip}\n"),
        )
    } else {
        (
            "JoinConfiguration",
            format!("controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: {ip}\n"),
        )
    };
    let yaml = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: {kind}\nnodeRegistration:\n  name: {name}\n{endpoint}---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: {}\ncertificatesDir: {}\netcd:\n  local:\n    dataDir: {}\n    imageTag: {}\n",
        version.kubernetes_version(),
        cert_dir.display(),
        data_dir.display(),
        version.image_tag()
    );
    let path = dir.join("kubeadm.yaml");
    std::fs::write(&path, &yaml).expect("write config");
    let config = phases::config::load_file(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Node {
        index,
        name,
        ip,
        manifest_dir: dir.join("manifests"),
        backup_dir: dir.join("tmp"),
        cert_dir,
        data_dir,
        dir,
        config,
        process: Mutex::new(None),
    }
}

/// Node `n`'s Pod run by the kubelet's logic ([`super::kubelet::run`], the same code as
/// `hack/kubelet-standin.rs`) on a thread of its own: started when the manifest appears,
/// restarted when it changes or exits, probed as the manifest says. Dropping it stops the
/// loop and kills the member.
pub struct KubeletRun {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    events: Arc<Mutex<Vec<KubeletEvent>>>,
}

impl KubeletRun {
    /// Every event so far, in order.
    pub fn events(&self) -> Vec<KubeletEvent> {
        self.events.lock().unwrap().clone()
    }

    /// The pid of the container started last.
    pub fn pid(&self) -> Option<u32> {
        self.events().iter().rev().find_map(|e| match e {
            KubeletEvent::Started { pid, .. } => Some(*pid),
            _ => None,
        })
    }

    /// How often the container was restarted.
    pub fn restarts(&self) -> u32 {
        self.events()
            .iter()
            .rev()
            .find_map(|e| match e {
                KubeletEvent::Started { restarts, .. } => Some(*restarts),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Waits up to `timeout` until `done` holds for the events so far; them otherwise.
    pub fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[KubeletEvent]) -> bool,
    ) -> std::result::Result<(), Vec<KubeletEvent>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let events = self.events();
            if done(&events) {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(events);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for an event `wanted` accepts; the events so far otherwise.
    pub fn wait_for(
        &self,
        timeout: Duration,
        wanted: impl Fn(&KubeletEvent) -> bool,
    ) -> std::result::Result<KubeletEvent, Vec<KubeletEvent>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(&wanted) {
                return Ok(e);
            }
            if std::time::Instant::now() >= deadline {
                return Err(self.events());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KubeletRun {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Containers are [`EtcdProcess`]es: bound to the test process, logging to one file.
struct HarnessRuntime {
    /// The etcd binary; `None`: the one the image tag names (see [`binary_for_image`]).
    etcd: Option<PathBuf>,
    ip: IpAddr,
    log: PathBuf,
}

/// The etcd binary of the release an image (`registry.k8s.io/etcd:3.6.14-0`) names, among
/// the releases the tests know. An image no binary matches cannot be pulled: the start
/// fails, as the kubelet's image pull would, and is retried after the back-off.
pub fn binary_for_image(image: &str) -> std::io::Result<PathBuf> {
    let tag = image.rsplit_once(':').map_or("", |(_, t)| t);
    EtcdVersion::ALL
        .iter()
        .find(|v| v.image_tag() == tag)
        .and_then(|v| super::etcd_binary(*v))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("cannot pull {image}: no installed etcd binary has the tag {tag:?}"),
            )
        })
}

impl Runtime for HarnessRuntime {
    type Container = EtcdProcess;

    fn start(&mut self, image: &str, command: &[String]) -> std::io::Result<EtcdProcess> {
        let binary = match &self.etcd {
            Some(b) => b.clone(),
            None => binary_for_image(image)?,
        };
        EtcdProcess::start(&binary, command, self.ip, &self.log)
    }

    fn kill(&mut self, container: &mut EtcdProcess) {
        container.kill();
    }

    fn exited(&mut self, container: &mut EtcdProcess) -> Option<String> {
        container.try_exit_status().map(|s| s.to_string())
    }

    fn pid(&self, container: &EtcdProcess) -> u32 {
        container.pid()
    }
}

impl TestCluster {
    /// Runs node `n`'s Pod the way the kubelet would (see [`KubeletRun`]), with the
    /// manifest's probe durations multiplied by `time_scale`.
    pub fn run_kubelet(&self, n: usize, time_scale: f64, restart_backoff: Duration) -> KubeletRun {
        self.kubelet_with(n, time_scale, restart_backoff, Some(self.etcd.clone()))
    }

    /// [`Self::run_kubelet`], running the etcd release the manifest's image tag names
    /// rather than the cluster's: a manifest rewritten for another release (an upgrade)
    /// restarts the member on that release.
    pub fn run_kubelet_by_image(
        &self,
        n: usize,
        time_scale: f64,
        restart_backoff: Duration,
    ) -> KubeletRun {
        self.kubelet_with(n, time_scale, restart_backoff, None)
    }

    fn kubelet_with(
        &self,
        n: usize,
        time_scale: f64,
        restart_backoff: Duration,
        etcd: Option<PathBuf>,
    ) -> KubeletRun {
        let node = self.node(n);
        let options = KubeletOptions {
            time_scale,
            restart_backoff,
            ..KubeletOptions::new(&node.manifest_path())
        };
        let mut runtime = HarnessRuntime {
            etcd,
            ip: node.ip,
            log: node.dir.join("etcd.log"),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(Mutex::new(Vec::new()));
        let thread = std::thread::Builder::new()
            .name(format!("kubelet-{}", node.name))
            .spawn({
                let (stop, events) = (stop.clone(), events.clone());
                move || {
                    kubelet::run(&options, &mut runtime, &stop, &mut |e| {
                        events.lock().unwrap().push(e)
                    })
                }
            })
            .expect("a kubelet thread");
        KubeletRun {
            stop,
            thread: Some(thread),
            events,
        }
    }
}
