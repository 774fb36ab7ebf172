//! `kubeadm-etcd version`: the fields a pipeline checks, in every output format, and the
//! build script's answer outside git.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kubeadm-etcd");

// The build script's git lookup, compiled here to test it on a directory outside git.
#[allow(dead_code)]
#[path = "../build.rs"]
mod build_script;

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn json_is_shaped_like_kubeadms() {
    let v: Value = serde_json::from_str(&run(&["version", "-o", "json"])).unwrap();
    let client = &v["clientVersion"];
    assert_eq!(
        client["gitVersion"],
        format!("v{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(client["platform"], "linux/amd64");
    assert_eq!(client["compiler"], "rustc");
    let state = client["gitTreeState"].as_str().unwrap();
    assert!(["clean", "dirty", "unknown"].contains(&state), "{state}");
    // The commit this test was built from: build.rs reruns whenever HEAD moves.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let expected = build_script::git_commit(dir).unwrap_or_else(|| "unknown".to_string());
    assert_eq!(client["gitCommit"], expected.as_str());

    let releases: Vec<&str> = v["kubeadmReleases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (29..=37).map(|m| format!("v1.{m}")).collect();
    assert_eq!(releases, want);
    let v134 = &v["kubeadmReleases"][5];
    assert_eq!(v134["version"], "v1.34");
    assert_eq!(v134["defaultEtcdVersion"], "3.6.5-0");
    assert_eq!(v134["etcdVersionForKubernetes"]["v1.33"], "3.5.24-0");

    let tags: Vec<&str> = v["etcd"]["imageTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags.first(), Some(&"3.5.12-0"));
    assert_eq!(tags.last(), Some(&"3.7.0-0"));
    assert!(tags.contains(&"3.6.11-0"), "{tags:?}");
    assert_eq!(v["etcd"]["minimumVersion"], "3.4.0");
    assert_eq!(v["etcd"]["upgradeMinimums"]["3.7"], "3.6.11");
}

#[test]
fn every_format_says_the_same_version() {
    let json: Value = serde_json::from_str(&run(&["version", "-o", "json"])).unwrap();
    let yaml: Value = serde_yaml::from_str(&run(&["version", "-o", "yaml"])).unwrap();
    assert_eq!(json, yaml);
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(run(&["version", "-o", "short"]), format!("{version}\n"));
    let text = run(&["version"]);
    assert!(
        text.starts_with(&format!("kubeadm-etcd version: {version} (commit ")),
        "{text}"
    );
    assert!(
        text.contains("kubeadm releases modelled: v1.29 to v1.37"),
        "{text}"
    );
    // Deterministic: the same bytes twice.
    assert_eq!(
        run(&["version", "-o", "json"]),
        run(&["version", "-o", "json"])
    );
}

#[test]
fn a_build_outside_git_says_unknown() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(build_script::git_commit(dir.path()), None);
}

#[test]
fn unknown_format_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["version", "-o", "xml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
