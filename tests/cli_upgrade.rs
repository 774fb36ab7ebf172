//! `kubeadm-etcd phase upgrade migrate-feature-gates`, offline (`--from-file`), driven
//! through the binary: what lands on stdout, in `--to-file`, and every error message.
//! The live path (the real kube client against an in-process API server) is tested in
//! phases/tests/upgrade_live.rs.

use std::path::PathBuf;
use std::process::{Command, Output};

fn testdata(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/upgrade")
        .join(rel)
        .display()
        .to_string()
}

fn migrate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeadm-etcd"))
        .args(["phase", "upgrade", "migrate-feature-gates"])
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn from_file_to_stdout_drops_a_removed_gate_and_keeps_the_rest() {
    let input = testdata("v1beta3-with-gates.yaml");
    let out = migrate(&["--target-version", "v1.33.0", "--from-file", &input]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let migrated = text(&out.stdout);
    let original = std::fs::read_to_string(&input).unwrap();
    assert!(!migrated.contains("EtcdLearnerMode"), "{migrated}");
    assert!(migrated.contains("PublicKeysECDSA: true"));
    assert!(
        migrated.contains("apiVersion: kubeadm.k8s.io/v1beta3"),
        "v1beta3 stays v1beta3"
    );
    // Only the gate's line went away.
    // Only the gate's line went away (and the fixture's leading comment, which is not
    // part of the ConfigMap).
    let removed: Vec<_> = original
        .lines()
        .filter(|l| !l.starts_with('#') && !migrated.contains(l))
        .collect();
    assert_eq!(removed, ["      EtcdLearnerMode: true"]);
    assert!(text(&out.stderr).contains("[upgrade/feature-gates] Removing feature gate \"EtcdLearnerMode\": removed in Kubernetes v1.33\n"));
}

#[test]
fn to_file_writes_the_configmap_and_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("migrated.yaml");
    let input = testdata("v1beta3-with-gates.yaml");

    let dry = migrate(&[
        "--target-version",
        "v1.33.0",
        "--from-file",
        &input,
        "--to-file",
        to.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(!to.exists(), "a dry run writes nothing");
    let diff = text(&dry.stdout);
    assert!(diff.contains("-  EtcdLearnerMode: true\n"), "{diff}");
    assert!(diff.starts_with("--- "), "a unified diff: {diff}");

    let out = migrate(&[
        "--target-version",
        "v1.33.0",
        "--from-file",
        &input,
        "--to-file",
        to.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let written = std::fs::read_to_string(&to).unwrap();
    assert!(!written.contains("EtcdLearnerMode"));
    assert!(written.contains("kind: ConfigMap"));

    // Migrating the result again finds nothing to change.
    let again = migrate(&[
        "--target-version",
        "v1.33.0",
        "--from-file",
        to.to_str().unwrap(),
    ]);
    assert!(again.status.success());
    assert!(
        text(&again.stderr).contains("Nothing to change"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn every_error_is_clear_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("out.yaml");
    let cases: &[(&str, &str, &str)] = &[
        ("bad/locked-false.yaml", "v1.32.0", "feature gate \"EtcdLearnerMode\" is set to false in ClusterConfiguration in {f}, but it is GA and locked to true in Kubernetes v1.32, so kubeadm v1.32 rejects the configuration: remove the gate to accept the new behaviour, or use --force to have it dropped"),
        ("bad/missing-key.yaml", "v1.32.0", "ConfigMap in {f} has no data key \"ClusterConfiguration\""),
        ("bad/not-yaml.yaml", "v1.32.0", "ClusterConfiguration in {f} is not valid YAML\n  caused by: did not find expected ',' or ']' at line 4 column 1"),
        ("bad/unknown-api-version.yaml", "v1.32.0", "ClusterConfiguration in {f} has apiVersion \"kubeadm.k8s.io/v1beta2\": expected kubeadm.k8s.io/v1beta3 or kubeadm.k8s.io/v1beta4"),
        ("v1beta4-with-gates.yaml", "v1.x", "invalid target version \"v1.x\""),
        ("does-not-exist.yaml", "v1.32.0", "failed to read \"{f}\"\n  caused by: No such file or directory (os error 2)"),
    ];
    for (file, target, expected) in cases {
        let f = testdata(file);
        let out = migrate(&[
            "--target-version",
            target,
            "--from-file",
            &f,
            "--to-file",
            to.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{file}");
        let stderr = text(&out.stderr);
        let expected = format!(
            "error: error execution phase upgrade/migrate-feature-gates\n  caused by: {}",
            expected.replace("{f}", &f)
        );
        assert!(
            stderr.starts_with(&expected),
            "{file}:\n{stderr}\nexpected:\n{expected}"
        );
        assert!(!to.exists(), "{file}: nothing written");
    }
}

#[test]
fn force_drops_a_locked_false_gate_and_says_the_behaviour_changes() {
    let out = migrate(&[
        "--target-version",
        "v1.32.0",
        "--from-file",
        &testdata("bad/locked-false.yaml"),
        "--force",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("EtcdLearnerMode"));
    assert!(
        text(&out.stderr).contains("WARNING: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = migrate(&["--from-file", &testdata("v1beta4-with-gates.yaml")]);
    // Not a clap requirement (`phase upgrade etcd` can do with --etcd-version instead):
    // the phase refuses before reading anything.
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--target-version is required"));
    let out = migrate(&["--target-version", "v1.33.0", "--to-file", "/tmp/x.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--to-file needs --from-file"));
}
