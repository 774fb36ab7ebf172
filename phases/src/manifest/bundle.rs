//! The external-etcd topology in one go: for every host, a folder with its kubeadm
//! configuration, its certificates and its static Pod manifest, all members listed in
//! `--initial-cluster` (state `new`), all certificates signed by one CA.
//!
//! This replaces the shell loop of kubeadm's "Set up a High Availability etcd cluster
//! with kubeadm" guide. Layout under the output directory:
//!
//! ```text
//! ca/etcd/ca.crt, ca.key      the only copy of the CA key: keep it off the etcd hosts
//! <host>/kubeadmcfg.yaml      re-renders manifests/etcd.yaml with `phase etcd local --config`
//! <host>/pki/...              goes to the host's certificatesDir (/etc/kubernetes/pki)
//! <host>/manifests/etcd.yaml  goes to /etc/kubernetes/manifests/etcd.yaml
//! ```
//!
//! The CA key is never written into a host folder, not even for a moment: every host's
//! certificates are signed with the CA read from `ca/etcd/` ([`crate::pki::PkiConfig`]'s
//! `ca_dir`), and a host folder only ever receives `ca.crt`.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{
    etcd_pod, peer_url, render_yaml, ManifestError, ManifestOptions, MANIFEST_DIR_MODE,
    MANIFEST_FILE_MODE,
};
use crate::config::{
    self, Arg, Etcd, KubeadmConfig, DEFAULT_CONTROL_PLANE_HEALTH_CHECK_TIMEOUT,
    DEFAULT_ETCD_API_CALL_TIMEOUT,
};
use crate::fsutil;
use crate::pki::{self, CertId, PkiConfig};

/// The per-host kubeadm configuration's file name.
pub const HOST_CONFIG_FILE_NAME: &str = "kubeadmcfg.yaml";

/// One etcd host: its node name and the address it advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleHost {
    pub name: String,
    pub address: IpAddr,
}

impl BundleHost {
    /// Reads `name=address`.
    pub fn parse(input: &str) -> Result<Self, ManifestError> {
        let invalid = |reason: String| ManifestError::InvalidHost {
            input: input.to_string(),
            reason,
        };
        let (name, address) = input
            .split_once('=')
            .ok_or_else(|| invalid("expected name=address, like etcd-0=10.0.0.10".into()))?;
        config::validate_node_name(name).map_err(&invalid)?;
        let address: IpAddr = address
            .parse()
            .map_err(|_| invalid(format!("{address:?} is not an IP address")))?;
        config::validate_advertise_address(address).map_err(&invalid)?;
        Ok(Self {
            name: name.to_string(),
            address,
        })
    }

    /// Reads a list of `name=address`, refusing duplicate names or addresses (etcd would
    /// refuse the cluster) and an empty list.
    pub fn parse_list(inputs: &[String]) -> Result<Vec<Self>, ManifestError> {
        if inputs.is_empty() {
            return Err(ManifestError::InvalidHost {
                input: String::new(),
                reason: "no hosts given; list them as name=address,name=address,...".into(),
            });
        }
        let mut hosts: Vec<Self> = Vec::new();
        for input in inputs {
            let host = Self::parse(input)?;
            if let Some(other) = hosts
                .iter()
                .find(|h| h.name == host.name || h.address == host.address)
            {
                return Err(ManifestError::InvalidHost {
                    input: input.clone(),
                    reason: format!(
                        "the name or the address is also used by {}={}; every member needs its own",
                        other.name, other.address
                    ),
                });
            }
            hosts.push(host);
        }
        Ok(hosts)
    }
}

/// Which paths the per-host configuration and manifest refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BundlePaths {
    /// Where the files go on the host: the configuration's certificatesDir and
    /// etcd.local.dataDir. For copying each folder to its host.
    #[default]
    OnHost,
    /// The bundle's own `<host>/pki` and `<host>/data`, so that the members can run right
    /// from the output directory (local trials, tests).
    InBundle,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleOptions {
    pub out_dir: PathBuf,
    pub paths: BundlePaths,
}

/// What was made for one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBundle {
    pub host: BundleHost,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub cert_dir: PathBuf,
    pub manifest_path: PathBuf,
    /// The configuration of this host, as written.
    pub config: KubeadmConfig,
    pub cert_events: Vec<pki::Event>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BundleReport {
    /// `<out>/ca`: the certificate directory holding the CA certificate and key.
    pub ca_dir: PathBuf,
    pub ca_events: Vec<pki::Event>,
    pub hosts: Vec<HostBundle>,
}

/// The kubeadm configuration (v1beta4, an InitConfiguration and a ClusterConfiguration) of
/// `host`: the cluster-wide settings of `cfg`, this host's identity, and extraArgs that
/// list every member as the initial cluster in state `new`.
pub fn host_config_yaml(
    cfg: &KubeadmConfig,
    host: &BundleHost,
    hosts: &[BundleHost],
    cert_dir: &Path,
    data_dir: &Path,
) -> Result<String, ManifestError> {
    let local = cfg.require_local_etcd()?;
    let initial_cluster: Vec<String> = hosts
        .iter()
        .map(|h| format!("{}={}", h.name, peer_url(h.address)))
        .collect();
    // The member list is the bundle's to decide: a user's own entries would contradict it.
    let mut extra_args: Vec<Arg> = local
        .extra_args
        .iter()
        .filter(|a| a.name != "initial-cluster" && a.name != "initial-cluster-state")
        .cloned()
        .collect();
    extra_args.push(Arg {
        name: "initial-cluster".into(),
        value: initial_cluster.join(","),
    });
    extra_args.push(Arg {
        name: "initial-cluster-state".into(),
        value: "new".into(),
    });

    let mut init = json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "InitConfiguration",
        "nodeRegistration": { "name": host.name },
        "localAPIEndpoint": { "advertiseAddress": host.address.to_string() },
    });
    if let Some(timeouts) = non_default_timeouts(cfg) {
        init["timeouts"] = timeouts;
    }

    let mut etcd_local = json!({
        "dataDir": data_dir.display().to_string(),
        "extraArgs": extra_args,
    });
    let optional = [
        (
            "imageRepository",
            local.image_repository.clone().map(serde_json::Value::from),
        ),
        (
            "imageTag",
            local.image_tag.clone().map(serde_json::Value::from),
        ),
        (
            "extraEnvs",
            (!local.extra_envs.is_empty())
                .then(|| serde_json::to_value(&local.extra_envs).expect("plain data")),
        ),
        (
            "serverCertSANs",
            (!local.server_cert_sans.is_empty()).then(|| json!(local.server_cert_sans)),
        ),
        (
            "peerCertSANs",
            (!local.peer_cert_sans.is_empty()).then(|| json!(local.peer_cert_sans)),
        ),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            etcd_local[key] = value;
        }
    }
    let c = &cfg.cluster;
    let mut cluster = json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "certificatesDir": cert_dir.display().to_string(),
        "imageRepository": c.image_repository,
        "clusterName": c.cluster_name,
        "encryptionAlgorithm": c.encryption_algorithm.as_str(),
        "certificateValidityPeriod": c.certificate_validity_period.to_string(),
        "caCertificateValidityPeriod": c.ca_certificate_validity_period.to_string(),
        "etcd": { "local": etcd_local },
    });
    if let Some(version) = &c.kubernetes_version {
        cluster["kubernetesVersion"] = version.clone().into();
    }
    if !c.feature_gates.is_empty() {
        cluster["featureGates"] = json!(c.feature_gates);
    }

    // kubeadm reads this file with go-yaml too: the same quoting rules as the manifest.
    let to_yaml = |v: serde_json::Value| super::to_yaml(super::sorted(v));
    Ok(format!(
        "# kubeadm configuration of etcd host {name} ({address}), one of {count} members of an\n\
         # external etcd cluster. `kubeadm-etcd phase etcd local --config {HOST_CONFIG_FILE_NAME}`\n\
         # (or kubeadm's `init phase etcd local`) renders this host's etcd.yaml from it.\n\
         ---\n{init}---\n{cluster}",
        name = host.name,
        address = host.address,
        count = hosts.len(),
        init = to_yaml(init)?,
        cluster = to_yaml(cluster)?,
    ))
}

/// The configuration's timeouts that differ from kubeadm's defaults, as kubeadm's
/// `timeouts` field; `None` when all are the defaults.
fn non_default_timeouts(cfg: &KubeadmConfig) -> Option<serde_json::Value> {
    let mut timeouts = serde_json::Map::new();
    if cfg.timeouts.control_plane_component_health_check.0
        != DEFAULT_CONTROL_PLANE_HEALTH_CHECK_TIMEOUT
    {
        timeouts.insert(
            "controlPlaneComponentHealthCheck".into(),
            cfg.timeouts
                .control_plane_component_health_check
                .to_string()
                .into(),
        );
    }
    if cfg.timeouts.etcd_api_call.0 != DEFAULT_ETCD_API_CALL_TIMEOUT {
        timeouts.insert(
            "etcdAPICall".into(),
            cfg.timeouts.etcd_api_call.to_string().into(),
        );
    }
    (!timeouts.is_empty()).then(|| timeouts.into())
}

struct Rendered {
    host: BundleHost,
    dir: PathBuf,
    cert_dir: PathBuf,
    config_yaml: String,
    config: KubeadmConfig,
    manifest_yaml: String,
}

/// Makes (or brings up to date) the bundle for `hosts` under `opts.out_dir`.
///
/// Every configuration and manifest is rendered before anything is written, so bad input
/// writes nothing. Rerunning reuses the CA and every certificate that is still valid and
/// rewrites only files whose content changed.
pub fn write_external_bundle(
    cfg: &KubeadmConfig,
    hosts: &[BundleHost],
    opts: &BundleOptions,
) -> Result<BundleReport, ManifestError> {
    if let Etcd::External(_) = cfg.cluster.etcd {
        return Err(config::ConfigError::ExternalEtcd {
            source_name: cfg.source_name(),
        }
        .into());
    }
    let out_dir = std::path::absolute(&opts.out_dir).map_err(|source| ManifestError::Write {
        path: opts.out_dir.clone(),
        source,
    })?;
    let local = cfg.require_local_etcd()?;

    let mut rendered = Vec::new();
    for host in hosts {
        let dir = out_dir.join(&host.name);
        let bundle_cert_dir = dir.join("pki");
        let (cert_dir, data_dir) = match opts.paths {
            BundlePaths::OnHost => (cfg.cluster.certificates_dir.clone(), local.data_dir.clone()),
            BundlePaths::InBundle => (bundle_cert_dir.clone(), dir.join("data")),
        };
        let config_path = dir.join(HOST_CONFIG_FILE_NAME);
        let config_yaml = host_config_yaml(cfg, host, hosts, &cert_dir, &data_dir)?;
        // Render from the file's own text, so the bundled manifest is by construction what
        // `phase etcd local --config kubeadmcfg.yaml` gives on the host.
        let host_cfg = config::load_str(&config_yaml, Some(&config_path))?;
        let pod = etcd_pod(&host_cfg, &ManifestOptions::first_member(cert_dir))?;
        rendered.push(Rendered {
            host: host.clone(),
            dir,
            cert_dir: bundle_cert_dir,
            config_yaml,
            config: host_cfg,
            manifest_yaml: render_yaml(&pod)?,
        });
    }

    let ca_dir = out_dir.join("ca");
    let ca_cfg = PkiConfig::from_kubeadm(cfg, ca_dir.clone());
    let ca_events = pki::ensure_certificates(&ca_cfg, &[CertId::EtcdCa], false)?.events;

    let mut report = BundleReport {
        ca_dir: ca_dir.clone(),
        ca_events,
        hosts: Vec::new(),
    };
    for r in rendered {
        let write_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ManifestError::Write { path, source }
        };
        fsutil::create_dir_all_with_mode(&r.dir, MANIFEST_DIR_MODE).map_err(write_error(&r.dir))?;
        let cert_events = sign_host_certificates(&ca_dir, &r.config, &r.cert_dir)?;
        let config_path = r.dir.join(HOST_CONFIG_FILE_NAME);
        write_if_changed(&config_path, r.config_yaml.as_bytes())?;
        let manifest_dir = r.dir.join("manifests");
        fsutil::create_dir_all_with_mode(&manifest_dir, MANIFEST_DIR_MODE)
            .map_err(write_error(&manifest_dir))?;
        let manifest_path = super::manifest_path(&manifest_dir);
        write_if_changed(&manifest_path, r.manifest_yaml.as_bytes())?;
        report.hosts.push(HostBundle {
            host: r.host,
            dir: r.dir,
            config_path,
            cert_dir: r.cert_dir,
            manifest_path,
            config: r.config,
            cert_events,
        });
    }
    Ok(report)
}

fn write_if_changed(path: &Path, contents: &[u8]) -> Result<(), ManifestError> {
    let old = fsutil::read_if_exists(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if old.as_deref() != Some(contents) {
        fsutil::write_atomic(path, contents, MANIFEST_FILE_MODE).map_err(|source| {
            ManifestError::Write {
                path: path.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(())
}

fn sign_host_certificates(
    ca_dir: &Path,
    host_cfg: &KubeadmConfig,
    cert_dir: &Path,
) -> Result<Vec<pki::Event>, ManifestError> {
    // The host keeps the CA certificate, to verify its peers; the key stays in `ca_dir`.
    let ca_cert =
        fs::read(CertId::EtcdCa.cert_path(ca_dir)).map_err(|source| ManifestError::Read {
            path: CertId::EtcdCa.cert_path(ca_dir),
            source,
        })?;
    let host_ca_cert = CertId::EtcdCa.cert_path(cert_dir);
    if fsutil::read_if_exists(&host_ca_cert)
        .ok()
        .flatten()
        .as_deref()
        != Some(&ca_cert[..])
    {
        let write_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ManifestError::Write { path, source }
        };
        let dir = host_ca_cert
            .parent()
            .expect("certificate paths have a parent");
        fsutil::create_dir_all_with_mode(dir, pki::DIR_MODE).map_err(write_error(dir))?;
        fsutil::write_atomic(&host_ca_cert, &ca_cert, pki::CERT_FILE_MODE)
            .map_err(write_error(&host_ca_cert))?;
    }
    let mut pki_cfg = PkiConfig::from_kubeadm(host_cfg, cert_dir.to_path_buf());
    pki_cfg.ca_dir = Some(ca_dir.to_path_buf());
    let report = pki::ensure_certificates(&pki_cfg, &CertId::ALL[1..], false)?;
    // The events mention the CA the host folder does not keep; only its leaves matter.
    Ok(report
        .events
        .into_iter()
        .filter(|e| !matches!(e, pki::Event::UsingExistingCa { .. }))
        .collect())
}
