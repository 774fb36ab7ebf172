use std::path::PathBuf;

/// What went wrong making or checking certificates. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{cert} needs the node name: set nodeRegistration.name in the configuration or pass --node-name")]
    MissingNodeName { cert: &'static str },

    #[error("{cert} needs the advertise address: set localAPIEndpoint.advertiseAddress in the configuration or pass --advertise-address")]
    MissingAdvertiseAddress { cert: &'static str },

    #[error("failed to read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: not a valid PEM certificate: {reason}; replace or remove the file", path.display())]
    BadCertificate { path: PathBuf, reason: String },

    #[error("{}: not a usable private key: {reason}; replace or remove the file", path.display())]
    BadKey { path: PathBuf, reason: String },

    #[error("{}: the private key does not belong to the certificate {}; restore the matching pair or remove both files", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },

    #[error("{}: {present} exists but {} does not; kubeadm-etcd never overwrites a file it did not make: if an earlier run was interrupted, remove {present} and run again", missing.display(), missing.display())]
    HalfPair { present: String, missing: PathBuf },

    #[error("{}: not a certificate authority (basic constraints CA:FALSE or missing); the etcd CA must be a CA certificate", path.display())]
    NotCa { path: PathBuf },

    #[error("{}: the etcd certificate authority is missing; create it first with `kubeadm-etcd phase certs etcd-ca` (or copy ca.crt and ca.key from the first control-plane node)", path.display())]
    CaMissing { path: PathBuf },

    #[error("{}: certificate is not signed by the etcd CA {}: {reason}; remove it to have it regenerated, or restore the CA that signed it", path.display(), ca.display())]
    NotSignedByCa {
        path: PathBuf,
        ca: PathBuf,
        reason: String,
    },

    #[error("{}: certificate is not valid for {missing}; it must cover DNS names [{}] and IPs [{}]; remove it to have it regenerated", path.display(), required_dns.join(" "), required_ips.join(" "))]
    MissingSans {
        path: PathBuf,
        missing: String,
        required_dns: Vec<String>,
        required_ips: Vec<String>,
    },

    #[error("{}: certificate lacks the extended key usage {usage}; remove it to have it regenerated", path.display())]
    MissingUsage { path: PathBuf, usage: &'static str },

    #[error("{}: missing, and the etcd CA is external (ca.crt without ca.key), so it cannot be generated here; provide {} and {} signed by your CA", cert.display(), cert.display(), key.display())]
    ExternalCaLeafMissing { cert: PathBuf, key: PathBuf },

    #[error("{}: exists but the etcd CA does not, so it cannot have been signed by the CA about to be generated; restore {} and {}, or remove this certificate", cert.display(), ca_cert.display(), ca_key.display())]
    LeafWithoutCa {
        cert: PathBuf,
        ca_cert: PathBuf,
        ca_key: PathBuf,
    },

    #[error("failed to generate {what}: {reason}")]
    Generate { what: String, reason: String },

    #[error("{}: cannot be renewed here: the etcd CA is externally managed ({} exists, {} does not); sign a new certificate for the same names with your CA, or put the CA key at {}", cert.display(), ca_cert.display(), ca_key.display(), ca_key.display())]
    ExternalCaCannotRenew {
        cert: PathBuf,
        ca_cert: PathBuf,
        ca_key: PathBuf,
    },

    #[error("{}: missing, so there is nothing to renew; create it with `kubeadm-etcd phase certs {phase}`", cert.display())]
    RenewMissing { cert: PathBuf, phase: &'static str },

    #[error("etcd-ca: certificate authorities are not renewed (kubeadm does not renew them either): a new CA means new certificates for every member and client; renew one of etcd-server, etcd-peer, etcd-healthcheck-client, apiserver-etcd-client, or all")]
    CaNotRenewable,

    #[error("failed to back up {} before renewing it", path.display())]
    Backup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: no host folders (<host>/kubeadmcfg.yaml) in it; pass the directory `kubeadm-etcd phase etcd external-bundle --output-dir` wrote", dir.display())]
    NotABundle { dir: PathBuf },
}
