//! `upgrade etcd` through the library on a real three-member TLS cluster, 3.4.23 →
//! 3.5.30: one member at a time, each restarted from its changed manifest by the kubelet
//! stand-in (`common::kubelet`, running the etcd release the manifest's image tag names),
//! with the faults suite's writer putting keys throughout: no acknowledged write lost,
//! quorum never lost, every member ends on 3.5.30, a rerun changes nothing. First, a
//! target whose image cannot be pulled (3.5.99-0) comes back on the old release with the
//! old manifest, and the error says so.
//!
//! The rolling upgrade 3.5.30 → 3.6.14 → 3.7.1 through the CLI workflow, the refusals on
//! real etcd and the kill-and-rerun scenario are in the root package's
//! `tests/upgrade_cli.rs`; the version rules alone are unit tests of
//! `phases::etcd_upgrade::plan`.
//!
//! Loopback id 83 (see `common`'s registry).

mod common;

use std::time::Duration;

use common::cluster::TestCluster;
use common::faults::{assert_invariants, Expected, Writer};
use common::kubelet::KubeletEvent;
use common::EtcdVersion;
use phases::etcd_upgrade::{self, Outcome, UpgradeEtcdError, UpgradeOptions};
use phases::snapshot::SaveOptions;

const TIMEOUT: Duration = Duration::from_secs(30);
/// The kubelet stand-in's probes at a tenth of kubeadm's durations.
const SCALE: f64 = 0.1;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_at_a_time_3_4_to_3_5_and_a_bad_image_rolls_back() {
    let test = async {
        let c = TestCluster::new(EtcdVersion::V3_4_23, 83, 3);
        common::require_etcd(EtcdVersion::V3_5_30);
        let kubelets = c.start_with_kubelets(SCALE, TIMEOUT).await;
        let writer = Writer::start(&c, &[0, 1, 2]).await;
        let cfg = |n: usize| c.node(n).config.clone();

        // A tag no binary matches: the member never comes back on it; the old manifest is
        // put back and the member returns on 3.4.23.
        let before = std::fs::read(c.node(1).manifest_path()).unwrap();
        let err = etcd_upgrade::upgrade(
            &c.client(1, 1),
            &c.node(1).tls(),
            &cfg(1),
            &UpgradeOptions {
                timeout: Duration::from_secs(8),
                ..options(&c, 1, "3.5.99-0")
            },
            &mut |e| eprintln!("node1: {e:?}"),
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, UpgradeEtcdError::RolledBack { .. }), "{text}");
        assert!(text.contains("did not come back on etcd 3.5.99"), "{text}");
        assert!(text.contains("running etcd 3.4.23 again"), "{text}");
        assert!(text.contains("snapshot taken before the change"), "{text}");
        assert!(
            kubelets[1].events().iter().any(|e| matches!(e,
                KubeletEvent::StartFailed(why) if why.contains("3.5.99-0"))),
            "the kubelet could not start the bad image: {:#?}",
            kubelets[1].events()
        );
        assert_eq!(std::fs::read(c.node(1).manifest_path()).unwrap(), before);
        assert_eq!(c.wait_answering(1, TIMEOUT).await, "3.4.23");

        // Now every member, one at a time. node0 bootstrapped the cluster and most likely
        // leads: its leadership moves first.
        for n in 0..3 {
            let outcome = etcd_upgrade::upgrade(
                &c.client(n, n),
                &c.node(n).tls(),
                &cfg(n),
                &options(&c, n, "3.5.30-0"),
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
                ("3.4.23".into(), "3.5.30".into())
            );
            assert!(snapshot.path.exists());
            assert!(backup.is_some_and(|b| b.exists()));
            let status = c
                .client(n, n)
                .status(&c.node(n).client_url())
                .await
                .unwrap();
            assert_eq!(status.version, "3.5.30", "node{n}");
        }
        // A rerun changes nothing.
        let again = etcd_upgrade::upgrade(
            &c.client(0, 0),
            &c.node(0).tls(),
            &cfg(0),
            &options(&c, 0, "3.5.30-0"),
            &mut |_| {},
        )
        .await
        .expect("rerun");
        assert!(matches!(again, Outcome::Unchanged { .. }), "{again:?}");

        let report = writer.stop().await;
        report.assert_quorum_never_lost_while_members_restart();
        assert!(
            report.puts.len() > 50,
            "the writer made progress: {}",
            report.puts.len()
        );
        assert_invariants(
            &c,
            &[0, 1, 2],
            Expected {
                voters: &[0, 1, 2],
                learners: &[],
            },
            &report.keys(),
        )
        .await;
        eprintln!(
            "writer: {} puts acknowledged, all present; {} retried; longest gap {:?}",
            report.puts.len(),
            report.retried(),
            report.longest_gap()
        );
        drop(kubelets);
    };
    tokio::time::timeout(Duration::from_secs(240), test)
        .await
        .expect("the test finished within 240 s");
}
