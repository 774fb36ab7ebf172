//! Where the cluster is: the client URLs to start from.
//!
//! In kubeadm's order: explicit endpoints, else the ClusterConfiguration's
//! `etcd.external.endpoints`, else the etcd static Pods' advertise-client-urls annotation
//! found through the API server. These are only the starting point: the client then
//! switches to the voters' client URLs from the member list ([`super::EtcdClient::sync_endpoints`]).

use std::path::Path;

use super::{MembershipError, Result};
use crate::config::{Etcd, KubeadmConfig};

/// Where the endpoints came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointSource {
    /// `--endpoints`
    Flag,
    /// `etcd.external.endpoints`
    ExternalEtcd,
    /// The etcd Pods' `kubeadm.kubernetes.io/etcd.advertise-client-urls` annotation.
    Kubeconfig,
}

impl std::fmt::Display for EndpointSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EndpointSource::Flag => "--endpoints",
            EndpointSource::ExternalEtcd => "etcd.external.endpoints",
            EndpointSource::Kubeconfig => "the etcd Pods' advertise-client-urls annotation",
        })
    }
}

/// The endpoints that need no network call to find: `--endpoints`, else the external etcd
/// endpoints of the configuration.
pub fn static_endpoints(
    flag: &[String],
    cfg: &KubeadmConfig,
) -> Option<(Vec<String>, EndpointSource)> {
    if !flag.is_empty() {
        return Some((flag.to_vec(), EndpointSource::Flag));
    }
    match &cfg.cluster.etcd {
        Etcd::External(external) if !external.endpoints.is_empty() => {
            Some((external.endpoints.clone(), EndpointSource::ExternalEtcd))
        }
        _ => None,
    }
}

/// kubeadm's discovery: the client URLs of the etcd Pods in kube-system, through the
/// API server of the kubeconfig at `kubeconfig` (or the one found the usual way).
pub async fn from_kubeconfig(kubeconfig: Option<&Path>) -> Result<Vec<String>> {
    let to_err = |e: crate::kube::KubeClientError| MembershipError::Discovery {
        message: error_chain(&e),
    };
    let client = crate::kube::client_from_kubeconfig(kubeconfig)
        .await
        .map_err(to_err)?;
    crate::kube::etcd_client_urls_from_pods(&client)
        .await
        .map_err(to_err)
}

/// All three, in order. `use_kubeconfig`: whether discovery through the API server may be
/// tried (kubeadm only does it when it has a client).
pub async fn resolve(
    flag: &[String],
    cfg: &KubeadmConfig,
    use_kubeconfig: bool,
    kubeconfig: Option<&Path>,
) -> Result<(Vec<String>, EndpointSource)> {
    if let Some(found) = static_endpoints(flag, cfg) {
        return Ok(found);
    }
    if use_kubeconfig {
        return Ok((
            from_kubeconfig(kubeconfig).await?,
            EndpointSource::Kubeconfig,
        ));
    }
    Err(MembershipError::NoEndpoints)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExternalEtcd;

    #[test]
    fn flag_wins_over_external_endpoints() {
        let mut cfg = KubeadmConfig::default();
        assert_eq!(static_endpoints(&[], &cfg), None);
        cfg.cluster.etcd = Etcd::External(ExternalEtcd {
            endpoints: vec!["https://10.0.0.1:2379".into()],
            ca_file: String::new(),
            cert_file: String::new(),
            key_file: String::new(),
        });
        assert_eq!(
            static_endpoints(&[], &cfg),
            Some((
                vec!["https://10.0.0.1:2379".to_string()],
                EndpointSource::ExternalEtcd
            ))
        );
        assert_eq!(
            static_endpoints(&["https://10.0.0.2:2379".into()], &cfg),
            Some((
                vec!["https://10.0.0.2:2379".to_string()],
                EndpointSource::Flag
            ))
        );
    }
}
