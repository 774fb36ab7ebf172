//! `phase certs renew`: kubeadm's `kubeadm certs renew` for the etcd certificates.
//!
//! kubeadm's rules, read at kubernetes/kubernetes master (2026),
//! `cmd/kubeadm/app/phases/certs/renewal/manager.go` (`RenewUsingLocalCA`, `certToConfig`)
//! and `filerenewer.go` (`FileRenewer.Renew` = `pkiutil.NewCertAndKey`):
//! - the identity is read back from the certificate on disk, not from the configuration:
//!   CommonName, Organization, DNS and IP SANs and the extended key usages are carried
//!   over; nothing else is;
//! - a **new key** is generated, of the configuration's `encryptionAlgorithm`
//!   (`EncryptionAlgorithmType()`, a set `PublicKeysECDSA` gate winning, see
//!   [`super::key_algorithm`]); kubeadm reads the configuration from the cluster when
//!   given none, which this tool does not, so without one each key keeps its type;
//! - NotBefore is now minus `CertificateBackdate` and NotAfter now plus
//!   `certificateValidityPeriod` (kubeadm's renewal test, manager_test.go, asserts
//!   exactly these);
//! - a CA is never renewed, and a certificate whose CA key is absent (externally managed)
//!   is not either.
//!
//! Beyond kubeadm, which overwrites in place: the old pair is copied first into a new
//! directory of its own under the backup directory (`kubeadm-etcd-renew-<UTC time>`, with
//! `-1`, `-2`, ... when two runs fall in the same second), so that no earlier backup is
//! ever overwritten; then the new key and certificate are written atomically (key 0600).
//! A crash between the two leaves a key that does not match its certificate: renewing
//! again repairs it, since renewal reads only the certificate.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{DistinguishedName, DnType};
use time::OffsetDateTime;

use super::{
    certificate_params, generate_keys, keypem, load_ca, parse_cert, pem_to_der, read_optional,
    CaState, CertId, PkiError, Profile, Usage, CERT_FILE_MODE, DIR_MODE, KEY_FILE_MODE,
};
use crate::config::EncryptionAlgorithm;
use crate::fsutil;

/// Backups are private: they hold keys.
pub const BACKUP_DIR_MODE: u32 = 0o700;

/// What a renewal needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RenewOptions {
    pub cert_dir: PathBuf,
    /// Where the CA certificate and key are read from when not from `cert_dir` (an
    /// external bundle's `ca/`).
    pub ca_dir: Option<PathBuf>,
    /// The key type of the new keys: the configuration's (kubeadm's rule); `None` keeps
    /// each certificate's current key type, for a run without the configuration (kubeadm
    /// would have read it from the cluster's kubeadm-config).
    pub algorithm: Option<EncryptionAlgorithm>,
    /// `certificateValidityPeriod`.
    pub validity: Duration,
    /// The old pairs go into a new directory under this one.
    pub backup_root: PathBuf,
    pub now: OffsetDateTime,
}

/// One renewed certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    pub id: CertId,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: String,
    pub not_after: OffsetDateTime,
}

/// The outcome of [`renew`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenewReport {
    pub renewed: Vec<Renewed>,
    /// Certificates skipped because their file is absent (only with `skip_missing`).
    pub missing: Vec<(CertId, PathBuf)>,
    /// Where the old pairs were copied, when anything was renewed.
    pub backup_dir: Option<PathBuf>,
}

/// Renews `ids` (leaves only). With `skip_missing` an absent certificate is reported
/// and skipped (kubeadm's `renew all` prints `MISSING!` and goes on); without it, it is
/// an error. Everything is signed in memory before the first file is touched.
pub fn renew(
    opts: &RenewOptions,
    ids: &[CertId],
    skip_missing: bool,
) -> Result<RenewReport, PkiError> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids.dedup();
    if ids.contains(&CertId::EtcdCa) {
        return Err(PkiError::CaNotRenewable);
    }
    let ca_home = opts.ca_dir.as_deref().unwrap_or(&opts.cert_dir);
    let ca_cert_path = CertId::EtcdCa.cert_path(ca_home);
    let ca_key_path = CertId::EtcdCa.key_path(ca_home);

    let mut report = RenewReport::default();
    let mut present: Vec<(CertId, Profile, Subject, EncryptionAlgorithm)> = Vec::new();
    for &id in &ids {
        let cert_path = id.cert_path(&opts.cert_dir);
        let Some(pem) = read_optional(&cert_path)? else {
            if skip_missing {
                report.missing.push((id, cert_path));
                continue;
            }
            return Err(PkiError::RenewMissing {
                cert: cert_path,
                phase: id.phase_name(),
            });
        };
        let (profile, organization, current) = identity(id, &cert_path, &pem, opts.validity)?;
        present.push((id, profile, organization, opts.algorithm.unwrap_or(current)));
    }
    if present.is_empty() {
        return Ok(report);
    }

    let ca = match load_ca(&ca_cert_path, &ca_key_path)? {
        CaState::Missing => return Err(PkiError::CaMissing { path: ca_cert_path }),
        CaState::Existing(ca) => ca,
    };
    let Some(ca_key) = ca.key.as_ref() else {
        return Err(PkiError::ExternalCaCannotRenew {
            cert: present[0].0.cert_path(&opts.cert_dir),
            ca_cert: ca_cert_path,
            ca_key: ca_key_path,
        });
    };
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(|e| PkiError::Generate {
            what: "the etcd CA issuer".into(),
            reason: e.to_string(),
        })?;

    let mut signed = Vec::new();
    for (id, profile, organization, algorithm) in present {
        let key = generate_keys(algorithm, 1)?
            .pop()
            .expect("one key was asked for");
        let generate_error = |e: rcgen::Error| PkiError::Generate {
            what: format!("the renewed {} certificate", id.base_name()),
            reason: e.to_string(),
        };
        let mut params = certificate_params(&profile, opts.now)?;
        // Go's pkix.Name writes O before CN; keep the subject as kubeadm would write it.
        let mut dn = DistinguishedName::new();
        for (ty, value) in organization {
            dn.push(ty, value);
        }
        dn.push(DnType::CommonName, profile.common_name.as_str());
        params.distinguished_name = dn;
        let not_after = params.not_after;
        let cert = params.signed_by(&key, &issuer).map_err(generate_error)?;
        let serial = serial_hex(&id.cert_path(&opts.cert_dir), cert.der())?;
        let key_pem =
            keypem::kubeadm_key_pem(&key.serialize_der()).map_err(|reason| PkiError::Generate {
                what: format!("the renewed {} key", id.base_name()),
                reason,
            })?;
        signed.push((id, cert.pem(), key_pem, serial, not_after));
    }

    let backup_dir = backup(opts, signed.iter().map(|s| s.0))?;
    report.backup_dir = Some(backup_dir);
    for (id, cert_pem, key_pem, serial, not_after) in signed {
        let cert = id.cert_path(&opts.cert_dir);
        let key = id.key_path(&opts.cert_dir);
        write(&key, key_pem.as_bytes(), KEY_FILE_MODE)?;
        write(&cert, cert_pem.as_bytes(), CERT_FILE_MODE)?;
        report.renewed.push(Renewed {
            id,
            cert,
            key,
            serial,
            not_after,
        });
    }
    Ok(report)
}

/// The subject attributes carried over besides the CommonName (Organization).
type Subject = Vec<(DnType, String)>;

/// kubeadm's `certToConfig`: what is carried over from the certificate on disk; and the
/// type of its key.
fn identity(
    id: CertId,
    path: &Path,
    pem: &[u8],
    validity: Duration,
) -> Result<(Profile, Subject, EncryptionAlgorithm), PkiError> {
    let der = pem_to_der(path, pem)?;
    let cert = parse_cert(path, &der)?;
    let bad = |reason: String| PkiError::BadCertificate {
        path: path.to_path_buf(),
        reason,
    };
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .map(|cn| cn.as_str().map(str::to_string))
        .transpose()
        .map_err(|e| bad(format!("its CommonName is not a string: {e}")))?
        .unwrap_or_default();
    let mut organization = Vec::new();
    for o in cert.subject().iter_organization() {
        let o = o
            .as_str()
            .map_err(|e| bad(format!("its Organization is not a string: {e}")))?;
        organization.push((DnType::OrganizationName, o.to_string()));
    }
    let description = super::inspect::describe_parsed(&cert);
    let mut usages = Vec::new();
    if description.server_auth {
        usages.push(Usage::ServerAuth);
    }
    if description.client_auth {
        usages.push(Usage::ClientAuth);
    }
    let ip_addresses: Vec<IpAddr> = description.ip_addresses;
    // `describe_parsed` names keys as encryptionAlgorithm does (`RSA-2048`, `ECDSA-P256`);
    // a key type kubeadm cannot make gets kubeadm's default.
    let current = EncryptionAlgorithm::ALL
        .into_iter()
        .find(|a| a.as_str() == description.public_key)
        .unwrap_or_default();
    Ok((
        Profile {
            id,
            common_name,
            is_ca: false,
            usages,
            dns_names: description.dns_names,
            ip_addresses,
            validity,
        },
        organization,
        current,
    ))
}

/// Copies the current pairs of `ids` into a new directory under the backup root and
/// returns it.
fn backup(opts: &RenewOptions, ids: impl Iterator<Item = CertId>) -> Result<PathBuf, PkiError> {
    let root = &opts.backup_root;
    fsutil::create_dir_all_with_mode(root, BACKUP_DIR_MODE).map_err(|source| PkiError::Backup {
        path: root.clone(),
        source,
    })?;
    let t = opts.now.to_offset(time::UtcOffset::UTC);
    // kubeadm's backup folders are named `kubeadm-backup-etcd-2006-01-02-15-04-05`.
    let stamp = format!(
        "kubeadm-etcd-renew-{:04}-{:02}-{:02}-{:02}-{:02}-{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let mut dir = root.join(&stamp);
    let mut n = 0;
    loop {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new()
            .mode(BACKUP_DIR_MODE)
            .create(&dir)
        {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                n += 1;
                dir = root.join(format!("{stamp}-{n}"));
            }
            Err(source) => return Err(PkiError::Backup { path: dir, source }),
        }
    }
    for id in ids {
        for (from, to, mode) in [
            (
                id.cert_path(&opts.cert_dir),
                id.cert_path(&dir),
                CERT_FILE_MODE,
            ),
            (
                id.key_path(&opts.cert_dir),
                id.key_path(&dir),
                KEY_FILE_MODE,
            ),
        ] {
            // A certificate without its key is still worth keeping.
            let Some(bytes) = read_optional(&from)? else {
                continue;
            };
            let parent = to.parent().expect("backup paths have a parent");
            fsutil::create_dir_all_with_mode(parent, BACKUP_DIR_MODE).map_err(|source| {
                PkiError::Backup {
                    path: from.clone(),
                    source,
                }
            })?;
            fsutil::write_atomic(&to, &bytes, mode)
                .map_err(|source| PkiError::Backup { path: from, source })?;
        }
    }
    Ok(dir)
}

fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = path.parent().expect("certificate paths have a parent");
    fsutil::create_dir_all_with_mode(dir, DIR_MODE).map_err(|source| PkiError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    fsutil::write_atomic(path, contents, mode).map_err(|source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The serial of a certificate as `openssl x509 -noout -serial` prints it: upper-case
/// hex, two digits per byte.
pub fn serial_hex(path: &Path, der: &[u8]) -> Result<String, PkiError> {
    let cert = parse_cert(path, der)?;
    Ok(cert
        .serial
        .to_bytes_be()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect())
}
