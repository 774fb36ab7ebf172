//! The offline path of `phase upgrade migrate-feature-gates`: snapshots of every fixture
//! in `testdata/upgrade/` migrated for the targets its first line lists, and the file
//! handling (output file, dry run, nothing to change, errors).
//!
//! A fixture's first line is `# targets: T...`, where each `T` is a version optionally
//! followed by `/force`, `/learner` (enable learner mode) or `/v1beta4` (convert).

use std::path::{Path, PathBuf};

use phases::upgrade::{migrate_feature_gates, MigrateOptions, MigrateReport, Source, UpgradeError};

fn targets(fixture: &str) -> Vec<String> {
    let first = fixture.lines().next().unwrap_or("");
    let list = first
        .strip_prefix("# targets:")
        .unwrap_or_else(|| panic!("a fixture starts with \"# targets: ...\", found {first:?}"));
    list.split_whitespace().map(str::to_string).collect()
}

fn options_for(spec: &str) -> MigrateOptions {
    let mut parts = spec.split('/');
    let mut opts = MigrateOptions::new(parts.next().unwrap());
    for flag in parts {
        match flag {
            "force" => opts.force = true,
            "learner" => opts.enable_learner_mode = true,
            "v1beta4" => opts.api_version = Some("kubeadm.k8s.io/v1beta4".into()),
            other => panic!("unknown flag {other:?} in {spec:?}"),
        }
    }
    opts
}

fn render(report: Result<MigrateReport, UpgradeError>) -> String {
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            let mut text = format!("error: {e}\n");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!("  caused by: {s}\n"));
                source = s.source();
            }
            return text;
        }
    };
    let mut text = String::new();
    text.push_str("lines:\n");
    for l in &report.lines {
        text.push_str(&format!("  {l}\n"));
    }
    if !report.warnings.is_empty() {
        text.push_str("warnings:\n");
        for w in &report.warnings {
            text.push_str(&format!("  {w}\n"));
        }
    }
    text.push_str(&format!(
        "changed: {}, written: {:?}\n",
        report.changed, report.written
    ));
    match &report.output {
        Some(out) => text.push_str(&format!("output:\n{out}")),
        None => text.push_str("output: none\n"),
    }
    text
}

#[tokio::test]
async fn fixtures_migrate_as_snapshotted() {
    let mut cases = Vec::new();
    insta::glob!("../../testdata/upgrade", "*.yaml", |path| {
        cases.push(path.to_path_buf());
    });
    assert!(cases.len() >= 6, "fixtures not found: {cases:?}");
    // NB: glob! runs its closure synchronously, so the async work happens per file here
    // and the snapshot is asserted back inside a glob! with the same file.
    let mut rendered = std::collections::BTreeMap::new();
    for path in &cases {
        let fixture = std::fs::read_to_string(path).unwrap();
        let mut text = String::new();
        for spec in targets(&fixture) {
            let source = Source::File {
                from: path.clone(),
                to: None,
            };
            let report = migrate_feature_gates(&source, &options_for(&spec)).await;
            let shown = render(report).replace(&path.display().to_string(), "<fixture>");
            text.push_str(&format!("=== {spec} ===\n{shown}\n"));
        }
        rendered.insert(path.clone(), text);
    }
    insta::glob!("../../testdata/upgrade", "*.yaml", |path| {
        insta::assert_snapshot!(rendered[path]);
    });
}

const CM: &str = "\
apiVersion: v1
data:
  ClusterConfiguration: |
    apiVersion: kubeadm.k8s.io/v1beta4
    featureGates:
      EtcdLearnerMode: true
    kind: ClusterConfiguration
  Other: x
kind: ConfigMap
metadata:
  name: kubeadm-config
  namespace: kube-system
";

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[tokio::test]
async fn output_goes_to_the_file_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let from = write(dir.path(), "cm.yaml", CM);
    let to = dir.path().join("out.yaml");
    let source = Source::File {
        from: from.clone(),
        to: Some(to.clone()),
    };
    let report = migrate_feature_gates(&source, &MigrateOptions::new("1.33.0"))
        .await
        .unwrap();
    assert_eq!(report.written, Some(to.display().to_string()));
    assert_eq!(report.output, None);
    assert_eq!(
        report.lines.last().unwrap(),
        &format!(
            "[upgrade/feature-gates] Wrote the migrated ConfigMap to {}",
            to.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(&to).unwrap(),
        "apiVersion: v1\ndata:\n  ClusterConfiguration: |\n    apiVersion: kubeadm.k8s.io/v1beta4\n    kind: ClusterConfiguration\n  Other: x\nkind: ConfigMap\nmetadata:\n  name: kubeadm-config\n  namespace: kube-system\n"
    );
    // The input is never modified.
    assert_eq!(std::fs::read_to_string(&from).unwrap(), CM);
}

#[tokio::test]
async fn dry_run_writes_no_file_and_nothing_to_change_writes_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let from = write(dir.path(), "cm.yaml", CM);
    let to = dir.path().join("out.yaml");
    let source = Source::File {
        from: from.clone(),
        to: Some(to.clone()),
    };
    let opts = MigrateOptions {
        dry_run: true,
        ..MigrateOptions::new("v1.33.0")
    };
    let report = migrate_feature_gates(&source, &opts).await.unwrap();
    assert!(report.changed);
    assert_eq!(report.written, None);
    assert_eq!(
        report.lines.last().unwrap(),
        &format!(
            "[dryrun] Would write the migrated ConfigMap to {}; nothing written",
            to.display()
        )
    );
    assert_eq!(
        report.diff.unwrap(),
        format!(
            "--- {0} ClusterConfiguration (current)\n+++ {0} ClusterConfiguration (migrated for Kubernetes v1.33.0)\n@@ -1,4 +1,2 @@\n apiVersion: kubeadm.k8s.io/v1beta4\n-featureGates:\n-  EtcdLearnerMode: true\n kind: ClusterConfiguration\n",
            from.display()
        )
    );
    assert!(!to.exists());

    let report = migrate_feature_gates(&source, &MigrateOptions::new("v1.31.0"))
        .await
        .unwrap();
    assert!(!report.changed);
    // Nothing to change still writes --to-file, byte for byte the input: pipelines read it.
    assert_eq!(
        (report.written, report.output, report.diff),
        (Some(to.display().to_string()), None, None)
    );
    assert_eq!(
        report.lines.last().unwrap(),
        &format!(
            "[upgrade/feature-gates] {} left as it is; wrote it unchanged to {}",
            from.display(),
            to.display()
        )
    );
    assert_eq!(std::fs::read(&to).unwrap(), std::fs::read(&from).unwrap());
}

#[tokio::test]
async fn file_errors_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = d.join("missing.yaml");
    let cases: Vec<(PathBuf, String)> = vec![
        (missing.clone(), format!("failed to read {missing:?}")),
        (
            write(d, "bad.yaml", "data: [\n"),
            format!(
                "failed to parse {:?} as YAML: expected a ConfigMap as printed by \"kubectl get configmap kubeadm-config -n kube-system -o yaml\"",
                d.join("bad.yaml")
            ),
        ),
        (
            write(d, "secret.yaml", "apiVersion: v1\nkind: Secret\n"),
            format!(
                "{:?} is not a ConfigMap (found apiVersion \"v1\", kind \"Secret\"): expected the output of \"kubectl get configmap kubeadm-config -n kube-system -o yaml\"",
                d.join("secret.yaml")
            ),
        ),
        (
            write(d, "nokey.yaml", "apiVersion: v1\nkind: ConfigMap\ndata:\n  ClusterStatus: x\n"),
            format!(
                "ConfigMap in {} has no data key \"ClusterConfiguration\": expected the ClusterConfiguration that kubeadm uploads (\"kubeadm init phase upload-config kubeadm\" writes it)",
                d.join("nokey.yaml").display()
            ),
        ),
        (
            write(d, "notstring.yaml", "apiVersion: v1\nkind: ConfigMap\ndata:\n  ClusterConfiguration:\n    kind: ClusterConfiguration\n"),
            format!(
                "ConfigMap in {}: data key \"ClusterConfiguration\" must be a string holding the ClusterConfiguration YAML, found a mapping",
                d.join("notstring.yaml").display()
            ),
        ),
        (
            write(d, "badcc.yaml", "apiVersion: v1\nkind: ConfigMap\ndata:\n  ClusterConfiguration: \"kind: [\"\n"),
            format!("ClusterConfiguration in {} is not valid YAML", d.join("badcc.yaml").display()),
        ),
    ];
    for (from, want) in cases {
        let to = d.join("out.yaml");
        let source = Source::File {
            from: from.clone(),
            to: Some(to.clone()),
        };
        let err = migrate_feature_gates(&source, &MigrateOptions::new("v1.33.0"))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), want, "{from:?}");
        assert!(!to.exists(), "{from:?}");
    }

    // An invalid target is reported before the file is even read.
    let source = Source::File {
        from: missing,
        to: None,
    };
    let err = migrate_feature_gates(&source, &MigrateOptions::new("latest"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid target version \"latest\": unexpected character 'l' while parsing major version number; expected a Kubernetes version like v1.33.2 (the \"v\" is optional)"
    );

    // An output file that cannot be written.
    let from = write(d, "cm.yaml", CM);
    let to = d.join("no-such-dir").join("out.yaml");
    let source = Source::File {
        from,
        to: Some(to.clone()),
    };
    let err = migrate_feature_gates(&source, &MigrateOptions::new("v1.33.0"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), format!("failed to write {to:?}"));
}
