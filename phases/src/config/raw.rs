//! The documents of a kubeadm configuration file as they are written, per API version.
//!
//! Fields this tool does not use but kubeadm defines are declared as opaque values so
//! that they are accepted silently; anything else is reported as an unknown field, the
//! way kubeadm's strict decoding warns about it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use super::duration::GoDuration;

/// A kubeadm field whose content this tool does not need.
pub type Opaque = Option<serde_yaml::Value>;

/// An IP address whose parse error names the offending value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

impl<'de> Deserialize<'de> for Ip {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map(Ip).map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid IP address {raw:?}: expected an IPv4 or IPv6 address"
            ))
        })
    }
}

/// `extraArgs` in v1beta3: a map, so one value per flag.
pub type ExtraArgsMap = BTreeMap<String, String>;

/// `extraArgs` in v1beta4: a list of name/value pairs that may repeat a name.
pub type ExtraArgsList = Vec<Arg>;

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Arg {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
    /// A `valueFrom` source is passed through untouched.
    #[serde(rename = "valueFrom", skip_serializing_if = "Option::is_none")]
    pub value_from: Opaque,
}

/// Converts either spelling of `extraArgs` to the ordered list form.
pub trait ExtraArgs: for<'de> Deserialize<'de> + Default {
    fn into_list(self) -> Vec<Arg>;
}

impl ExtraArgs for ExtraArgsMap {
    fn into_list(self) -> Vec<Arg> {
        self.into_iter()
            .map(|(name, value)| Arg { name, value })
            .collect()
    }
}

impl ExtraArgs for ExtraArgsList {
    fn into_list(self) -> Vec<Arg> {
        self
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRegistration {
    pub name: Option<String>,
    pub cri_socket: Opaque,
    pub taints: Opaque,
    pub kubelet_extra_args: Opaque,
    pub ignore_preflight_errors: Opaque,
    pub image_pull_policy: Opaque,
    pub image_pull_serial: Opaque,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiEndpoint {
    pub advertise_address: Option<Ip>,
    pub bind_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    pub control_plane_component_health_check: Option<GoDuration>,
    pub kubelet_health_check: Option<GoDuration>,
    pub kubernetes_api_call: Option<GoDuration>,
    #[serde(rename = "etcdAPICall")]
    pub etcd_api_call: Option<GoDuration>,
    pub tls_bootstrap: Option<GoDuration>,
    pub discovery: Option<GoDuration>,
    pub upgrade_manifests: Option<GoDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitConfiguration {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub node_registration: NodeRegistration,
    #[serde(rename = "localAPIEndpoint", default)]
    pub local_api_endpoint: ApiEndpoint,
    pub bootstrap_tokens: Opaque,
    pub certificate_key: Opaque,
    pub skip_phases: Opaque,
    pub patches: Opaque,
    pub dry_run: Opaque,
    pub timeouts: Option<Timeouts>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinControlPlane {
    #[serde(rename = "localAPIEndpoint", default)]
    pub local_api_endpoint: ApiEndpoint,
    pub certificate_key: Opaque,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinConfiguration {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub node_registration: NodeRegistration,
    pub ca_cert_path: Opaque,
    /// Accepted and ignored: discovery is kubeadm's business, not ours.
    pub discovery: Opaque,
    pub control_plane: Option<JoinControlPlane>,
    pub skip_phases: Opaque,
    pub patches: Opaque,
    pub dry_run: Opaque,
    pub timeouts: Option<Timeouts>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound = "A: ExtraArgs")]
pub struct LocalEtcd<A> {
    pub image_repository: Option<String>,
    pub image_tag: Option<String>,
    pub data_dir: Option<String>,
    #[serde(default)]
    pub extra_args: A,
    #[serde(default)]
    pub extra_envs: Vec<EnvVar>,
    #[serde(rename = "serverCertSANs", default)]
    pub server_cert_sans: Vec<String>,
    #[serde(rename = "peerCertSANs", default)]
    pub peer_cert_sans: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalEtcd {
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub ca_file: String,
    #[serde(default)]
    pub cert_file: String,
    #[serde(default)]
    pub key_file: String,
    pub http_endpoints: Opaque,
}

#[derive(Debug, Deserialize)]
#[serde(bound = "A: ExtraArgs")]
pub struct Etcd<A> {
    pub local: Option<LocalEtcd<A>>,
    pub external: Option<ExternalEtcd>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound = "A: ExtraArgs")]
pub struct ClusterConfiguration<A> {
    pub api_version: String,
    pub kind: String,
    pub etcd: Option<Etcd<A>>,
    pub networking: Opaque,
    pub kubernetes_version: Option<String>,
    pub control_plane_endpoint: Opaque,
    pub api_server: Opaque,
    pub controller_manager: Opaque,
    pub scheduler: Opaque,
    pub dns: Opaque,
    pub proxy: Opaque,
    pub certificates_dir: Option<String>,
    pub image_repository: Option<String>,
    #[serde(rename = "ciKubernetesVersion")]
    pub ci_kubernetes_version: Opaque,
    #[serde(default)]
    pub feature_gates: BTreeMap<String, bool>,
    pub cluster_name: Option<String>,
    /// v1beta4 only; in a v1beta3 document it is reported as unknown by the loader.
    pub encryption_algorithm: Option<String>,
    pub certificate_validity_period: Option<GoDuration>,
    pub ca_certificate_validity_period: Option<GoDuration>,
    pub upgrade: Opaque,
    pub use_hyperkube_image: Opaque,
}
