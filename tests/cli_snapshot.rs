//! `phase etcd snapshot status | restore` and `phase upgrade etcd` refusals, driven
//! through the binary without etcd running: each refusal exits non-zero, says why, and
//! leaves the files as they were.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn kubeadm_etcd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeadm-etcd"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A file shaped like an etcd snapshot: whole 512-byte pages, then the sha256 of them,
/// as etcd appends it (the digest is all `status` checks before any tool reads it).
fn fake_snapshot(path: &Path) {
    let db: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(path, &db).unwrap();
    let sum = Command::new("sha256sum").arg(path).output().unwrap();
    let hex = String::from_utf8(sum.stdout).unwrap();
    let digest: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut file = db;
    file.extend_from_slice(&digest);
    fs::write(path, file).unwrap();
}

#[test]
fn status_of_an_altered_snapshot_names_the_hash_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("snap.db");
    fake_snapshot(&snap);
    let mut bytes = fs::read(&snap).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&snap, &bytes).unwrap();
    // --etcdutl points nowhere: the digest is refused before any tool is looked for.
    let out = kubeadm_etcd(&[
        "phase",
        "etcd",
        "snapshot",
        "status",
        s(&snap),
        "--etcdutl",
        "/nonexistent/etcdutl",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("is damaged: its sha256 does not match"),
        "{err}"
    );
    assert!(
        err.contains("expected ") && err.contains("computed "),
        "{err}"
    );
}

#[test]
fn status_of_a_truncated_snapshot_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("snap.db");
    fake_snapshot(&snap);
    let bytes = fs::read(&snap).unwrap();
    fs::write(&snap, &bytes[..bytes.len() - 40]).unwrap();
    let out = kubeadm_etcd(&["phase", "etcd", "snapshot", "status", s(&snap)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a snapshot with etcd's integrity hash"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn restore_never_writes_into_a_non_empty_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("snap.db");
    fake_snapshot(&snap);
    let data = tmp.path().join("etcd");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("keep-me"), "precious").unwrap();
    let manifests = tmp.path().join("manifests");
    let config = tmp.path().join("kubeadm.yaml");
    fs::write(
        &config,
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nnodeRegistration:\n  name: cp-0\nlocalAPIEndpoint:\n  advertiseAddress: 10.0.0.10\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.33.2\netcd:\n  local:\n    dataDir: {}\n",
            data.display()
        ),
    )
    .unwrap();
    for dry_run in [true, false] {
        let mut args = vec![
            "phase",
            "etcd",
            "snapshot",
            "restore",
            s(&snap),
            "--config",
            s(&config),
            "--manifest-dir",
            s(&manifests),
            "--backup-dir",
            s(tmp.path()),
            "--etcdutl",
            "/nonexistent/etcdutl",
        ];
        if dry_run {
            args.push("--dry-run");
        }
        let out = kubeadm_etcd(&args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("is not empty; a restore never writes over existing data"),
            "{}",
            stderr(&out)
        );
        assert_eq!(
            fs::read_to_string(data.join("keep-me")).unwrap(),
            "precious"
        );
        assert_eq!(fs::read_dir(&data).unwrap().count(), 1);
        assert!(!manifests.exists());
    }
}

#[test]
fn upgrade_etcd_refuses_a_bad_target_before_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("manifests");
    fs::create_dir(&manifests).unwrap();
    fs::write(manifests.join("etcd.yaml"), "unchanged").unwrap();
    for (target, why) in [
        (
            vec!["--etcd-version", "banana"],
            "invalid target etcd version \"banana\"",
        ),
        (vec![], "give --etcd-version"),
    ] {
        let mut args = vec![
            "phase",
            "upgrade",
            "etcd",
            "--manifest-dir",
            s(&manifests),
            "--endpoints",
            "https://127.0.0.1:1",
            "--dry-run",
        ];
        args.extend(target.iter().copied());
        let out = kubeadm_etcd(&args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(why), "{}", stderr(&out));
        assert_eq!(
            fs::read_to_string(manifests.join("etcd.yaml")).unwrap(),
            "unchanged"
        );
        assert_eq!(fs::read_dir(&manifests).unwrap().count(), 1);
    }
}
