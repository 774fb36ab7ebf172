//! The live path of `phase upgrade migrate-feature-gates` with the real kube client over
//! HTTP against the in-process test API server, and the etcd Pod discovery.

mod apiserver;

use std::time::Duration;

use apiserver::TestApiServer;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use phases::kube::{client_from_kubeconfig, etcd_client_urls_from_pods_within, KubeClientError};
use phases::upgrade::{migrate_feature_gates, migrate_live, MigrateOptions, Source, UpgradeError};
use serde_json::{json, Value};

const CLUSTER_CONFIGURATION: &str = "\
apiServer:
  certSANs:
  - 10.0.0.1
apiVersion: kubeadm.k8s.io/v1beta3
clusterName: kubernetes
etcd:
  local:
    dataDir: /var/lib/etcd
featureGates:
  EtcdLearnerMode: true
  RootlessControlPlane: false
kind: ClusterConfiguration
kubernetesVersion: v1.32.4
";

const MIGRATED: &str = "\
apiServer:
  certSANs:
  - 10.0.0.1
apiVersion: kubeadm.k8s.io/v1beta3
clusterName: kubernetes
etcd:
  local:
    dataDir: /var/lib/etcd
featureGates:
  RootlessControlPlane: false
kind: ClusterConfiguration
kubernetesVersion: v1.32.4
";

fn kubeadm_config(cluster_configuration: &str) -> Value {
    json!({
        "metadata": {
            "name": "kubeadm-config",
            "namespace": "kube-system",
            "labels": {"app.kubernetes.io/managed-by": "kubeadm"},
            "annotations": {"example.com/note": "keep me"},
        },
        "data": {
            "ClusterConfiguration": cluster_configuration,
            "OtherKey": "other value",
        },
    })
}

fn options(backup_dir: &std::path::Path) -> MigrateOptions {
    MigrateOptions {
        backup_dir: backup_dir.to_path_buf(),
        ..MigrateOptions::new("v1.33.0")
    }
}

fn backups(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => vec![],
    };
    names.sort();
    names
}

/// Bounds every test: nothing here should take more than a few seconds.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test timed out")
}

#[tokio::test]
async fn migrates_and_keeps_the_rest_of_the_configmap() {
    bounded(async {
        let server = TestApiServer::start().await;
        let original = server.insert_configmap(kubeadm_config(CLUSTER_CONFIGURATION));
        let dir = tempfile::tempdir().unwrap();
        let backup_dir = dir.path().join("tmp");

        let report = migrate_live(server.client(), &server.url(), &options(&backup_dir)).await.unwrap();

        assert!(report.changed);
        assert_eq!(report.written.as_deref(), Some("ConfigMap kube-system/kubeadm-config"));
        let backup = backup_dir.join("kubeadm-config-1.yaml");
        assert_eq!(
            report.lines,
            [
                "[upgrade/feature-gates] Removing feature gate \"EtcdLearnerMode\": removed in Kubernetes v1.33".to_string(),
                "[upgrade/feature-gates] Keeping feature gate \"RootlessControlPlane\" = false: deprecated in Kubernetes v1.33 (default false)".to_string(),
                format!("[upgrade/feature-gates] Backed up ConfigMap kube-system/kubeadm-config to {}", backup.display()),
                "[upgrade/feature-gates] Updated ConfigMap kube-system/kubeadm-config (resourceVersion 1 -> 2)".to_string(),
            ]
        );
        assert_eq!(
            report.warnings,
            ["feature gate \"RootlessControlPlane\" is deprecated since Kubernetes v1.31 and will be removed: plan to stop using it"]
        );
        assert_eq!(
            report.diff.as_deref(),
            Some(
                "--- kube-system/kubeadm-config ClusterConfiguration (current)\n\
                 +++ kube-system/kubeadm-config ClusterConfiguration (migrated for Kubernetes v1.33.0)\n\
                 @@ -7,7 +7,6 @@\n   local:\n     dataDir: /var/lib/etcd\n featureGates:\n\
                 -  EtcdLearnerMode: true\n   RootlessControlPlane: false\n kind: ClusterConfiguration\n kubernetesVersion: v1.32.4\n"
            )
        );

        let stored = server.configmap("kube-system", "kubeadm-config").unwrap();
        assert_eq!(stored["data"]["ClusterConfiguration"], MIGRATED);
        assert_eq!(stored["data"]["OtherKey"], "other value");
        assert_eq!(stored["metadata"]["labels"], original["metadata"]["labels"]);
        assert_eq!(stored["metadata"]["annotations"], original["metadata"]["annotations"]);
        assert_eq!(stored["metadata"]["resourceVersion"], "2");
        assert_eq!((server.count("GET", None), server.count("PUT", None)), (1, 1));

        // The backup is the ConfigMap exactly as it was read.
        let saved: ConfigMap = serde_yaml::from_str(&std::fs::read_to_string(&backup).unwrap()).unwrap();
        let read: ConfigMap = serde_json::from_value(original).unwrap();
        assert_eq!(saved, read);
        assert_eq!(backups(&backup_dir), ["kubeadm-config-1.yaml"]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);

        // A second run finds nothing to do.
        let again = migrate_live(server.client(), &server.url(), &options(&backup_dir)).await.unwrap();
        assert!(!again.changed);
        assert_eq!(again.written, None);
        assert_eq!(server.count("PUT", None), 1);
    })
    .await;
}

#[tokio::test]
async fn migrates_through_a_kubeconfig_file() {
    bounded(async {
        let server = TestApiServer::start().await;
        server.insert_configmap(kubeadm_config(CLUSTER_CONFIGURATION));
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("admin.conf");
        std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();

        let source = Source::Live {
            kubeconfig: Some(kubeconfig.clone()),
        };
        let report = migrate_feature_gates(&source, &options(dir.path()))
            .await
            .unwrap();
        assert_eq!(
            report.written.as_deref(),
            Some("ConfigMap kube-system/kubeadm-config")
        );
        assert_eq!(
            server.configmap("kube-system", "kubeadm-config").unwrap()["data"]
                ["ClusterConfiguration"],
            MIGRATED
        );

        // The client itself, for the learner work.
        let client = client_from_kubeconfig(Some(&kubeconfig)).await.unwrap();
        let cm = Api::<ConfigMap>::namespaced(client, "kube-system")
            .get("kubeadm-config")
            .await
            .unwrap();
        assert_eq!(cm.data.unwrap()["ClusterConfiguration"], MIGRATED);
    })
    .await;
}

#[tokio::test]
async fn a_missing_or_broken_kubeconfig_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.conf");
    let source = Source::Live {
        kubeconfig: Some(missing.clone()),
    };
    let err = migrate_feature_gates(&source, &options(dir.path()))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("failed to load kubeconfig {missing:?}")
    );
    assert!(matches!(
        err,
        UpgradeError::Client(KubeClientError::Kubeconfig { .. })
    ));

    let broken = dir.path().join("broken.conf");
    std::fs::write(&broken, "clusters: [").unwrap();
    let err = client_from_kubeconfig(Some(&broken))
        .await
        .err()
        .expect("a broken kubeconfig fails");
    assert_eq!(
        err.to_string(),
        format!("failed to load kubeconfig {broken:?}")
    );
}

#[tokio::test]
async fn nothing_to_change_writes_nothing() {
    bounded(async {
        let server = TestApiServer::start().await;
        server.insert_configmap(kubeadm_config(MIGRATED));
        let dir = tempfile::tempdir().unwrap();

        let report = migrate_live(server.client(), &server.url(), &options(dir.path())).await.unwrap();

        assert!(!report.changed);
        assert_eq!(report.written, None);
        assert_eq!(report.diff, None);
        assert_eq!(
            report.lines[report.lines.len() - 2..],
            [
                "[upgrade/feature-gates] Nothing to change: the feature gates are already right for Kubernetes v1.33.0",
                "[upgrade/feature-gates] ConfigMap kube-system/kubeadm-config left as it is; nothing written",
            ]
        );
        assert_eq!(server.count("PUT", None), 0);
        assert_eq!(server.count("PATCH", None), 0);
        assert!(backups(dir.path()).is_empty());
    })
    .await;
}

#[tokio::test]
async fn dry_run_returns_the_diff_and_writes_nothing() {
    bounded(async {
        let server = TestApiServer::start().await;
        server.insert_configmap(kubeadm_config(CLUSTER_CONFIGURATION));
        let dir = tempfile::tempdir().unwrap();
        let o = MigrateOptions {
            dry_run: true,
            ..options(dir.path())
        };

        let report = migrate_live(server.client(), &server.url(), &o).await.unwrap();

        assert!(report.changed);
        assert_eq!(report.written, None);
        assert!(report.diff.unwrap().contains("\n-  EtcdLearnerMode: true\n"));
        assert_eq!(
            report.lines.last().unwrap(),
            "[dryrun] Would update ConfigMap kube-system/kubeadm-config (resourceVersion 1); nothing written"
        );
        assert_eq!(server.count("PUT", None), 0);
        assert_eq!(
            server.configmap("kube-system", "kubeadm-config").unwrap()["data"]["ClusterConfiguration"],
            CLUSTER_CONFIGURATION
        );
        assert!(backups(dir.path()).is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_missing_configmap_is_404() {
    bounded(async {
        let server = TestApiServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let err = migrate_live(server.client(), &server.url(), &options(dir.path())).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap kube-system/kubeadm-config not found: is this a kubeadm cluster, and does the kubeconfig point at it? \
             (kubeadm uploads it in \"kubeadm init phase upload-config kubeadm\")"
        );
        assert_eq!(server.count("GET", Some(404)), 1);
        assert_eq!(server.count("PUT", None), 0);
    })
    .await;
}

#[tokio::test]
async fn a_missing_key_or_bad_content_is_reported_and_nothing_written() {
    bounded(async {
        let server = TestApiServer::start().await;
        server.insert_configmap(json!({
            "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
            "data": {"ClusterStatus": "x"},
        }));
        let dir = tempfile::tempdir().unwrap();
        let err = migrate_live(server.client(), &server.url(), &options(dir.path())).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap kube-system/kubeadm-config has no data key \"ClusterConfiguration\": expected the ClusterConfiguration \
             that kubeadm uploads (\"kubeadm init phase upload-config kubeadm\" writes it)"
        );

        let cases = [
            ("apiVersion: [", "ClusterConfiguration in ConfigMap kube-system/kubeadm-config is not valid YAML"),
            (
                "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n",
                "ClusterConfiguration in ConfigMap kube-system/kubeadm-config has apiVersion \"kubeadm.k8s.io/v1beta2\": \
                 expected kubeadm.k8s.io/v1beta3 or kubeadm.k8s.io/v1beta4 (migrate an older configuration with \
                 \"kubeadm config migrate\" of a kubeadm that still reads it)",
            ),
        ];
        for (content, want) in cases {
            let server = TestApiServer::start().await;
            server.insert_configmap(kubeadm_config(content));
            let err = migrate_live(server.client(), &server.url(), &options(dir.path())).await.unwrap_err();
            assert_eq!(err.to_string(), want);
            assert_eq!(server.count("PUT", None), 0);
        }
        assert!(backups(dir.path()).is_empty());
    })
    .await;
}

#[tokio::test]
async fn an_invalid_target_version_fails_before_any_request() {
    bounded(async {
        let server = TestApiServer::start().await;
        server.insert_configmap(kubeadm_config(CLUSTER_CONFIGURATION));
        let dir = tempfile::tempdir().unwrap();
        let o = MigrateOptions {
            target_version: "one.thirty-three".into(),
            ..options(dir.path())
        };
        let err = migrate_live(server.client(), &server.url(), &o)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid target version \"one.thirty-three\": "),
            "{err}"
        );
        // Also through the kubeconfig path: no client is even built.
        let source = Source::Live {
            kubeconfig: Some(dir.path().join("does-not-exist")),
        };
        let err = migrate_feature_gates(&source, &o).await.unwrap_err();
        assert!(
            matches!(err, UpgradeError::InvalidTargetVersion { .. }),
            "{err}"
        );
        assert!(server.requests().is_empty());
    })
    .await;
}

#[tokio::test]
async fn forbidden_reads_and_writes_are_403() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = TestApiServer::start().await;
        server.insert_configmap(kubeadm_config(CLUSTER_CONFIGURATION));
        server.forbid("get");
        let err = migrate_live(server.client(), &server.url(), &options(dir.path())).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "forbidden to get ConfigMap kube-system/kubeadm-config: configmaps \"kubeadm-config\" is forbidden: User \
             \"system:anonymous\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"kube-system\"; \
             use a kubeconfig whose user may get and update it, such as /etc/kubernetes/admin.conf on a control plane node"
        );

        let server = TestApiServer::start().await;
        server.insert_configmap(kubeadm_config(CLUSTER_CONFIGURATION));
        server.forbid("update");
        let err = migrate_live(server.client(), &server.url(), &options(dir.path())).await.unwrap_err();
        assert!(
            err.to_string().starts_with(
                "forbidden to update ConfigMap kube-system/kubeadm-config: configmaps \"kubeadm-config\" is forbidden: User \
                 \"system:anonymous\" cannot update resource \"configmaps\""
            ),
            "{err}"
        );
        assert_eq!(server.count("PUT", Some(403)), 1);
        assert_eq!(
            server.configmap("kube-system", "kubeadm-config").unwrap()["data"]["ClusterConfiguration"],
            CLUSTER_CONFIGURATION
        );
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_api_server_is_reported_quickly() {
    // A port that was just free and is closed again: connections are refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        migrate_live(client, &url, &options(dir.path())),
    )
    .await
    .expect("bounded")
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot reach the Kubernetes API server {url} to get ConfigMap kube-system/kubeadm-config: check that it is \
             running and that the kubeconfig points at it"
        )
    );
    assert!(started.elapsed() < Duration::from_secs(15));

    // Through a kubeconfig, which also applies the tool's connect timeout.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {url}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let source = Source::Live {
        kubeconfig: Some(kubeconfig),
    };
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        migrate_feature_gates(&source, &options(dir.path())),
    )
    .await
    .expect("bounded")
    .unwrap_err();
    assert!(matches!(err, UpgradeError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot reach the Kubernetes API server http://127.0.0.1:"),
        "{err}"
    );
}

#[tokio::test]
async fn a_conflict_is_retried_on_a_fresh_read() {
    bounded(async {
        let server = TestApiServer::start().await;
        server.insert_configmap(kubeadm_config(CLUSTER_CONFIGURATION));
        server.inject_conflicts(1, "WrittenMeanwhile", "by another writer");
        let dir = tempfile::tempdir().unwrap();

        let report = migrate_live(server.client(), &server.url(), &options(dir.path())).await.unwrap();

        assert_eq!(report.written.as_deref(), Some("ConfigMap kube-system/kubeadm-config"));
        assert_eq!(
            report.lines[0],
            "[upgrade/feature-gates] ConfigMap kube-system/kubeadm-config changed since it was read at resourceVersion 1 \
             (409 Conflict); reading it again (attempt 2 of 6)"
        );
        assert_eq!(
            report.lines.last().unwrap(),
            "[upgrade/feature-gates] Updated ConfigMap kube-system/kubeadm-config (resourceVersion 2 -> 3)"
        );
        let stored = server.configmap("kube-system", "kubeadm-config").unwrap();
        assert_eq!(stored["data"]["ClusterConfiguration"], MIGRATED);
        assert_eq!(stored["data"]["WrittenMeanwhile"], "by another writer-0");
        assert_eq!(stored["data"]["OtherKey"], "other value");
        assert_eq!(server.count("PUT", Some(409)), 1);
        assert_eq!(server.count("PUT", Some(200)), 1);
        assert_eq!(server.count("GET", None), 2);
        // Each read that was about to be replaced was backed up first.
        assert_eq!(backups(dir.path()), ["kubeadm-config-1.yaml", "kubeadm-config-2.yaml"]);
    })
    .await;
}

#[tokio::test]
async fn endless_conflicts_give_up_after_the_bounded_retries() {
    bounded(async {
        let server = TestApiServer::start().await;
        server.insert_configmap(kubeadm_config(CLUSTER_CONFIGURATION));
        server.inject_conflicts(100, "Busy", "x");
        let dir = tempfile::tempdir().unwrap();

        let err = migrate_live(server.client(), &server.url(), &options(dir.path())).await.unwrap_err();

        assert_eq!(
            err.to_string(),
            "ConfigMap kube-system/kubeadm-config kept changing while it was being updated: 6 attempts ended in 409 \
             Conflict and none was applied; retry when other writers are done"
        );
        assert_eq!(server.count("PUT", Some(409)), 6);
        assert_eq!(server.count("PUT", Some(200)), 0);
        assert_eq!(
            server.configmap("kube-system", "kubeadm-config").unwrap()["data"]["ClusterConfiguration"],
            CLUSTER_CONFIGURATION
        );
    })
    .await;
}

#[tokio::test]
async fn an_immutable_configmap_is_not_updated() {
    bounded(async {
        let server = TestApiServer::start().await;
        let mut cm = kubeadm_config(CLUSTER_CONFIGURATION);
        cm["immutable"] = json!(true);
        server.insert_configmap(cm);
        let dir = tempfile::tempdir().unwrap();
        let err = migrate_live(server.client(), &server.url(), &options(dir.path())).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap kube-system/kubeadm-config is immutable (immutable: true), so its ClusterConfiguration cannot be \
             updated in place; recreate it without immutable: true first"
        );
        assert_eq!(server.count("PUT", None), 0);
    })
    .await;
}

#[tokio::test]
async fn a_backup_that_cannot_be_written_stops_the_update() {
    bounded(async {
        let server = TestApiServer::start().await;
        server.insert_configmap(kubeadm_config(CLUSTER_CONFIGURATION));
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, "").unwrap();
        let err = migrate_live(server.client(), &server.url(), &options(&not_a_dir)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "failed to write the backup of ConfigMap kube-system/kubeadm-config to {:?}; the ConfigMap was not changed",
                not_a_dir.join("kubeadm-config-1.yaml")
            )
        );
        assert_eq!(server.count("PUT", None), 0);
    })
    .await;
}

/// Read-modify-write with the resourceVersion, retried on conflict: what any careful
/// writer does, and what the migration must not defeat.
async fn careful_writer(client: kube::Client, i: usize) -> usize {
    let api: Api<ConfigMap> = Api::namespaced(client, "kube-system");
    let mut conflicts = 0;
    loop {
        let mut cm = api.get("kubeadm-config").await.unwrap();
        cm.data
            .get_or_insert_with(Default::default)
            .insert(format!("writer-{i}"), format!("{i}"));
        cm.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(format!("example.com/writer-{i}"), "done".into());
        match api
            .replace("kubeadm-config", &PostParams::default(), &cm)
            .await
        {
            Ok(_) => return conflicts,
            Err(kube::Error::Api(s)) if s.is_conflict() => conflicts += 1,
            Err(e) => panic!("writer {i}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_no_update() {
    bounded(async {
        let server = TestApiServer::start().await;
        server.insert_configmap(kubeadm_config(CLUSTER_CONFIGURATION));
        server.delay_reads(Duration::from_millis(20));
        let dir = tempfile::tempdir().unwrap();
        const WRITERS: usize = 5;

        let writers: Vec<_> = (0..WRITERS)
            .map(|i| tokio::spawn(careful_writer(server.client(), i)))
            .collect();
        let report = migrate_live(server.client(), &server.url(), &options(dir.path()))
            .await
            .unwrap();
        for w in writers {
            w.await.unwrap();
        }

        assert_eq!(
            report.written.as_deref(),
            Some("ConfigMap kube-system/kubeadm-config")
        );
        let stored = server.configmap("kube-system", "kubeadm-config").unwrap();
        assert_eq!(stored["data"]["ClusterConfiguration"], MIGRATED);
        assert_eq!(stored["data"]["OtherKey"], "other value");
        for i in 0..WRITERS {
            assert_eq!(
                stored["data"][format!("writer-{i}")],
                format!("{i}"),
                "writer {i}"
            );
            assert_eq!(
                stored["metadata"]["labels"][format!("example.com/writer-{i}")],
                "done",
                "writer {i}"
            );
        }
        assert_eq!(
            stored["metadata"]["annotations"]["example.com/note"],
            "keep me"
        );
        // Every successful write is one resourceVersion: the seed, the writers and the migration.
        assert_eq!(server.count("PUT", Some(200)), WRITERS + 1);
        assert_eq!(
            stored["metadata"]["resourceVersion"],
            (WRITERS + 2).to_string()
        );
    })
    .await;
}

/// The test server's own semantics, through the real client: stale updates and merge
/// patches conflict, fresh ones apply.
#[tokio::test]
async fn the_test_server_keeps_the_api_semantics() {
    bounded(async {
        let server = TestApiServer::start().await;
        server.insert_configmap(kubeadm_config(CLUSTER_CONFIGURATION));
        let api: Api<ConfigMap> = Api::namespaced(server.client(), "kube-system");

        let read = api.get("kubeadm-config").await.unwrap();
        let patched = api
            .patch(
                "kubeadm-config",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"Added": "yes", "OtherKey": null}})),
            )
            .await
            .unwrap();
        let data = patched.data.clone().unwrap();
        assert_eq!(data.get("Added").map(String::as_str), Some("yes"));
        assert!(!data.contains_key("OtherKey"));
        assert_eq!(patched.metadata.resource_version.as_deref(), Some("2"));

        let err = api
            .replace("kubeadm-config", &PostParams::default(), &read)
            .await
            .unwrap_err();
        let kube::Error::Api(status) = err else {
            panic!("{err}")
        };
        assert!(status.is_conflict());
        assert_eq!(status.reason, "Conflict");
        assert_eq!(status.code, 409);

        let stale = Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"x": "y"}}));
        let err = api
            .patch("kubeadm-config", &PatchParams::default(), &stale)
            .await
            .unwrap_err();
        assert!(matches!(err, kube::Error::Api(s) if s.is_conflict()));

        let err = api.get("absent").await.unwrap_err();
        assert!(matches!(err, kube::Error::Api(s) if s.is_not_found() && s.reason == "NotFound"));

        let mut fresh = api.get("kubeadm-config").await.unwrap();
        fresh
            .data
            .as_mut()
            .unwrap()
            .insert("Fresh".into(), "1".into());
        let replaced = api
            .replace("kubeadm-config", &PostParams::default(), &fresh)
            .await
            .unwrap();
        assert_eq!(replaced.metadata.resource_version.as_deref(), Some("3"));
        assert_eq!(replaced.metadata.uid, read.metadata.uid);
    })
    .await;
}

fn etcd_pod(ns: &str, name: &str, url: Option<&str>, component: &str) -> Value {
    let mut pod = json!({
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"component": component, "tier": "control-plane"},
        },
        "spec": {"containers": [{"name": component, "image": "registry.k8s.io/etcd:3.5.24-0"}]},
    });
    if let Some(url) = url {
        pod["metadata"]["annotations"] =
            json!({"kubeadm.kubernetes.io/etcd.advertise-client-urls": url});
    }
    pod
}

#[tokio::test]
async fn etcd_client_urls_come_from_the_etcd_pods() {
    bounded(async {
        let server = TestApiServer::start().await;
        server.insert_pod(etcd_pod(
            "kube-system",
            "etcd-cp-2",
            Some("https://10.0.0.12:2379"),
            "etcd",
        ));
        server.insert_pod(etcd_pod(
            "kube-system",
            "etcd-cp-1",
            Some("https://10.0.0.11:2379"),
            "etcd",
        ));
        server.insert_pod(etcd_pod("kube-system", "etcd-cp-3", None, "etcd"));
        server.insert_pod(etcd_pod(
            "kube-system",
            "kube-apiserver-cp-1",
            Some("https://10.0.0.99:2379"),
            "kube-apiserver",
        ));
        server.insert_pod(etcd_pod(
            "default",
            "etcd-elsewhere",
            Some("https://10.9.9.9:2379"),
            "etcd",
        ));

        let urls = etcd_client_urls_from_pods_within(&server.client(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(urls, ["https://10.0.0.11:2379", "https://10.0.0.12:2379"]);
        let list = server
            .requests()
            .into_iter()
            .find(|r| r.path == "/api/v1/namespaces/kube-system/pods")
            .unwrap();
        assert_eq!(
            list.query.as_deref(),
            Some("&labelSelector=component%3Detcd%2Ctier%3Dcontrol-plane")
        );
    })
    .await;
}

#[tokio::test]
async fn etcd_pod_discovery_waits_a_bounded_time() {
    bounded(async {
        let server = TestApiServer::start().await;
        server.insert_pod(etcd_pod("kube-system", "etcd-cp-1", None, "etcd"));
        let started = std::time::Instant::now();
        let err = etcd_client_urls_from_pods_within(&server.client(), Duration::from_millis(700))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no Pod in kube-system with label selector \"component=etcd,tier=control-plane\" has the annotation \
             \"kubeadm.kubernetes.io/etcd.advertise-client-urls\" after waiting 700ms (1 matching Pods found)"
        );
        assert!(started.elapsed() >= Duration::from_millis(700));
        assert!(server.count("GET", Some(200)) >= 2, "it retried");

        // A Pod annotated while waiting is found.
        let late = TestApiServer::start().await;
        let client = late.client();
        let waiter = tokio::spawn(async move { etcd_client_urls_from_pods_within(&client, Duration::from_secs(10)).await });
        // The Pod appears only once the waiter has listed and found nothing, so the answer
        // can only come from a retry (a sleep instead let a first, late list find it).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while late.count("GET", Some(200)) == 0 {
            assert!(std::time::Instant::now() < deadline, "the waiter never listed Pods");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        late.insert_pod(etcd_pod("kube-system", "etcd-cp-1", Some("https://10.0.0.11:2379"), "etcd"));
        assert_eq!(waiter.await.unwrap().unwrap(), ["https://10.0.0.11:2379"]);
        assert!(late.count("GET", Some(200)) >= 2, "found by a retry");

        let forbidden = TestApiServer::start().await;
        forbidden.forbid("list");
        let err = etcd_client_urls_from_pods_within(&forbidden.client(), Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to list Pods in kube-system with label selector \"component=etcd,tier=control-plane\""
        );
    })
    .await;
}
