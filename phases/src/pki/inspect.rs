//! Reading a certificate back into the facts a profile promises, for reuse checks,
//! status output and snapshot tests.

use std::net::IpAddr;

use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::public_key::PublicKey;

use crate::config::GoDuration;

/// What a certificate says, in a stable, serializable form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateDescription {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    /// NotAfter minus NotBefore, in Go's syntax.
    pub lifetime: String,
    pub is_ca: bool,
    pub key_usage: Vec<String>,
    pub extended_key_usage: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub public_key: String,
    pub signature_algorithm: String,
    pub subject_key_identifier: bool,
    pub authority_key_identifier: bool,
    #[serde(skip)]
    pub server_auth: bool,
    #[serde(skip)]
    pub client_auth: bool,
}

/// Describes the first certificate of a PEM file.
pub fn describe_certificate(pem: &[u8]) -> Result<CertificateDescription, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| e.to_string())?;
    let cert = block.parse_x509().map_err(|e| e.to_string())?;
    Ok(describe_parsed(&cert))
}

pub(crate) fn describe_parsed(cert: &X509Certificate<'_>) -> CertificateDescription {
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => dns_names.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(octets) = <[u8; 4]>::try_from(*bytes) {
                        ip_addresses.push(IpAddr::from(octets));
                    } else if let Ok(octets) = <[u8; 16]>::try_from(*bytes) {
                        ip_addresses.push(IpAddr::from(octets));
                    }
                }
                _ => {}
            }
        }
    }
    let mut key_usage = Vec::new();
    if let Ok(Some(ku)) = cert.key_usage() {
        let ku = ku.value;
        for (set, name) in [
            (ku.digital_signature(), "Digital Signature"),
            (ku.key_encipherment(), "Key Encipherment"),
            (ku.key_cert_sign(), "Certificate Sign"),
            (ku.crl_sign(), "CRL Sign"),
        ] {
            if set {
                key_usage.push(name.to_string());
            }
        }
    }
    let (mut extended_key_usage, mut server_auth, mut client_auth) = (Vec::new(), false, false);
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        server_auth = eku.value.server_auth;
        client_auth = eku.value.client_auth;
        if server_auth {
            extended_key_usage.push("TLS Web Server Authentication".to_string());
        }
        if client_auth {
            extended_key_usage.push("TLS Web Client Authentication".to_string());
        }
    }
    let public_key = match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA-{}", rsa.key_size()),
        Ok(PublicKey::EC(ec)) => format!("ECDSA-P{}", ec.key_size()),
        _ => "other".to_string(),
    };
    let signature_algorithm = match cert.signature_algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption".to_string(),
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256".to_string(),
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384".to_string(),
        other => other.to_string(),
    };
    let validity = cert.validity();
    let lifetime = (validity.not_after.timestamp() - validity.not_before.timestamp()).max(0) as u64;
    let has_extension = |oid: &x509_parser::der_parser::oid::Oid<'_>| {
        cert.extensions().iter().any(|e| &e.oid == oid)
    };
    CertificateDescription {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: validity.not_before.to_string(),
        not_after: validity.not_after.to_string(),
        lifetime: GoDuration(std::time::Duration::from_secs(lifetime)).to_string(),
        is_ca: cert.is_ca(),
        key_usage,
        extended_key_usage,
        dns_names,
        ip_addresses,
        public_key,
        signature_algorithm,
        subject_key_identifier: has_extension(
            &x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
        ),
        authority_key_identifier: has_extension(
            &x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
        ),
        server_auth,
        client_auth,
    }
}

/// Why a certificate cannot be used right now, by its validity period: the one check
/// both the certificate phase (a warning about an existing file) and the etcd client
/// (a refusal before the handshake) make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidityProblem {
    Expired { not_after: String },
    NotYetValid { not_before: String },
}

impl std::fmt::Display for ValidityProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Expired { not_after } => write!(f, "expired on {not_after}"),
            Self::NotYetValid { not_before } => {
                write!(
                    f,
                    "is not valid before {not_before}; check this machine's clock"
                )
            }
        }
    }
}

/// [`ValidityProblem`] of `cert` at `now`, if any.
pub fn validity_problem(
    cert: &x509_parser::certificate::X509Certificate<'_>,
    now: time::OffsetDateTime,
) -> Option<ValidityProblem> {
    let validity = cert.validity();
    if validity.not_after.to_datetime() < now {
        Some(ValidityProblem::Expired {
            not_after: validity.not_after.to_string(),
        })
    } else if validity.not_before.to_datetime() > now {
        Some(ValidityProblem::NotYetValid {
            not_before: validity.not_before.to_string(),
        })
    } else {
        None
    }
}
