//! The etcd static Pod manifest, as kubeadm renders it (`GetEtcdPodSpec` in
//! `cmd/kubeadm/app/phases/etcd/local.go`, `ComponentPod` in
//! `cmd/kubeadm/app/util/staticpod/utils.go`), for the etcd release the image runs.
//!
//! Rendering is pure and byte-stable: the same configuration gives the same bytes, with
//! mapping keys sorted like kubeadm's output (Go's YAML marshaller sorts them).
//!
//! What differs between kubeadm releases (probes, the named probe port,
//! `creationTimestamp: null`, the spelling of etcd's graduated flags, the etcd tag) follows
//! the kubeadm release emulated, [`crate::versions::KubeadmRelease`]; the etcd release in
//! the image only decides what etcd itself cannot run (flags an old etcd lacks), see
//! [`command::EtcdProfile`].

pub mod bundle;
pub mod command;
mod error;
pub mod probes;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, HostPathVolumeSource, Pod, PodSecurityContext, PodSpec,
    PodStatus, ResourceRequirements, SeccompProfile, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff;

pub use bundle::{
    write_external_bundle, BundleHost, BundleOptions, BundlePaths, BundleReport, HostBundle,
};
pub use command::EtcdProfile;
pub use error::ManifestError;

use crate::config::{KubeadmConfig, LocalEtcd};
use crate::fsutil;
use crate::versions;

/// kubeadm's static Pod directory (`GetStaticPodDirectory`).
pub const DEFAULT_MANIFEST_DIR: &str = "/etc/kubernetes/manifests";
/// kubeadm's temporary directory (`/etc/kubernetes/tmp`), where replaced manifests and
/// ConfigMap backups go.
pub const DEFAULT_BACKUP_DIR: &str = "/etc/kubernetes/tmp";
/// The static Pod's file name in the manifest directory.
pub const MANIFEST_FILE_NAME: &str = "etcd.yaml";
/// The annotation kubeadm reads to find the etcd members (`NewFromCluster`;
/// `constants.EtcdAdvertiseClientUrlsAnnotationKey`).
pub const ADVERTISE_CLIENT_URLS_ANNOTATION: &str =
    "kubeadm.kubernetes.io/etcd.advertise-client-urls";
/// `system-node-critical`'s priority; the kubelet admits static Pods before the
/// scheduler knows the class, so kubeadm writes the number too.
pub const SYSTEM_NODE_CRITICAL_PRIORITY: i32 = 2_000_001_000;
pub const MANIFEST_FILE_MODE: u32 = 0o600;
pub const MANIFEST_DIR_MODE: u32 = 0o700;

const DATA_VOLUME: &str = "etcd-data";
const CERTS_VOLUME: &str = "etcd-certs";

/// A member of the initial cluster, as the learner join reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub name: String,
    pub peer_url: String,
}

/// What the manifest needs beyond the kubeadm configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestOptions {
    /// The certificate directory the paths in the command point at.
    pub cert_dir: PathBuf,
    /// `None`: the first member of a new cluster (`--initial-cluster=<node>=<peer URL>`,
    /// no state flag, so etcd's default `new`). `Some(members)`: a joining member; the list
    /// includes this node, and `--initial-cluster-state=existing` is added.
    pub initial_cluster: Option<Vec<Member>>,
}

impl ManifestOptions {
    pub fn first_member(cert_dir: PathBuf) -> Self {
        Self {
            cert_dir,
            initial_cluster: None,
        }
    }

    pub fn joining(cert_dir: PathBuf, members: Vec<Member>) -> Self {
        Self {
            cert_dir,
            initial_cluster: Some(members),
        }
    }
}

/// What [`write_manifest`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Created,
    /// Byte-identical: nothing was touched, not even the modification time.
    Unchanged,
    /// The previous manifest was copied to `backup`, then replaced.
    Replaced {
        backup: PathBuf,
    },
}

/// `https://<ip>:2379`; IPv6 in brackets (kubeadm's `GetClientURLByIP`).
pub fn client_url(ip: IpAddr) -> String {
    format!("https://{}", SocketAddr::new(ip, 2379))
}

/// `https://<ip>:2380`; IPv6 in brackets (kubeadm's `GetPeerURL`).
pub fn peer_url(ip: IpAddr) -> String {
    format!("https://{}", SocketAddr::new(ip, 2380))
}

/// `<manifest_dir>/etcd.yaml`.
pub fn manifest_path(manifest_dir: &Path) -> PathBuf {
    manifest_dir.join(MANIFEST_FILE_NAME)
}

/// How the manifest is rendered: the kubeadm release emulated, the etcd image tag and
/// the etcd release it stands for, and what is worth a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendering {
    pub release: &'static versions::KubeadmRelease,
    pub tag: String,
    pub version: semver::Version,
    pub warnings: Vec<String>,
}

/// The kubeadm release emulated and the etcd image it deploys:
/// - the release is [`KubeadmConfig::kubeadm_release`];
/// - `etcd.local.imageTag` wins;
/// - else that release's supported-etcd map for `kubernetesVersion` (the nearest entry,
///   with kubeadm's warning, when the minor is not in the map);
/// - else, with no `kubernetesVersion`, the release's own default (kubeadm's
///   `DefaultEtcdVersion`), with a warning.
pub fn rendering_of(cfg: &KubeadmConfig) -> Result<Rendering, ManifestError> {
    let local = cfg.require_local_etcd()?;
    let (release, release_warning) = cfg.kubeadm_release();
    let mut warnings: Vec<String> = release_warning.into_iter().collect();
    let tag = match (&local.image_tag, &cfg.cluster.kubernetes_semver) {
        (Some(tag), _) => tag.clone(),
        (None, Some(k8s)) => {
            let (tag, warning) = release.etcd_tag_for(k8s);
            warnings.extend(warning);
            tag.to_string()
        }
        (None, None) => {
            let tag = release.default_etcd_tag();
            warnings.push(format!(
                "{}: kubernetesVersion is not set; using etcd {tag}, the version kubeadm {} deploys (set kubernetesVersion or etcd.local.imageTag to choose)",
                cfg.source_name(),
                release.name()
            ));
            tag.to_string()
        }
    };
    let version =
        versions::etcd_semver_from_tag(&tag).map_err(|source| ManifestError::ImageTag {
            source_name: cfg.source_name(),
            source,
        })?;
    let profile = EtcdProfile::new(release, &tag, version.clone());
    // An etcd without learners is refused by the renderer; nothing more to say about it.
    if !profile.supports_learners() {
        return Ok(Rendering {
            release,
            tag,
            version,
            warnings,
        });
    }
    warnings.extend(profile.deviation(&tag));
    if release.probes == versions::ProbeStyle::LivezReadyz && !profile.serves_livez_readyz() {
        warnings.push(format!(
            "kubeadm {} probes etcd on /livez and /readyz, which etcd {version} does not serve \
             (they appeared in 3.5.11): the kubelet will restart this etcd; use etcd 3.5.11 or \
             newer, or emulate kubeadm v1.30 or older",
            release.name()
        ));
    }
    Ok(Rendering {
        release,
        tag,
        version,
        warnings,
    })
}

/// The etcd image tag the configuration asks for, the etcd release it stands for, and
/// the warnings of [`rendering_of`] joined into one.
pub fn etcd_version_of(
    cfg: &KubeadmConfig,
) -> Result<(String, semver::Version, Option<String>), ManifestError> {
    let rendering = rendering_of(cfg)?;
    let warning = (!rendering.warnings.is_empty()).then(|| rendering.warnings.join("; "));
    Ok((rendering.tag, rendering.version, warning))
}

/// `<etcd.local.imageRepository or imageRepository>/etcd:<tag>` (kubeadm's `GetEtcdImage`).
pub fn etcd_image(cfg: &KubeadmConfig, local: &LocalEtcd, tag: &str) -> String {
    let repository = local
        .image_repository
        .as_deref()
        .unwrap_or(&cfg.cluster.image_repository);
    format!("{repository}/etcd:{tag}")
}

/// The etcd static Pod for this node.
pub fn etcd_pod(cfg: &KubeadmConfig, opts: &ManifestOptions) -> Result<Pod, ManifestError> {
    let local = cfg.require_local_etcd()?;
    let node_name = cfg.require_node_name()?;
    let advertise_address = cfg.require_advertise_address()?;
    let Rendering {
        release,
        tag,
        version,
        ..
    } = rendering_of(cfg)?;
    if !crate::membership::version::supports_learners(&version) {
        return Err(ManifestError::UnsupportedEtcd { version });
    }
    refuse_what_is_not_rendered(cfg, release)?;
    let profile = EtcdProfile::new(release, &tag, version);
    if let Some(members) = &opts.initial_cluster {
        check_initial_cluster(node_name, members)?;
    }
    let env = merge_extra_envs(cfg, local)?;

    let command = command::etcd_command(&command::CommandInput {
        node_name,
        advertise_address,
        data_dir: &local.data_dir,
        cert_dir: &opts.cert_dir,
        initial_cluster: opts.initial_cluster.as_deref(),
        extra_args: &local.extra_args,
        profile: &profile,
    });
    let endpoint = probes::probe_endpoint(&local.extra_args, advertise_address.is_ipv6());
    let startup_budget = startup_probe_budget(cfg, opts, release, &profile);
    let probes = probes::probes(&endpoint, release, startup_budget);

    let data_dir = local.data_dir.display().to_string();
    let certs_dir = opts.cert_dir.join("etcd").display().to_string();
    let container = Container {
        name: "etcd".into(),
        command: Some(command),
        image: Some(etcd_image(cfg, local, &tag)),
        image_pull_policy: Some("IfNotPresent".into()),
        volume_mounts: Some(vec![
            volume_mount(DATA_VOLUME, &data_dir),
            volume_mount(CERTS_VOLUME, &certs_dir),
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("100m".into())),
                ("memory".to_string(), Quantity("100Mi".into())),
            ])),
            ..Default::default()
        }),
        liveness_probe: Some(probes.liveness),
        readiness_probe: probes.readiness,
        startup_probe: Some(probes.startup),
        env: (!env.is_empty()).then_some(env),
        ports: probes::probe_port(&endpoint, release).map(|p| vec![p]),
        ..Default::default()
    };
    // kubeadm builds the volumes from a map and sorts them by name.
    let mut volumes = vec![
        host_path_volume(DATA_VOLUME, &data_dir),
        host_path_volume(CERTS_VOLUME, &certs_dir),
    ];
    volumes.sort_by(|a, b| a.name.cmp(&b.name));

    Ok(Pod {
        metadata: ObjectMeta {
            name: Some("etcd".into()),
            namespace: Some("kube-system".into()),
            labels: Some(BTreeMap::from([
                ("component".to_string(), "etcd".to_string()),
                ("tier".to_string(), "control-plane".to_string()),
            ])),
            // Always the default client URL, even when extraArgs move the listener:
            // kubeadm's discovery reads this annotation.
            annotations: Some(BTreeMap::from([(
                ADVERTISE_CLIENT_URLS_ANNOTATION.to_string(),
                client_url(advertise_address),
            )])),
            // Go's zero metav1.Time, which kubeadm's writer printed as `null` up to 1.33;
            // [`pod_value`] writes it so.
            creation_timestamp: release.creation_timestamp_null.then(go_zero_time),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            host_network: Some(true),
            priority: Some(SYSTEM_NODE_CRITICAL_PRIORITY),
            priority_class_name: Some("system-node-critical".into()),
            security_context: Some(PodSecurityContext {
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: Some(PodStatus::default()),
    })
}

/// How long the startup probe may fail before the kubelet restarts the member.
fn startup_probe_budget(
    cfg: &KubeadmConfig,
    opts: &ManifestOptions,
    release: &versions::KubeadmRelease,
    profile: &EtcdProfile,
) -> std::time::Duration {
    let health_check = cfg
        .timeouts
        .control_plane_component_health_check
        .as_duration();
    // Since etcd 3.5.19 `/readyz` answers 503 while the member is a learner (etcd commit
    // 62a5010f5, "add learner check to readyz"), and kubeadm's startup probe asks
    // `/readyz` from 1.31: a joining member's probe fails until it is promoted. With
    // kubeadm's budget (controlPlaneComponentHealthCheck) a learner slower to catch up
    // than that is killed by the kubelet, starts its catch-up over, and is never promoted
    // while `promote` keeps waiting. A joining member's startup probe therefore lasts at
    // least as long as `promote` waits by default; it only runs until the first success.
    let startup_probe_refuses_learners =
        release.probes == versions::ProbeStyle::LivezReadyz && profile.readyz_refuses_learners();
    if opts.initial_cluster.is_some() && startup_probe_refuses_learners {
        health_check.max(crate::membership::default_timeout(
            cfg.timeouts.etcd_api_call.as_duration(),
        ))
    } else {
        health_check
    }
}

/// Go's zero `time.Time` (0001-01-01T00:00:00Z), the value of an unset
/// `metav1.ObjectMeta.CreationTimestamp`.
fn go_zero_time() -> Time {
    Time(jiff::Timestamp::from_second(-62_135_596_800).expect("0001-01-01 is a valid timestamp"))
}

/// Settings kubeadm applies to the etcd static Pod that this tool does not: refused, never
/// silently ignored.
fn refuse_what_is_not_rendered(
    cfg: &KubeadmConfig,
    release: &versions::KubeadmRelease,
) -> Result<(), ManifestError> {
    if let Some(directory) = &cfg.patches_directory {
        return Err(ManifestError::Unsupported {
            source_name: cfg.source_name(),
            field: "patches.directory".into(),
            reason: format!(
                "kubeadm would patch the etcd static Pod with the files in {} \
                 (etcd[suffix][+strategic|+merge|+json].yaml|.json); kubeadm-etcd does not \
                 apply patches: remove the setting and apply the patches to the manifest it \
                 writes, or let kubeadm render etcd",
                directory.display()
            ),
        });
    }
    if cfg
        .cluster
        .feature_gates
        .get("RootlessControlPlane")
        .copied()
        .unwrap_or(false)
    {
        return Err(ManifestError::Unsupported {
            source_name: cfg.source_name(),
            field: "featureGates.RootlessControlPlane".into(),
            reason: format!(
                "kubeadm {} would create the kubeadm-etcd user and group and run etcd as them \
                 (RunComponentAsNonRoot); kubeadm-etcd does not create users: remove the gate \
                 or set it to false",
                release.name()
            ),
        });
    }
    Ok(())
}

fn check_initial_cluster(node_name: &str, members: &[Member]) -> Result<(), ManifestError> {
    if members.is_empty() {
        return Err(ManifestError::EmptyInitialCluster {
            node_name: node_name.to_string(),
        });
    }
    if !members.iter().any(|m| m.name == node_name) {
        return Err(ManifestError::NotInInitialCluster {
            node_name: node_name.to_string(),
            members: members
                .iter()
                .map(|m| format!("{}={}", m.name, m.peer_url))
                .collect::<Vec<_>>()
                .join(","),
        });
    }
    Ok(())
}

/// kubeadm's `MergeKubeadmEnvVars`: one variable per name, the last definition wins,
/// sorted by name.
fn merge_extra_envs(cfg: &KubeadmConfig, local: &LocalEtcd) -> Result<Vec<EnvVar>, ManifestError> {
    let mut merged: BTreeMap<&str, EnvVar> = BTreeMap::new();
    for (index, env) in local.extra_envs.iter().enumerate() {
        let value_from = match &env.value_from {
            None => None,
            Some(raw) => Some(serde_yaml::from_value::<EnvVarSource>(raw.clone()).map_err(
                |e| ManifestError::ExtraEnv {
                    source_name: cfg.source_name(),
                    index,
                    name: env.name.clone(),
                    reason: e.to_string(),
                },
            )?),
        };
        merged.insert(
            &env.name,
            EnvVar {
                name: env.name.clone(),
                value: (!env.value.is_empty()).then(|| env.value.clone()),
                value_from,
            },
        );
    }
    Ok(merged.into_values().collect())
}

fn volume_mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

fn host_path_volume(name: &str, path: &str) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: Some("DirectoryOrCreate".into()),
        }),
        ..Default::default()
    }
}

/// Rebuilds every mapping with its keys in sorted order, whatever map type serde_json
/// was built with, so that the output does not depend on struct field order.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let entries: BTreeMap<String, serde_json::Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            serde_json::Value::Object(entries.into_iter().collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

fn pod_value(pod: &Pod) -> Result<serde_json::Value, ManifestError> {
    let mut value = serde_json::to_value(pod)
        .map(sorted)
        .map_err(|e| ManifestError::Serialize(e.to_string()))?;
    if pod.metadata.creation_timestamp == Some(go_zero_time()) {
        value["metadata"]["creationTimestamp"] = serde_json::Value::Null;
    }
    Ok(value)
}

/// The manifest as YAML: keys sorted, block style, ending in a newline; strings that
/// YAML 1.1 (the kubelet's reader) or 1.2 would take for another type are double-quoted.
pub fn render_yaml(pod: &Pod) -> Result<String, ManifestError> {
    to_yaml(pod_value(pod)?)
}

/// Shared with the per-host bundle's kubeadm configurations.
pub(crate) fn to_yaml(value: serde_json::Value) -> Result<String, ManifestError> {
    let value = serde_yaml::to_value(value).map_err(|e| ManifestError::Serialize(e.to_string()))?;
    crate::yaml::to_string(&value).map_err(|e| ManifestError::Serialize(e.to_string()))
}

/// The manifest as indented JSON, keys sorted, ending in a newline.
pub fn render_json(pod: &Pod) -> Result<String, ManifestError> {
    let mut text = serde_json::to_string_pretty(&pod_value(pod)?)
        .map_err(|e| ManifestError::Serialize(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// The backup name of a replaced manifest: named after the old content, so rerunning
/// never piles up copies of the same bytes and the name can be checked with `sha256sum`.
pub fn backup_path(backup_dir: &Path, old: &[u8]) -> PathBuf {
    let digest = ring::digest::digest(&ring::digest::SHA256, old);
    let hex: String = digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    backup_dir.join(format!("{MANIFEST_FILE_NAME}.{hex}"))
}

/// Writes `<manifest_dir>/etcd.yaml` (mode 0600, directory 0700 when created) atomically.
/// Identical content is left alone; different content is first copied to
/// [`backup_path`] in `backup_dir`, then replaced.
pub fn write_manifest(
    manifest_dir: &Path,
    backup_dir: &Path,
    yaml: &str,
) -> Result<WriteOutcome, ManifestError> {
    let path = manifest_path(manifest_dir);
    let old = fsutil::read_if_exists(&path).map_err(|source| ManifestError::Read {
        path: path.clone(),
        source,
    })?;
    if old.as_deref() == Some(yaml.as_bytes()) {
        return Ok(WriteOutcome::Unchanged);
    }
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ManifestError::Write { path, source }
    };
    fsutil::create_dir_all_with_mode(manifest_dir, MANIFEST_DIR_MODE)
        .map_err(write_error(manifest_dir))?;
    let outcome = match old {
        None => WriteOutcome::Created,
        Some(old) => {
            let backup = backup_path(backup_dir, &old);
            fsutil::create_dir_all_with_mode(backup_dir, MANIFEST_DIR_MODE)
                .map_err(write_error(backup_dir))?;
            fsutil::write_atomic(&backup, &old, MANIFEST_FILE_MODE)
                .map_err(write_error(&backup))?;
            WriteOutcome::Replaced { backup }
        }
    };
    fsutil::write_atomic(&path, yaml.as_bytes(), MANIFEST_FILE_MODE).map_err(write_error(&path))?;
    Ok(outcome)
}

#[cfg(test)]
mod tests;
