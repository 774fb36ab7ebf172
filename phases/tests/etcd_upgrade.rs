//! `upgrade etcd` on a real three-member TLS cluster, 3.4.23 → 3.5.1 (the two releases
//! the harness installs): one member at a time, each restarted from its changed manifest
//! by a manifest-watching stand-in for the kubelet in this file, with a writer putting
//! keys throughout. A target whose image cannot run comes back on the old release.
//!
//! The version-path refusals (3.5.16 → 3.6.14, 3.5.30 → 3.7.1, 3.6.14 → 3.5.30, a voter
//! down) are unit tests of `phases::etcd_upgrade::plan`.
//!
//! Loopback id 83 (see `common`'s registry).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::TestCluster;
use common::{ClientTls, EtcdProcess, EtcdVersion};
use k8s_openapi::api::core::v1::Pod;
use phases::etcd_upgrade::{self, Outcome, UpgradeEtcdError, UpgradeOptions};
use phases::membership::promote;
use phases::snapshot::SaveOptions;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The kubelet's part: (re)starts node `n`'s member whenever its manifest changes, with
/// the etcd binary its image tag names. An image tag no binary matches is an image that
/// cannot be pulled: the member stays down.
struct Kubelet {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Kubelet {
    fn watch(c: Arc<TestCluster>, nodes: Vec<usize>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let binaries: HashMap<String, std::path::PathBuf> = EtcdVersion::ALL
            .iter()
            .filter_map(|v| common::etcd_binary(*v).map(|b| (v.image_tag().to_string(), b)))
            .collect();
        let thread = std::thread::spawn(move || {
            let mut seen: HashMap<usize, String> = nodes
                .iter()
                .map(|n| {
                    let text = std::fs::read_to_string(c.node(*n).manifest_path()).unwrap();
                    (*n, text)
                })
                .collect();
            while !flag.load(Ordering::Relaxed) {
                for &n in &nodes {
                    let node = c.node(n);
                    let Ok(text) = std::fs::read_to_string(node.manifest_path()) else {
                        continue;
                    };
                    if seen.get(&n) == Some(&text) {
                        continue;
                    }
                    seen.insert(n, text.clone());
                    let pod: Pod = serde_yaml::from_str(&text).expect("a Pod");
                    let container = &pod.spec.expect("spec").containers[0];
                    let tag = container
                        .image
                        .as_deref()
                        .and_then(|i| i.rsplit_once(':'))
                        .map(|(_, t)| t.to_string())
                        .unwrap_or_default();
                    let mut slot = node.process.lock().unwrap();
                    if let Some(p) = slot.as_mut() {
                        p.kill();
                    }
                    *slot = binaries.get(&tag).map(|binary| {
                        EtcdProcess::start(
                            binary,
                            container.command.as_ref().expect("a command"),
                            node.ip,
                            &node.dir.join("etcd.log"),
                        )
                        .expect("start")
                    });
                    eprintln!("kubelet: node{n} restarted with image tag {tag}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn options(c: &TestCluster, n: usize, tag: &str) -> UpgradeOptions {
    let node = c.node(n);
    UpgradeOptions {
        target_tag: tag.to_string(),
        peer_url: node.peer_url(),
        cert_dir: node.cert_dir.clone(),
        manifest_dir: node.manifest_dir.clone(),
        backup_dir: node.backup_dir.clone(),
        snapshot: SaveOptions {
            keep: Some(2),
            ..SaveOptions::new(node.dir.join("snapshots"))
        },
        taken_snapshot: None,
        timeout: TIMEOUT,
        dry_run: false,
    }
}

/// Puts keys one after another until stopped; returns the acknowledged ones.
fn writer(c: &TestCluster, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<String>> {
    let urls: Vec<String> = c.nodes.iter().map(|n| n.client_url()).collect();
    let tls = ClientTls::healthcheck(&c.node(0).cert_dir);
    tokio::spawn(async move {
        let mut client = etcd_client::Client::connect(urls, Some(tls.connect_options().unwrap()))
            .await
            .expect("connect");
        let mut acked = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("writer/{i:06}");
            if client.put(key.clone(), "v", None).await.is_ok() {
                acked.push(key);
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        acked
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_at_a_time_3_4_to_3_5_and_a_bad_image_rolls_back() {
    let test = async {
        let c = TestCluster::new(EtcdVersion::V3_4, 83, 3);
        common::require_etcd(EtcdVersion::V3_5);
        let c = Arc::new(c);
        c.bootstrap();
        for n in 1..3 {
            let log = Mutex::new(Vec::new());
            c.join(n, TIMEOUT, &log).await.expect("join");
            c.start(n);
            promote::promote(&c.client(0, n), &c.promote_options(n, TIMEOUT), &mut |_| {})
                .await
                .expect("promote");
        }
        let _kubelet = Kubelet::watch(c.clone(), vec![0, 1, 2]);
        let stop = Arc::new(AtomicBool::new(false));
        let writes = writer(&c, stop.clone());
        let cfg = |n: usize| c.node(n).config.clone();

        // A tag no binary matches: the member never comes back on it; the old manifest is
        // put back and the member returns on 3.4.23.
        let err = etcd_upgrade::upgrade(
            &c.client(1, 1),
            &c.node(1).tls(),
            &cfg(1),
            &options(&c, 1, "3.5.99-0"),
            &mut |e| eprintln!("node1: {e:?}"),
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, UpgradeEtcdError::RolledBack { .. }), "{text}");
        assert!(text.contains("did not come back on etcd 3.5.99"), "{text}");
        assert!(text.contains("running etcd 3.4.23 again"), "{text}");
        assert!(text.contains("snapshot taken before the change"), "{text}");
        let status = c
            .client(1, 1)
            .status(&c.node(1).client_url())
            .await
            .unwrap();
        assert_eq!(status.version, "3.4.23");

        // Now every member, one at a time. node0 bootstrapped the cluster and most likely
        // leads: its leadership moves first.
        for n in 0..3 {
            let outcome = etcd_upgrade::upgrade(
                &c.client(n, n),
                &c.node(n).tls(),
                &cfg(n),
                &options(&c, n, "3.5.1-0"),
                &mut |e| eprintln!("node{n}: {e:?}"),
            )
            .await
            .unwrap_or_else(|e| panic!("node{n}: {e}\n{}", c.log_tail(n)));
            let Outcome::Upgraded {
                from,
                to,
                snapshot,
                backup,
                ..
            } = outcome
            else {
                panic!("node{n}: {outcome:?}");
            };
            assert_eq!(
                (from.to_string(), to.to_string()),
                ("3.4.23".into(), "3.5.1".into())
            );
            assert!(snapshot.path.exists());
            assert!(backup.is_some_and(|b| b.exists()));
            let status = c
                .client(n, n)
                .status(&c.node(n).client_url())
                .await
                .unwrap();
            assert_eq!(status.version, "3.5.1", "node{n}");
        }
        // A rerun changes nothing.
        let again = etcd_upgrade::upgrade(
            &c.client(0, 0),
            &c.node(0).tls(),
            &cfg(0),
            &options(&c, 0, "3.5.1-0"),
            &mut |_| {},
        )
        .await
        .expect("rerun");
        assert!(matches!(again, Outcome::Unchanged { .. }), "{again:?}");

        stop.store(true, Ordering::Relaxed);
        let acked = writes.await.unwrap();
        assert!(
            acked.len() > 50,
            "the writer made progress: {}",
            acked.len()
        );
        // No acknowledged write was lost.
        let node = c.node(2);
        let mut kv = etcd_client::Client::connect(
            [node.client_url()],
            Some(
                ClientTls::healthcheck(&node.cert_dir)
                    .connect_options()
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
        let got = kv
            .get(
                "writer/",
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_keys_only(),
                ),
            )
            .await
            .unwrap();
        let keys: std::collections::HashSet<String> = got
            .kvs()
            .iter()
            .map(|kv| kv.key_str().unwrap().to_string())
            .collect();
        for k in &acked {
            assert!(keys.contains(k), "{k} was acknowledged and is gone");
        }
        eprintln!("writer: {} puts acknowledged, all present", acked.len());
    };
    tokio::time::timeout(Duration::from_secs(300), test)
        .await
        .expect("the test finished within 300 s");
}
