//! The kubeadm configuration model: reading `InitConfiguration`, `JoinConfiguration` and
//! `ClusterConfiguration` documents in `kubeadm.k8s.io/v1beta3` and `v1beta4`, applying
//! kubeadm's defaults, and validating what the etcd phases rely on.
//!
//! Loading never fails on an unknown field: like kubeadm's strict decoding it records a
//! warning and goes on. Everything else that is wrong is an error that names the file,
//! the document, the field, the value and, where the parser knows it, the line.

pub mod duration;
mod error;
mod host;
mod load;
pub mod raw;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use duration::{DurationError, GoDuration};
pub use error::{ConfigError, FieldError, Location};
pub use load::{load_file, load_file_as, load_str, load_str_as};
pub use raw::{Arg, EnvVar};

pub const API_GROUP: &str = "kubeadm.k8s.io";
pub const DEFAULT_CERTIFICATES_DIR: &str = "/etc/kubernetes/pki";
pub const DEFAULT_ETCD_DATA_DIR: &str = "/var/lib/etcd";
pub const DEFAULT_IMAGE_REPOSITORY: &str = "registry.k8s.io";
pub const DEFAULT_CLUSTER_NAME: &str = "kubernetes";
/// kubeadm's `CertificateValidityPeriod`.
pub const DEFAULT_CERTIFICATE_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// kubeadm's `CACertificateValidityPeriod`.
pub const DEFAULT_CA_CERTIFICATE_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// kubeadm's default `timeouts.etcdAPICall`.
pub const DEFAULT_ETCD_API_CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// kubeadm's default `timeouts.controlPlaneComponentHealthCheck`.
pub const DEFAULT_CONTROL_PLANE_HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(240);

/// The kubeadm API versions this tool reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum ApiVersion {
    #[serde(rename = "kubeadm.k8s.io/v1beta3")]
    V1Beta3,
    #[serde(rename = "kubeadm.k8s.io/v1beta4")]
    V1Beta4,
}

impl ApiVersion {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "kubeadm.k8s.io/v1beta3" => Some(Self::V1Beta3),
            "kubeadm.k8s.io/v1beta4" => Some(Self::V1Beta4),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1Beta3 => "kubeadm.k8s.io/v1beta3",
            Self::V1Beta4 => "kubeadm.k8s.io/v1beta4",
        }
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// kubeadm's `encryptionAlgorithm`: the key type of every generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub enum EncryptionAlgorithm {
    #[default]
    #[serde(rename = "RSA-2048")]
    Rsa2048,
    #[serde(rename = "RSA-3072")]
    Rsa3072,
    #[serde(rename = "RSA-4096")]
    Rsa4096,
    #[serde(rename = "ECDSA-P256")]
    EcdsaP256,
    #[serde(rename = "ECDSA-P384")]
    EcdsaP384,
}

impl EncryptionAlgorithm {
    pub const ALL: [Self; 5] = [
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
        Self::EcdsaP256,
        Self::EcdsaP384,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rsa2048 => "RSA-2048",
            Self::Rsa3072 => "RSA-3072",
            Self::Rsa4096 => "RSA-4096",
            Self::EcdsaP256 => "ECDSA-P256",
            Self::EcdsaP384 => "ECDSA-P384",
        }
    }

    /// kubeadm treats an empty value as the default.
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() {
            return Some(Self::default());
        }
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for EncryptionAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which node this is, as far as etcd cares.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeIdentity {
    pub name: Option<String>,
    pub advertise_address: Option<IpAddr>,
}

/// A kubeadm configuration, resolved: defaults applied, both API versions folded into one
/// shape (v1beta3's `extraArgs` map becomes an ordered list).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeadmConfig {
    /// The file it came from, for error messages.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// The version of the ClusterConfiguration, else of the first kubeadm document.
    pub api_version: ApiVersion,
    /// `InitConfiguration`, `JoinConfiguration`, or neither (a bare ClusterConfiguration).
    pub node_kind: Option<NodeKind>,
    pub node: NodeIdentity,
    pub cluster: ClusterConfig,
    pub timeouts: Timeouts,
    /// `patches.directory` of the InitConfiguration or JoinConfiguration.
    pub patches_directory: Option<PathBuf>,
    /// The kubeadm minor release to emulate, when the caller names one (a command-line
    /// choice, never a configuration field: kubeadm has none). `None`: the minor of
    /// `kubernetesVersion`. See [`crate::versions::KubeadmRelease::select`].
    #[serde(skip)]
    pub kubeadm_minor: Option<u64>,
    /// Defaults taken from the host ([`KubeadmConfig::apply_host_defaults`]), for `-v 1`.
    #[serde(skip)]
    pub notes: Vec<String>,
    /// Unknown fields and dropped values, as kubeadm's strict decoding reports them.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum NodeKind {
    InitConfiguration,
    JoinConfiguration,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    /// The version as written, e.g. `v1.32.0`.
    pub kubernetes_version: Option<String>,
    /// `kubernetesVersion` parsed; `None` when it was not set.
    #[serde(skip)]
    pub kubernetes_semver: Option<semver::Version>,
    pub certificates_dir: PathBuf,
    pub image_repository: String,
    pub cluster_name: String,
    pub encryption_algorithm: EncryptionAlgorithm,
    pub certificate_validity_period: GoDuration,
    pub ca_certificate_validity_period: GoDuration,
    pub feature_gates: BTreeMap<String, bool>,
    pub etcd: Etcd,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Etcd {
    Local(LocalEtcd),
    External(ExternalEtcd),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalEtcd {
    pub image_repository: Option<String>,
    pub image_tag: Option<String>,
    pub data_dir: PathBuf,
    pub extra_args: Vec<Arg>,
    pub extra_envs: Vec<EnvVar>,
    #[serde(rename = "serverCertSANs")]
    pub server_cert_sans: Vec<String>,
    #[serde(rename = "peerCertSANs")]
    pub peer_cert_sans: Vec<String>,
}

impl Default for LocalEtcd {
    fn default() -> Self {
        Self {
            image_repository: None,
            image_tag: None,
            data_dir: PathBuf::from(DEFAULT_ETCD_DATA_DIR),
            extra_args: Vec::new(),
            extra_envs: Vec::new(),
            server_cert_sans: Vec::new(),
            peer_cert_sans: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalEtcd {
    pub endpoints: Vec<String>,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    #[serde(rename = "etcdAPICall")]
    pub etcd_api_call: GoDuration,
    pub control_plane_component_health_check: GoDuration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            etcd_api_call: GoDuration(DEFAULT_ETCD_API_CALL_TIMEOUT),
            control_plane_component_health_check: GoDuration(
                DEFAULT_CONTROL_PLANE_HEALTH_CHECK_TIMEOUT,
            ),
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            kubernetes_version: None,
            kubernetes_semver: None,
            certificates_dir: PathBuf::from(DEFAULT_CERTIFICATES_DIR),
            image_repository: DEFAULT_IMAGE_REPOSITORY.to_string(),
            cluster_name: DEFAULT_CLUSTER_NAME.to_string(),
            encryption_algorithm: EncryptionAlgorithm::default(),
            certificate_validity_period: GoDuration(DEFAULT_CERTIFICATE_VALIDITY),
            ca_certificate_validity_period: GoDuration(DEFAULT_CA_CERTIFICATE_VALIDITY),
            feature_gates: BTreeMap::new(),
            etcd: Etcd::Local(LocalEtcd::default()),
        }
    }
}

impl Default for KubeadmConfig {
    /// kubeadm's defaults, as if an empty v1beta4 ClusterConfiguration had been given.
    fn default() -> Self {
        Self {
            source: None,
            api_version: ApiVersion::V1Beta4,
            node_kind: None,
            node: NodeIdentity::default(),
            cluster: ClusterConfig::default(),
            timeouts: Timeouts::default(),
            patches_directory: None,
            kubeadm_minor: None,
            notes: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

impl KubeadmConfig {
    /// Where the configuration came from, for messages.
    pub fn source_name(&self) -> String {
        self.source.as_ref().map_or_else(
            || "the default configuration".to_string(),
            |p| p.display().to_string(),
        )
    }

    /// The kubeadm release whose behaviour this configuration is rendered with, and a
    /// warning when that release is not modelled and the nearest one is used.
    pub fn kubeadm_release(&self) -> (&'static crate::versions::KubeadmRelease, Option<String>) {
        crate::versions::KubeadmRelease::select(
            self.kubeadm_minor,
            self.cluster.kubernetes_semver.as_ref(),
        )
    }

    /// One line naming the kubeadm release emulated and why, for `-v 1` and `--dry-run`
    /// output: "emulating kubeadm v1.34 (the minor of kubernetesVersion v1.34.2)".
    pub fn emulated_kubeadm(&self) -> String {
        let (release, _) = self.kubeadm_release();
        let why = match (self.kubeadm_minor, &self.cluster.kubernetes_version) {
            (Some(minor), _) if minor == release.minor => "as requested".to_string(),
            (Some(minor), _) => format!("the nearest modelled release to the requested v1.{minor}"),
            (None, Some(v)) => match &self.cluster.kubernetes_semver {
                Some(k) if k.major == 1 && k.minor == release.minor => {
                    format!("the minor of kubernetesVersion {v}")
                }
                _ => format!("the nearest modelled release to kubernetesVersion {v}"),
            },
            (None, None) => "the newest modelled release; kubernetesVersion is not set".to_string(),
        };
        format!("emulating kubeadm {} ({why})", release.name())
    }

    /// kubeadm's defaults for the node when the configuration leaves them out
    /// (`SetNodeRegistrationDynamicDefaults`, `SetAPIEndpointDynamicDefaults`): the host
    /// name, lowercased, as the node name, and the address of the default route's
    /// interface as the advertise address. Returns what was defaulted, for `-v 1`.
    /// A host without a usable name or default route leaves the field unset, and the
    /// phase that needs it says so.
    pub fn apply_host_defaults(&mut self) -> Vec<String> {
        let mut applied = Vec::new();
        if self.node.name.as_deref().is_none_or(str::is_empty) {
            if let Some(name) = host::hostname().filter(|n| validate_node_name(n).is_ok()) {
                applied.push(format!(
                    "nodeRegistration.name defaults to the host name {name:?}"
                ));
                self.node.name = Some(name);
            }
        }
        if self.node.advertise_address.is_none() {
            if let Some(ip) = host::default_route_address() {
                applied.push(format!(
                    "the advertise address defaults to {ip}, the address of the default route"
                ));
                self.node.advertise_address = Some(ip);
            }
        }
        applied
    }

    /// The node name, or an error that says where to set it.
    pub fn require_node_name(&self) -> Result<&str, ConfigError> {
        self.node
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ConfigError::MissingNodeName {
                source_name: self.source_name(),
            })
    }

    /// The advertise address, or an error that says where to set it.
    pub fn require_advertise_address(&self) -> Result<IpAddr, ConfigError> {
        self.node
            .advertise_address
            .ok_or_else(|| ConfigError::MissingAdvertiseAddress {
                source_name: self.source_name(),
            })
    }

    /// The local etcd section, or an error when the configuration uses external etcd.
    pub fn require_local_etcd(&self) -> Result<&LocalEtcd, ConfigError> {
        match &self.cluster.etcd {
            Etcd::Local(local) => Ok(local),
            Etcd::External(_) => Err(ConfigError::ExternalEtcd {
                source_name: self.source_name(),
            }),
        }
    }
}

pub use crate::versions::parse_kubernetes_version;
pub use load::{is_dns1123_name, validate_advertise_address, validate_node_name};

#[cfg(test)]
mod tests;
