//! `kubeadm-etcd version`: what this binary is and what it knows, shaped like
//! `kubeadm version -o json` (`clientVersion` with `gitVersion`, `gitCommit`,
//! `gitTreeState`, `platform`) so that a pipeline can check both the same way, plus the
//! kubeadm and etcd releases this build models.

use std::collections::BTreeSet;

use phases::etcd_upgrade::plan::MINOR_UPGRADE_MINIMUMS;
use phases::membership::version::MIN_LEARNER_VERSION;
use phases::versions::KUBEADM_RELEASES;
use serde_json::{json, Value};

/// `kubeadm version -o` takes these (kubeadm's default is its Go struct dump; ours is a
/// short text).
pub const FORMATS: [&str; 4] = ["text", "short", "json", "yaml"];

/// Set by build.rs: the commit, or `unknown` for a build outside git.
pub const GIT_COMMIT: &str = env!("KUBEADM_ETCD_GIT_COMMIT");
/// `clean` or `dirty` when hack/release.sh built the binary, else `unknown`.
pub const GIT_TREE_STATE: &str = env!("KUBEADM_ETCD_GIT_TREE_STATE");
const RUSTC_VERSION: &str = env!("KUBEADM_ETCD_RUSTC_VERSION");

/// `linux/amd64`: Go's names, as kubeadm prints its platform.
fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

/// The etcd image tags of every modelled kubeadm release, oldest first.
fn etcd_tags() -> Vec<&'static str> {
    let tags: BTreeSet<&str> = KUBEADM_RELEASES
        .iter()
        .flat_map(|r| r.supported_etcd.iter().map(|(_, tag)| *tag))
        .collect();
    let mut tags: Vec<&str> = tags.into_iter().collect();
    tags.sort_by_key(|tag| phases::versions::etcd_semver_from_tag(tag).ok());
    tags
}

/// Everything `version -o json` prints. Keys are sorted (serde_json's map), so the
/// output is the same from run to run.
pub fn info() -> Value {
    let version = env!("CARGO_PKG_VERSION");
    let semver = semver_parts(version);
    let releases: Vec<Value> = KUBEADM_RELEASES
        .iter()
        .map(|r| {
            let map: serde_json::Map<String, Value> = r
                .supported_etcd
                .iter()
                .map(|(minor, tag)| (format!("v1.{minor}"), json!(tag)))
                .collect();
            json!({
                "version": r.name(),
                "defaultEtcdVersion": r.default_etcd_tag(),
                "etcdVersionForKubernetes": map,
            })
        })
        .collect();
    let upgrade_minimums: serde_json::Map<String, Value> = MINOR_UPGRADE_MINIMUMS
        .iter()
        .map(|(major, minor, min)| (format!("{major}.{minor}"), json!(min.to_string())))
        .collect();
    json!({
        "clientVersion": {
            "major": semver.0,
            "minor": semver.1,
            "gitVersion": format!("v{version}"),
            "gitCommit": GIT_COMMIT,
            "gitTreeState": GIT_TREE_STATE,
            "compiler": "rustc",
            "rustVersion": RUSTC_VERSION,
            "platform": platform(),
        },
        "kubeadmReleases": releases,
        "etcd": {
            "imageTags": etcd_tags(),
            "minimumVersion": MIN_LEARNER_VERSION.to_string(),
            "upgradeMinimums": upgrade_minimums,
        },
    })
}

fn semver_parts(version: &str) -> (String, String) {
    let mut parts = version.split('.');
    let major = parts.next().unwrap_or_default().to_string();
    let minor = parts.next().unwrap_or_default().to_string();
    (major, minor)
}

/// The text for `-o FORMAT` (`text` when not given).
pub fn render(format: &str) -> String {
    let info = info();
    match format {
        "json" => format!(
            "{}\n",
            serde_json::to_string_pretty(&info).expect("a JSON value serialises")
        ),
        "yaml" => serde_yaml::to_string(&info).expect("a JSON value serialises as YAML"),
        "short" => format!("v{}\n", env!("CARGO_PKG_VERSION")),
        _ => {
            let first = KUBEADM_RELEASES.first().expect("releases are modelled");
            let last = KUBEADM_RELEASES.last().expect("releases are modelled");
            format!(
                "kubeadm-etcd version: v{} (commit {GIT_COMMIT}, tree {GIT_TREE_STATE}, rustc {RUSTC_VERSION}, {})\n\
                 kubeadm releases modelled: {} to {}\n\
                 etcd image tags they deploy: {}\n\
                 etcd members supported: {} and newer\n",
                env!("CARGO_PKG_VERSION"),
                platform(),
                first.name(),
                last.name(),
                etcd_tags().join(", "),
                MIN_LEARNER_VERSION,
            )
        }
    }
}
