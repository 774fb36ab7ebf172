//! Snapshots of the rendered etcd manifest for every configuration in
//! `testdata/manifest/`: kubeadm's own rendering for every kubeadm minor 1.29-1.37
//! (`kubeadm-1.N.yaml`), skew cases (`skew-*.yaml`) and the configuration features. Each
//! file's comment names the kubeadm source it follows. A configuration may set test inputs
//! in comments: `# test.initialCluster: name=url,name=url` renders a joining member,
//! `# test.kubeadmVersion: N` emulates kubeadm 1.N rather than kubernetesVersion's minor.

use std::path::Path;

use phases::config;
use phases::manifest::{self, ManifestOptions, Member};

fn options_for(cfg: &config::KubeadmConfig, text: &str) -> ManifestOptions {
    let initial_cluster = text
        .lines()
        .find_map(|l| l.strip_prefix("# test.initialCluster:"))
        .map(|list| {
            list.trim()
                .split(',')
                .map(|m| {
                    let (name, peer_url) = m.split_once('=').expect("name=url");
                    Member {
                        name: name.into(),
                        peer_url: peer_url.into(),
                    }
                })
                .collect()
        });
    ManifestOptions {
        cert_dir: cfg.cluster.certificates_dir.clone(),
        initial_cluster,
    }
}

fn kubeadm_minor(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("# test.kubeadmVersion:"))
        .map(|m| m.trim().parse().expect("a kubeadm minor"))
}

fn render(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let cfg = config::load_str_as(
        &text,
        Some(Path::new(path.file_name().unwrap())),
        kubeadm_minor(&text),
    )
    .unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let pod = manifest::etcd_pod(&cfg, &options_for(&cfg, &text)).unwrap();
    let yaml = manifest::render_yaml(&pod).unwrap();
    // Byte-stable: a second rendering is identical.
    assert_eq!(
        yaml,
        manifest::render_yaml(&manifest::etcd_pod(&cfg, &options_for(&cfg, &text)).unwrap())
            .unwrap()
    );
    // The YAML reads back as the same Pod as the JSON rendering (no scalar changed type in
    // the emitter).
    let back: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&manifest::render_json(&pod).unwrap()).unwrap();
    assert_eq!(back, json);
    // What the kubeadm release emulated is, in the snapshot, so a reviewer sees it.
    format!(
        "# {}
{yaml}",
        cfg.emulated_kubeadm()
    )
}

#[test]
fn manifests() {
    insta::glob!("../../testdata/manifest", "*.yaml", |path| {
        insta::assert_snapshot!(render(path));
    });
}

#[test]
fn json_output_is_the_same_pod() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/manifest/first-member.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg = config::load_str(&text, None).unwrap();
    let pod = manifest::etcd_pod(&cfg, &options_for(&cfg, &text)).unwrap();
    let json = manifest::render_json(&pod).unwrap();
    let from_json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let from_yaml: serde_json::Value =
        serde_yaml::from_str(&manifest::render_yaml(&pod).unwrap()).unwrap();
    assert_eq!(from_json, from_yaml);
    assert!(json.ends_with("}\n"));
}
