//! Snapshots on real etcd: save from a live TLS cluster, more writes, check the file,
//! restore it into a new one-member cluster run from our manifest (only the snapshot's
//! keys are there), and grow that cluster through a learner that is promoted; an altered
//! and a truncated copy are refused. On every etcd of the test matrix (3.4.23, 3.5.30,
//! 3.6.14, 3.7.1: `save_restore_and_join_a_learner::etcd_3_6_14` and so on); the restore
//! runs etcd 3.4's `etcdctl` on 3.4.23 and the `etcdutl` of the release in use from 3.5
//! on. A full disk mid-save leaves nothing behind (3.5.1).
//!
//! Loopback ids 80 (the matrix test) and 82 (see `common`'s registry).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use common::cluster::TestCluster;
use common::{ClientTls, EtcdVersion};
use phases::membership::promote::{self, PromoteOutcome};
use phases::snapshot::{
    self, RestoreOptions, SaveEvent, SaveOptions, SnapshotError, ToolKind, ToolLookup,
};

const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(150), f)
        .await
        .expect("the test finished within 150 s");
}

/// The etcd tools of the release under test live beside its etcd binary: etcdutl from
/// 3.5 on, etcdctl for 3.4 (`/usr/bin`).
fn tools_of(c: &TestCluster) -> ToolLookup {
    ToolLookup {
        explicit: None,
        search_dirs: vec![c.etcd.parent().expect("a directory").to_path_buf()],
    }
}

async fn etcd_client(c: &TestCluster, n: usize) -> etcd_client::Client {
    let node = c.node(n);
    etcd_client::Client::connect(
        [node.client_url()],
        Some(
            ClientTls::healthcheck(&node.cert_dir)
                .connect_options()
                .expect("tls"),
        ),
    )
    .await
    .expect("connect")
}

async fn put_many(client: &mut etcd_client::Client, prefix: &str, n: usize, size: usize) {
    for i in 0..n {
        client
            .put(format!("{prefix}/{i:04}"), vec![b'x'; size], None)
            .await
            .expect("put");
    }
}

async fn count(client: &mut etcd_client::Client, prefix: &str) -> i64 {
    client
        .get(
            format!("{prefix}/"),
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await
        .expect("get")
        .count()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn save_restore_join(version: EtcdVersion, test_id: u8) {
    let c = TestCluster::new(version, test_id, 2);
    c.bootstrap();
    let mut kv = etcd_client(&c, 0).await;
    put_many(&mut kv, "before", 50, 100).await;

    // Save, twice, keeping one: the second replaces the first.
    let dir = c.dir.path().join("snapshots");
    let opts = SaveOptions {
        keep: Some(1),
        ..SaveOptions::new(&dir)
    };
    let client = c.client(0, 0);
    let events = Mutex::new(Vec::new());
    let first = snapshot::save(&client, &c.node(0).tls(), &opts, &mut |e| {
        events.lock().unwrap().push(e)
    })
    .await
    .unwrap_or_else(|e| panic!("{version}: save: {e}"));
    let saved = snapshot::save(&client, &c.node(0).tls(), &opts, &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("{version}: save: {e}"));
    assert!(!first.path.exists(), "--keep 1 removed the older snapshot");
    assert_eq!(saved.removed, vec![first.path.clone()]);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&saved.path), 0o600);
    assert_eq!(saved.member_name, "node0");
    assert!(saved.revision >= 51, "{saved:?}");
    let events = events.into_inner().unwrap();
    assert!(
        matches!(events.first(), Some(SaveEvent::Source { name, .. }) if name == "node0"),
        "{events:?}"
    );
    assert!(
        matches!(events.last(), Some(SaveEvent::Progress { bytes, total, .. }) if bytes == total && *total == saved.db_size),
        "{events:?}"
    );
    // The file is what etcdctl would have written: database, then etcd's sha256.
    let verified = snapshot::verify_file(&saved.path).expect("verify");
    assert_eq!(verified.sha256, saved.sha256);
    assert_eq!(verified.file_size, saved.file_size);

    let status = snapshot::status(&saved.path, &tools_of(&c))
        .unwrap_or_else(|e| panic!("{version}: status: {e}"));
    // etcdutl 3.6+ counts the keys alive at the revision; 3.4's etcdctl and 3.5's
    // etcdutl count bucket entries (50 revisions plus membership and meta).
    if version >= EtcdVersion::V3_6_14 {
        assert_eq!(status.total_keys, 50, "{status:?}");
    } else {
        assert!((51..70).contains(&status.total_keys), "{status:?}");
    }
    assert_eq!(status.revision, saved.revision, "{status:?}");
    eprintln!(
        "{version}: saved {} bytes at revision {} in {:?}, read with {}",
        saved.file_size, status.revision, saved.elapsed, status.read_with
    );

    // Damaged copies are refused by status and restore, naming the mismatch.
    let bytes = std::fs::read(&saved.path).unwrap();
    let altered = c.dir.path().join("altered.db");
    let mut bad = bytes.clone();
    bad[bytes.len() / 2] ^= 0x40;
    std::fs::write(&altered, &bad).unwrap();
    let truncated = c.dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() - 4096]).unwrap();
    for (file, what) in [(&altered, "does not match"), (&truncated, "does not match")] {
        let err = snapshot::status(file, &tools_of(&c)).unwrap_err();
        assert!(err.to_string().contains(what), "{err}");
    }

    // More writes after the snapshot: they must not come back.
    put_many(&mut kv, "after", 20, 100).await;
    drop(kv);

    // Disaster: node0's member is gone. Its data directory is in the way, and a restore
    // never writes over one.
    c.kill(0);
    let node = c.node(0);
    let restore_opts = |snapshot: PathBuf| RestoreOptions {
        snapshot,
        cert_dir: node.cert_dir.clone(),
        manifest_dir: node.manifest_dir.clone(),
        backup_dir: node.backup_dir.clone(),
        tools: tools_of(&c),
        dry_run: false,
    };
    let err = snapshot::restore(&node.config, &restore_opts(saved.path.clone())).unwrap_err();
    assert!(
        matches!(err, SnapshotError::DataDirNotEmpty { .. }),
        "{err}"
    );
    std::fs::rename(&node.data_dir, c.dir.path().join("data.old")).unwrap();
    let err = snapshot::restore(&node.config, &restore_opts(altered.clone())).unwrap_err();
    assert!(matches!(err, SnapshotError::HashMismatch { .. }), "{err}");
    assert!(!node.data_dir.exists(), "a refused restore creates nothing");

    let restored = snapshot::restore(&node.config, &restore_opts(saved.path.clone()))
        .unwrap_or_else(|e| panic!("{version}: restore: {e}"));
    assert_eq!(
        restored.tool.kind,
        if version == EtcdVersion::V3_4_23 {
            ToolKind::Etcdctl
        } else {
            ToolKind::Etcdutl
        }
    );
    // The tool of the release that will run the data directory (3.6 moved the restore
    // out of etcdctl).
    assert_eq!(
        restored.tool.version.to_string(),
        version.version(),
        "{:?}",
        restored.tool
    );
    assert_eq!(restored.member_name, "node0");
    assert_eq!(
        restored.initial_cluster,
        format!("node0={}", node.peer_url())
    );
    assert_eq!(mode(&node.data_dir), 0o700);
    // The manifest did not change (same first member), so it was left alone.
    assert!(
        matches!(
            restored.manifest,
            Some(phases::manifest::WriteOutcome::Unchanged)
        ),
        "{:?}",
        restored.manifest
    );
    let leftovers: Vec<_> = std::fs::read_dir(node.data_dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".restore-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    c.start(0);
    c.wait_healthy(0);
    let mut kv = etcd_client(&c, 0).await;
    assert_eq!(count(&mut kv, "before").await, 50);
    assert_eq!(count(&mut kv, "after").await, 0, "only the snapshot's keys");
    let members = c.etcdctl_members(0);
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0].1, "node0");

    // The rest of the cluster joins the restored member as learners.
    let log = Mutex::new(Vec::new());
    c.join(1, JOIN_TIMEOUT, &log)
        .await
        .unwrap_or_else(|e| panic!("join: {e}"));
    c.start(1);
    let promoted = promote::promote(
        &c.client(0, 1),
        &c.promote_options(1, JOIN_TIMEOUT),
        &mut |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("promote: {e}\n{}", c.log_tail(1)));
    assert_eq!(promoted.outcome, PromoteOutcome::Promoted);
    let members = c.etcdctl_members(0);
    assert_eq!(
        members
            .iter()
            .map(|m| (m.1.as_str(), m.2))
            .collect::<Vec<_>>(),
        [("node0", false), ("node1", false)]
    );
    put_many(&mut kv, "later", 1, 10).await;
}

crate::etcd_matrix!(async save_restore_and_join_a_learner => |v| bounded(
    save_restore_join(v, 80)
));

/// A tmpfs too small for the snapshot: the save fails with "No space left on device",
/// leaves no partial file, and the snapshot already there is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_leaves_no_partial_snapshot() {
    bounded(async {
        let c = TestCluster::new(EtcdVersion::V3_5, 82, 1);
        let dir = c.dir.path().join("small");
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            // The in-process sink test (`snapshot::save` unit tests) still covers it.
            eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
            return;
        }
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            }
        }
        let _unmount = Unmount(dir.clone());
        c.bootstrap();
        let mut kv = etcd_client(&c, 0).await;
        // About 1 MiB of values: the database outgrows the 512 KiB tmpfs.
        put_many(&mut kv, "bulk", 64, 16 * 1024).await;
        let old = dir.join("etcd-snapshot-20260101T000000.000Z.db");
        std::fs::write(&old, vec![7u8; 64 * 1024]).unwrap();

        let err = snapshot::save(
            &c.client(0, 0),
            &c.node(0).tls(),
            &SaveOptions {
                keep: Some(1),
                ..SaveOptions::new(&dir)
            },
            &mut |_| {},
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SnapshotError::Write { .. }), "{text}");
        assert!(text.contains("No space left on device"), "{text}");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["etcd-snapshot-20260101T000000.000Z.db"]);
        assert_eq!(std::fs::read(&old).unwrap(), vec![7u8; 64 * 1024]);
    })
    .await;
}
