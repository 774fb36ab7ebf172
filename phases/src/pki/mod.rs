//! The etcd certificates, made exactly as kubeadm makes them.
//!
//! [`ensure_certificates`] is idempotent: a certificate that loads, is signed by the etcd
//! CA and covers every required name is reused; anything else that is already on disk is
//! an error naming the file and what is wrong. Nothing of the user's is ever overwritten.
//! Keys that need making are generated concurrently (RSA generation dominates the run
//! time) and every file is written atomically, keys with mode 0600.

mod error;
pub mod expiry;
mod inspect;
mod keypem;
mod profile;
pub mod renew;
pub mod served;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

pub use error::PkiError;
pub use inspect::{
    describe_certificate, validity_problem, CertificateDescription, ValidityProblem,
};
pub use profile::{CertId, Profile, Usage};

use crate::config::{EncryptionAlgorithm, KubeadmConfig};
use crate::fsutil;

/// kubeadm's `CertificateBackdate`: NotBefore lies this far in the past so that a member
/// whose clock is slightly behind still accepts a certificate made a moment ago.
pub const CERTIFICATE_BACKDATE: Duration = Duration::from_secs(5 * 60);
pub const KEY_FILE_MODE: u32 = 0o600;
pub const CERT_FILE_MODE: u32 = 0o644;
/// kubeadm's certificate directories: `certutil.WriteCert` and `keyutil.WriteKey` create
/// them with `os.MkdirAll(dir, 0755)`; the keys inside are 0600.
pub const DIR_MODE: u32 = 0o755;

/// Everything the certificate profiles depend on.
#[derive(Debug, Clone, PartialEq)]
pub struct PkiConfig {
    pub cert_dir: PathBuf,
    /// Where the etcd CA (certificate and key) is read from when it does not live in
    /// `cert_dir`: `phase etcd external-bundle` signs every host's certificates with one
    /// CA whose key must never be written into a host's folder, not even for a moment.
    pub ca_dir: Option<PathBuf>,
    pub node_name: Option<String>,
    pub advertise_address: Option<IpAddr>,
    pub server_cert_sans: Vec<String>,
    pub peer_cert_sans: Vec<String>,
    pub algorithm: EncryptionAlgorithm,
    pub validity: Duration,
    pub ca_validity: Duration,
}

impl PkiConfig {
    /// The PKI settings of a kubeadm configuration, with the certificate directory given
    /// separately because a flag may override it.
    pub fn from_kubeadm(cfg: &KubeadmConfig, cert_dir: PathBuf) -> Self {
        let (server_cert_sans, peer_cert_sans) = match &cfg.cluster.etcd {
            crate::config::Etcd::Local(local) => {
                (local.server_cert_sans.clone(), local.peer_cert_sans.clone())
            }
            crate::config::Etcd::External(_) => (Vec::new(), Vec::new()),
        };
        Self {
            cert_dir,
            ca_dir: None,
            node_name: cfg.node.name.clone(),
            advertise_address: cfg.node.advertise_address,
            server_cert_sans,
            peer_cert_sans,
            algorithm: key_algorithm(cfg),
            validity: cfg.cluster.certificate_validity_period.0,
            ca_validity: cfg.cluster.ca_certificate_validity_period.0,
        }
    }
}

/// kubeadm's `ClusterConfiguration.EncryptionAlgorithmType()`: a `PublicKeysECDSA` gate
/// that is set wins over `encryptionAlgorithm`, either way (true: ECDSA-P256, false:
/// RSA-2048); unset, `encryptionAlgorithm` decides. The loader has already refused the
/// gate for a kubeadm release that no longer has it (1.36 and newer).
pub fn key_algorithm(cfg: &KubeadmConfig) -> EncryptionAlgorithm {
    match cfg.cluster.feature_gates.get("PublicKeysECDSA") {
        Some(true) => EncryptionAlgorithm::EcdsaP256,
        Some(false) => EncryptionAlgorithm::Rsa2048,
        None => cfg.cluster.encryption_algorithm,
    }
}

/// What [`ensure_certificates`] did or, in a dry run, would do, in kubeadm's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `[certs] Generating "etcd/server" certificate and key`
    Generating { base_name: &'static str },
    /// `[certs] etcd/server serving cert is signed for DNS names [...] and IPs [...]`
    SignedFor {
        base_name: &'static str,
        dns_names: Vec<String>,
        ip_addresses: Vec<IpAddr>,
    },
    /// `[certs] Using existing etcd/ca certificate authority`
    UsingExistingCa {
        base_name: &'static str,
        keyless: bool,
    },
    /// `[certs] Using existing etcd/server certificate and key on disk`
    UsingExisting { base_name: &'static str },
    /// A file a dry run would have written.
    WouldWrite { path: PathBuf, mode: u32 },
    /// Something worth a look that does not stop the run (an expired certificate).
    Warning(String),
}

/// The outcome of [`ensure_certificates`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub events: Vec<Event>,
    /// Files written, in order.
    pub written: Vec<PathBuf>,
}

/// The etcd CA as loaded from disk: its certificate and, unless it is external, its key.
struct Ca {
    cert_pem: String,
    cert_der: Vec<u8>,
    key: Option<KeyPair>,
}

enum CaState {
    Missing,
    Existing(Ca),
}

/// Makes whatever is missing of `selected` (in [`CertId::ALL`] order) and checks what is
/// already there. With `dry_run` nothing is written and the report lists what would be.
pub fn ensure_certificates(
    cfg: &PkiConfig,
    selected: &[CertId],
    dry_run: bool,
) -> Result<Report, PkiError> {
    let mut selected: Vec<CertId> = selected.to_vec();
    selected.sort();
    selected.dedup();
    let mut report = Report::default();

    let ca_home = cfg.ca_dir.as_deref().unwrap_or(&cfg.cert_dir);
    let ca_cert_path = CertId::EtcdCa.cert_path(ca_home);
    let ca_key_path = CertId::EtcdCa.key_path(ca_home);
    let ca_state = load_ca(&ca_cert_path, &ca_key_path)?;
    if let CaState::Missing = ca_state {
        if !selected.contains(&CertId::EtcdCa) {
            return Err(PkiError::CaMissing { path: ca_cert_path });
        }
    }

    // Decide, for every selected certificate, whether it is reused or made, before
    // generating anything: a problem with the fifth certificate must not leave the
    // first four written.
    let to_generate = plan(cfg, &selected, &ca_state, &mut report)?;
    if to_generate.is_empty() {
        return Ok(report);
    }
    let files = sign(cfg, to_generate, ca_state, &mut report)?;
    write_files(files, dry_run, &mut report)?;
    Ok(report)
}

/// A file to write: its path, contents and mode.
type PkiFile = (PathBuf, Vec<u8>, u32);

/// The profiles of the selected certificates that must be made; the others are checked
/// (a leaf against its CA and profile) and reported as reused.
fn plan(
    cfg: &PkiConfig,
    selected: &[CertId],
    ca_state: &CaState,
    report: &mut Report,
) -> Result<Vec<Profile>, PkiError> {
    let ca_home = cfg.ca_dir.as_deref().unwrap_or(&cfg.cert_dir);
    let ca_cert_path = CertId::EtcdCa.cert_path(ca_home);
    let ca_key_path = CertId::EtcdCa.key_path(ca_home);
    let mut to_generate: Vec<Profile> = Vec::new();
    for &id in selected {
        let profile = Profile::for_cert(id, cfg)?;
        if id.is_ca() {
            match ca_state {
                CaState::Existing(ca) => {
                    warn_if_expired(&ca_cert_path, &ca.cert_der, report);
                    report.events.push(Event::UsingExistingCa {
                        base_name: id.base_name(),
                        keyless: ca.key.is_none(),
                    });
                }
                CaState::Missing => to_generate.push(profile),
            }
            continue;
        }
        let cert_path = id.cert_path(&cfg.cert_dir);
        let key_path = id.key_path(&cfg.cert_dir);
        let cert = read_optional(&cert_path)?;
        let key = read_optional(&key_path)?;
        match (cert, key, ca_state) {
            (None, None, CaState::Existing(Ca { key: None, .. })) => {
                return Err(PkiError::ExternalCaLeafMissing {
                    cert: cert_path,
                    key: key_path,
                });
            }
            (None, None, _) => to_generate.push(profile),
            (Some(_), None, _) => return Err(half_pair(&cert_path, key_path)),
            (None, Some(_), _) => return Err(half_pair(&key_path, cert_path)),
            (Some(_), Some(_), CaState::Missing) => {
                return Err(PkiError::LeafWithoutCa {
                    cert: cert_path,
                    ca_cert: ca_cert_path,
                    ca_key: ca_key_path,
                })
            }
            (Some(cert), Some(key), CaState::Existing(ca)) => {
                verify_leaf(
                    &profile,
                    &cert_path,
                    &cert,
                    &key_path,
                    &key,
                    &ca_cert_path,
                    ca,
                )?;
                warn_if_expired(&cert_path, &pem_to_der(&cert_path, &cert)?, report);
                report.events.push(Event::UsingExisting {
                    base_name: id.base_name(),
                });
            }
        }
    }

    Ok(to_generate)
}

/// Generates the keys and signs the certificates of `to_generate` (the CA first, when it
/// is among them), in memory.
fn sign(
    cfg: &PkiConfig,
    to_generate: Vec<Profile>,
    ca_state: CaState,
    report: &mut Report,
) -> Result<Vec<PkiFile>, PkiError> {
    // The CA, if it is made now, must be signed before the leaves; the keys do not
    // depend on each other, so they are all generated at once.
    let keys = generate_keys(cfg.algorithm, to_generate.len())?;
    let mut files: Vec<PkiFile> = Vec::new();
    let mut issuer_ca: Option<Ca> = match ca_state {
        CaState::Existing(ca) => Some(ca),
        CaState::Missing => None,
    };
    for (profile, key) in to_generate.into_iter().zip(keys) {
        let id = profile.id;
        report.events.push(Event::Generating {
            base_name: id.base_name(),
        });
        let params = certificate_params(&profile, time::OffsetDateTime::now_utc())?;
        let cert_pem = if id.is_ca() {
            let cert = params
                .self_signed(&key)
                .map_err(|e| generate_error(id, e))?;
            let pem = cert.pem();
            issuer_ca = Some(Ca {
                cert_der: cert.der().to_vec(),
                cert_pem: pem.clone(),
                key: None,
            });
            pem
        } else {
            let ca = issuer_ca
                .as_ref()
                .expect("the CA exists or was generated first");
            let ca_key = ca
                .key
                .as_ref()
                .expect("a keyless CA never reaches generation");
            let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
                .map_err(|e| generate_error(id, e))?;
            let cert = params
                .signed_by(&key, &issuer)
                .map_err(|e| generate_error(id, e))?;
            if !profile.dns_names.is_empty() || !profile.ip_addresses.is_empty() {
                report.events.push(Event::SignedFor {
                    base_name: id.base_name(),
                    dns_names: profile.dns_names.clone(),
                    ip_addresses: profile.ip_addresses.clone(),
                });
            }
            cert.pem()
        };
        let key_pem =
            keypem::kubeadm_key_pem(&key.serialize_der()).map_err(|reason| PkiError::Generate {
                what: format!("the {} key", id.base_name()),
                reason,
            })?;
        if id.is_ca() {
            if let Some(ca) = issuer_ca.as_mut() {
                ca.key = Some(key);
            }
        }
        files.push((
            id.key_path(&cfg.cert_dir),
            key_pem.into_bytes(),
            KEY_FILE_MODE,
        ));
        files.push((
            id.cert_path(&cfg.cert_dir),
            cert_pem.into_bytes(),
            CERT_FILE_MODE,
        ));
    }

    Ok(files)
}

/// Writes each file atomically with its mode (or reports what a dry run would write).
fn write_files(files: Vec<PkiFile>, dry_run: bool, report: &mut Report) -> Result<(), PkiError> {
    for (path, contents, mode) in files {
        if dry_run {
            report.events.push(Event::WouldWrite { path, mode });
            continue;
        }
        let dir = path.parent().expect("certificate paths have a parent");
        fsutil::create_dir_all_with_mode(dir, DIR_MODE).map_err(|source| PkiError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        fsutil::write_atomic(&path, &contents, mode).map_err(|source| PkiError::Write {
            path: path.clone(),
            source,
        })?;
        report.written.push(path);
    }
    Ok(())
}

fn generate_error(id: CertId, e: rcgen::Error) -> PkiError {
    PkiError::Generate {
        what: format!("the {} certificate", id.base_name()),
        reason: e.to_string(),
    }
}

fn half_pair(present: &Path, missing: PathBuf) -> PkiError {
    PkiError::HalfPair {
        present: present.display().to_string(),
        missing,
    }
}

/// Generates `count` keys of `algorithm` on as many threads as there are cores.
fn generate_keys(algorithm: EncryptionAlgorithm, count: usize) -> Result<Vec<KeyPair>, PkiError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(count)
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut slots: Vec<Option<Result<KeyPair, PkiError>>> = (0..count).map(|_| None).collect();
    let results = std::sync::Mutex::new(&mut slots);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let key = generate_key(algorithm);
                results.lock().expect("no panics while holding the lock")[i] = Some(key);
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| slot.expect("every slot was filled"))
        .collect()
}

/// Generates one private key of the configured algorithm.
pub fn generate_key(algorithm: EncryptionAlgorithm) -> Result<KeyPair, PkiError> {
    use rcgen::{RsaKeySize, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256};
    let result = match algorithm {
        EncryptionAlgorithm::Rsa2048 => {
            KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)
        }
        EncryptionAlgorithm::Rsa3072 => {
            KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072)
        }
        EncryptionAlgorithm::Rsa4096 => {
            KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096)
        }
        EncryptionAlgorithm::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        EncryptionAlgorithm::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
    };
    result.map_err(|e| PkiError::Generate {
        what: format!("a {algorithm} key"),
        reason: e.to_string(),
    })
}

/// The X.509 template of a profile, as kubeadm's pkiutil fills it, valid from `now`
/// (backdated by [`CERTIFICATE_BACKDATE`]) for the profile's validity.
fn certificate_params(
    profile: &Profile,
    now: time::OffsetDateTime,
) -> Result<CertificateParams, PkiError> {
    use rand::Rng;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, profile.common_name.as_str());
    params.distinguished_name = dn;
    // kubeadm: a random serial in [1, MaxInt64).
    let serial: u64 = rand::rng().random_range(1..i64::MAX as u64);
    params.serial_number = Some(serial.into());
    let now = now
        .replace_nanosecond(0)
        .expect("zero is a valid nanosecond");
    params.not_before = now - CERTIFICATE_BACKDATE;
    params.not_after = now + profile.validity;
    let ia5 = |name: &str| {
        name.to_string().try_into().map_err(|_| PkiError::Generate {
            what: format!("the {} certificate", profile.id.base_name()),
            reason: format!("{name:?} is not a valid DNS name"),
        })
    };
    let mut sans = Vec::new();
    for dns in &profile.dns_names {
        sans.push(SanType::DnsName(ia5(dns)?));
    }
    sans.extend(profile.ip_addresses.iter().copied().map(SanType::IpAddress));
    params.subject_alt_names = sans;
    if profile.is_ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
    } else {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = profile
            .usages
            .iter()
            .map(|u| match u {
                Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
                Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            })
            .collect();
    }
    Ok(params)
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, PkiError> {
    fsutil::read_if_exists(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_to_der(path: &Path, pem: &[u8]) -> Result<Vec<u8>, PkiError> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| PkiError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if block.label != "CERTIFICATE" {
        return Err(PkiError::BadCertificate {
            path: path.to_path_buf(),
            reason: format!("the PEM block is {:?}, not CERTIFICATE", block.label),
        });
    }
    Ok(block.contents)
}

fn parse_cert<'a>(
    path: &Path,
    der: &'a [u8],
) -> Result<x509_parser::certificate::X509Certificate<'a>, PkiError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

fn load_key(path: &Path, pem: &[u8]) -> Result<KeyPair, PkiError> {
    let bad = |reason: String| PkiError::BadKey {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(pem).map_err(|_| bad("not PEM text".into()))?;
    KeyPair::from_pem(text).map_err(|e| bad(e.to_string()))
}

fn check_key_matches(
    cert_path: &Path,
    cert_spki: &[u8],
    key_path: &Path,
    key: &KeyPair,
) -> Result<(), PkiError> {
    use rcgen::PublicKeyData;
    if key.subject_public_key_info() != cert_spki {
        return Err(PkiError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        });
    }
    Ok(())
}

fn load_ca(cert_path: &Path, key_path: &Path) -> Result<CaState, PkiError> {
    let cert = read_optional(cert_path)?;
    let key = read_optional(key_path)?;
    let cert = match (cert, &key) {
        (None, None) => return Ok(CaState::Missing),
        (None, Some(_)) => return Err(half_pair(key_path, cert_path.to_path_buf())),
        (Some(cert), _) => cert,
    };
    let cert_der = pem_to_der(cert_path, &cert)?;
    let parsed = parse_cert(cert_path, &cert_der)?;
    if !parsed.is_ca() {
        return Err(PkiError::NotCa {
            path: cert_path.to_path_buf(),
        });
    }
    let key = match key {
        Some(pem) => {
            let key = load_key(key_path, &pem)?;
            check_key_matches(cert_path, parsed.public_key().raw, key_path, &key)?;
            Some(key)
        }
        None => None,
    };
    let cert_pem = String::from_utf8(cert).map_err(|_| PkiError::BadCertificate {
        path: cert_path.to_path_buf(),
        reason: "not PEM text".into(),
    })?;
    Ok(CaState::Existing(Ca {
        cert_pem,
        cert_der,
        key,
    }))
}

/// kubeadm's checks on an existing leaf: the key loads and matches, the CA signed it,
/// it covers every required name; we also check the usages etcd relies on.
fn verify_leaf(
    profile: &Profile,
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
    ca_path: &Path,
    ca: &Ca,
) -> Result<(), PkiError> {
    let der = pem_to_der(cert_path, cert_pem)?;
    let cert = parse_cert(cert_path, &der)?;
    let key = load_key(key_path, key_pem)?;
    check_key_matches(cert_path, cert.public_key().raw, key_path, &key)?;
    let ca_cert = parse_cert(ca_path, &ca.cert_der)?;
    let not_signed = |reason: String| PkiError::NotSignedByCa {
        path: cert_path.to_path_buf(),
        ca: ca_path.to_path_buf(),
        reason,
    };
    if cert.issuer() != ca_cert.subject() {
        return Err(not_signed(format!(
            "issued by \"{}\", the CA is \"{}\"",
            cert.issuer(),
            ca_cert.subject()
        )));
    }
    cert.verify_signature(Some(ca_cert.public_key()))
        .map_err(|e| not_signed(format!("the signature does not verify ({e})")))?;

    let description = inspect::describe_parsed(&cert);
    let missing_dns = profile.dns_names.iter().find(|want| {
        !description
            .dns_names
            .iter()
            .any(|have| dns_matches(have, want))
    });
    let missing_ip = profile
        .ip_addresses
        .iter()
        .find(|want| !description.ip_addresses.contains(want));
    if let Some(missing) = missing_dns
        .map(|d| format!("DNS name {d:?}"))
        .or_else(|| missing_ip.map(|ip| format!("IP address {ip}")))
    {
        return Err(PkiError::MissingSans {
            path: cert_path.to_path_buf(),
            missing,
            required_dns: profile.dns_names.clone(),
            required_ips: profile
                .ip_addresses
                .iter()
                .map(|ip| ip.to_string())
                .collect(),
        });
    }
    for usage in &profile.usages {
        let (present, name) = match usage {
            Usage::ServerAuth => (description.server_auth, "serverAuth"),
            Usage::ClientAuth => (description.client_auth, "clientAuth"),
        };
        if !present {
            return Err(PkiError::MissingUsage {
                path: cert_path.to_path_buf(),
                usage: name,
            });
        }
    }
    Ok(())
}

/// Go's `VerifyHostname` semantics for DNS names: exact, case-insensitive, or a
/// left-most `*` label standing for exactly one label.
fn dns_matches(pattern: &str, name: &str) -> bool {
    if pattern.eq_ignore_ascii_case(name) {
        return true;
    }
    match (pattern.strip_prefix("*."), name.split_once('.')) {
        (Some(suffix), Some((_, rest))) => suffix.eq_ignore_ascii_case(rest),
        _ => false,
    }
}

fn warn_if_expired(path: &Path, der: &[u8], report: &mut Report) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return;
    };
    let message = match inspect::validity_problem(&cert, time::OffsetDateTime::now_utc()) {
        None => return,
        Some(p @ ValidityProblem::Expired { .. }) => {
            format!("{} {p}; renew it, members will refuse it", path.display())
        }
        Some(p @ ValidityProblem::NotYetValid { .. }) => format!("{} {p}", path.display()),
    };
    report.events.push(Event::Warning(message));
}
