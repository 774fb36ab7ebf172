//! `phase etcd defrag | alarm list | alarm disarm | move-leader` through the binary:
//! usage errors and refusals without etcd (exit codes and messages), then one NOSPACE
//! round on a real three-member TLS cluster (etcd 3.6.14, which reports the quota).

#[allow(unused_imports)]
#[path = "../phases/tests/common/mod.rs"]
mod common;

use common::cluster::TestCluster;
use common::faults;
use common::EtcdVersion;
use std::process::{Command, Output};

fn kubeadm_etcd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeadm-etcd"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn move_leader_without_a_target_is_a_usage_error() {
    let out = kubeadm_etcd(&["phase", "etcd", "move-leader"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--to <NAME|ID>"), "{err}");
}

#[test]
fn defrag_refuses_what_it_cannot_do_before_connecting() {
    let tmp = tempfile::tempdir().unwrap();
    let cert_dir = tmp.path().to_str().unwrap();
    let out = kubeadm_etcd(&[
        "phase",
        "etcd",
        "defrag",
        "--cluster",
        "--id",
        "8e9e05c52164694d",
        "--endpoints",
        "https://127.0.0.1:2379",
    ]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("pass it without --id or --node-name"), "{err}");

    let out = kubeadm_etcd(&[
        "phase",
        "etcd",
        "defrag",
        "--cluster",
        "--endpoints",
        "http://127.0.0.1:2379",
        "--cert-dir",
        cert_dir,
    ]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is not an https:// URL"), "{err}");

    let out = kubeadm_etcd(&[
        "phase",
        "etcd",
        "alarm",
        "disarm",
        "--endpoints",
        "https://127.0.0.1:2379",
        "--cert-dir",
        cert_dir,
    ]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{cert_dir}/etcd/ca.crt")),
        "names the missing file: {err}"
    );
}

/// NOSPACE on a real cluster, every step a command: check-health fails naming the alarm,
/// `alarm list -o json` lists it with what to do, a bare `disarm` is refused, `disarm
/// --compact-and-defrag` clears it; then `defrag --cluster -o json` (leader last) and
/// `move-leader`.
#[test]
fn nospace_round_through_the_binary_on_etcd_3_6_14() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut c = TestCluster::new(EtcdVersion::V3_6_14, 155, 3);
    for node in &mut c.nodes {
        let path = node.dir.join("kubeadm.yaml");
        let yaml = std::fs::read_to_string(&path).unwrap();
        let tag = format!("    imageTag: {}\n", EtcdVersion::V3_6_14.image_tag());
        let yaml = yaml.replace(
            &tag,
            &format!(
                "{tag}    extraArgs:\n    - name: quota-backend-bytes\n      value: \"8388608\"\n"
            ),
        );
        std::fs::write(&path, &yaml).unwrap();
        node.config = phases::config::load_file(&path).unwrap();
    }
    faults::start_voters(&c, 3);
    let endpoints = (0..3)
        .map(|n| c.node(n).client_url())
        .collect::<Vec<_>>()
        .join(",");
    let cert_dir = c.node(0).cert_dir.to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = vec!["phase", "etcd"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--endpoints", &endpoints, "--cert-dir", &cert_dir]);
        kubeadm_etcd(&all)
    };

    rt.block_on(async {
        let mut kv = faults::kv_client(&c, &[0, 1, 2]).await;
        let value = vec![0x3cu8; 256 * 1024];
        for _ in 0..200 {
            if kv.put("fill", value.clone(), None).await.is_err() {
                break;
            }
        }
    });

    let out = run(&["check-health"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{err}");
    assert!(err.contains("alarm NOSPACE"), "{stdout}{err}");

    let out = run(&["alarm", "list", "-o", "json"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let alarms = listed["alarms"].as_array().unwrap();
    assert!(!alarms.is_empty(), "{stdout}");
    assert!(alarms.iter().all(|a| a["alarm"] == "NOSPACE"
        && a["advice"]
            .as_str()
            .unwrap()
            .contains("--compact-and-defrag")));

    let out = run(&["alarm", "disarm"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{err}");
    assert!(err.contains("refusing to disarm NOSPACE"), "{err}");

    let out = run(&["alarm", "disarm", "--compact-and-defrag"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{err}");
    assert!(
        stdout.contains("Compacted the key history to revision"),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("[etcd] Defragmented ") && l.ends_with(" reclaimed"))
            .count(),
        3,
        "{stdout}"
    );
    assert!(
        stdout.contains("The etcd cluster takes writes again"),
        "{stdout}"
    );

    let out = run(&["check-health"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = run(&["status"]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("8.4 MB"), "the quota shows: {stdout}");

    let out = run(&["defrag", "--cluster", "-o", "json"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let roles: Vec<&str> = report["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["follower", "follower", "leader"], "{stdout}");
    assert!(err.contains("Defragmenting one member at a time"), "{err}");

    let (leader, _, _) = rt.block_on(faults::leader(&c, &[0, 1, 2]));
    // One member: this node's (by name here), and only it.
    let follower = format!("node{}", (leader + 2) % 3);
    let out = run(&["defrag", "--node-name", &follower]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{err}");
    assert_eq!(
        stdout.matches("Defragmenting ").count(),
        2,
        "plan and call: {stdout}"
    );
    assert!(
        stdout.contains(&format!("({follower}, follower) in ")),
        "{stdout}"
    );

    let to = format!("node{}", (leader + 1) % 3);
    let out = run(&["move-leader", "--to", &to, "--timeout", "30s"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{err}");
    assert!(stdout.contains(&format!("({to}) leads (term")), "{stdout}");
    assert_eq!(
        rt.block_on(faults::leader(&c, &[0, 1, 2])).0,
        (leader + 1) % 3
    );
    let out = run(&["move-leader", "--to", "no-such-member"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no etcd member has that name"), "{err}");
    drop(c);
}
