//! kubeadm's etcd certificate profiles (`cmd/kubeadm/app/phases/certs/certlist.go`), as data.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::{PkiConfig, PkiError};

/// The certificates this tool makes, in kubeadm's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum CertId {
    EtcdCa,
    EtcdServer,
    EtcdPeer,
    EtcdHealthcheckClient,
    ApiserverEtcdClient,
}

/// Extended key usages a profile asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Usage {
    ServerAuth,
    ClientAuth,
}

impl CertId {
    pub const ALL: [CertId; 5] = [
        CertId::EtcdCa,
        CertId::EtcdServer,
        CertId::EtcdPeer,
        CertId::EtcdHealthcheckClient,
        CertId::ApiserverEtcdClient,
    ];

    /// The phase name, as in `kubeadm init phase certs <name>`.
    pub fn phase_name(self) -> &'static str {
        match self {
            CertId::EtcdCa => "etcd-ca",
            CertId::EtcdServer => "etcd-server",
            CertId::EtcdPeer => "etcd-peer",
            CertId::EtcdHealthcheckClient => "etcd-healthcheck-client",
            CertId::ApiserverEtcdClient => "apiserver-etcd-client",
        }
    }

    pub fn from_phase_name(name: &str) -> Option<CertId> {
        CertId::ALL.into_iter().find(|c| c.phase_name() == name)
    }

    /// The file base name under the certificate directory, without extension.
    pub fn base_name(self) -> &'static str {
        match self {
            CertId::EtcdCa => "etcd/ca",
            CertId::EtcdServer => "etcd/server",
            CertId::EtcdPeer => "etcd/peer",
            CertId::EtcdHealthcheckClient => "etcd/healthcheck-client",
            CertId::ApiserverEtcdClient => "apiserver-etcd-client",
        }
    }

    /// kubeadm's one-line description (the phase help text).
    pub fn long_name(self) -> &'static str {
        match self {
            CertId::EtcdCa => "the self-signed CA to provision identities for etcd",
            CertId::EtcdServer => "the certificate for serving etcd",
            CertId::EtcdPeer => "the certificate for etcd nodes to communicate with each other",
            CertId::EtcdHealthcheckClient => {
                "the certificate for liveness probes to healthcheck etcd"
            }
            CertId::ApiserverEtcdClient => "the certificate the apiserver uses to access etcd",
        }
    }

    pub fn is_ca(self) -> bool {
        self == CertId::EtcdCa
    }

    pub fn cert_path(self, cert_dir: &Path) -> PathBuf {
        cert_dir.join(format!("{}.crt", self.base_name()))
    }

    pub fn key_path(self, cert_dir: &Path) -> PathBuf {
        cert_dir.join(format!("{}.key", self.base_name()))
    }
}

/// What a certificate must say: subject, usages, names, lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub id: CertId,
    pub common_name: String,
    pub is_ca: bool,
    pub usages: Vec<Usage>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    #[serde(serialize_with = "serialize_go_duration")]
    pub validity: Duration,
}

fn serialize_go_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&crate::config::GoDuration(*d))
}

impl Profile {
    /// Builds the profile of `id` for this node, as kubeadm's certlist does.
    pub fn for_cert(id: CertId, cfg: &PkiConfig) -> Result<Profile, PkiError> {
        let leaf = |common_name: String, usages: Vec<Usage>| Profile {
            id,
            common_name,
            is_ca: false,
            usages,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            validity: cfg.validity,
        };
        Ok(match id {
            CertId::EtcdCa => Profile {
                id,
                common_name: "etcd-ca".into(),
                is_ca: true,
                usages: Vec::new(),
                // Go's x509 template in kubeadm's NewSelfSignedCACert names the CA in its SANs.
                dns_names: vec!["etcd-ca".into()],
                ip_addresses: Vec::new(),
                validity: cfg.ca_validity,
            },
            CertId::EtcdServer | CertId::EtcdPeer => {
                let node_name = cfg.node_name.clone().ok_or(PkiError::MissingNodeName {
                    cert: id.base_name(),
                })?;
                let advertise = cfg
                    .advertise_address
                    .ok_or(PkiError::MissingAdvertiseAddress {
                        cert: id.base_name(),
                    })?;
                // etcd uses client certificates for server-to-server traffic too
                // (etcd-io/etcd#9785), hence ClientAuth on serving certificates.
                let mut profile = leaf(
                    node_name.clone(),
                    vec![Usage::ServerAuth, Usage::ClientAuth],
                );
                let extra = if id == CertId::EtcdServer {
                    &cfg.server_cert_sans
                } else {
                    &cfg.peer_cert_sans
                };
                let mut dns = vec![node_name, "localhost".to_string()];
                let mut ips = vec![
                    advertise,
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                ];
                for san in extra {
                    match san.parse::<IpAddr>() {
                        Ok(ip) => ips.push(ip),
                        Err(_) => dns.push(san.clone()),
                    }
                }
                // kubeadm's RemoveDuplicateAltNames sorts the DNS names; IPs keep their order.
                dns.sort();
                dns.dedup();
                profile.dns_names = dns;
                profile.ip_addresses = dedup(ips);
                profile
            }
            CertId::EtcdHealthcheckClient => leaf(
                "kube-etcd-healthcheck-client".into(),
                vec![Usage::ClientAuth],
            ),
            CertId::ApiserverEtcdClient => {
                leaf("kube-apiserver-etcd-client".into(), vec![Usage::ClientAuth])
            }
        })
    }
}

fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}
