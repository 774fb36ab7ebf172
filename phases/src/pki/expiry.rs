//! `phase certs check-expiration`: kubeadm's `kubeadm certs check-expiration`, for the
//! etcd certificates of a node (or of every host of an external bundle).
//!
//! The model and the table follow kubeadm's, read at kubernetes/kubernetes master
//! (2026): `cmd/kubeadm/app/cmd/certs.go` (`newCmdCertsExpiration`,
//! `fetchCertificateExpirationInfo`, `certTextPrinter.PrintObj`) and the output API
//! `output.kubeadm.k8s.io/v1alpha3` `CertificateExpirationInfo` / `Certificate`
//! (`cmd/kubeadm/app/apis/output/v1alpha3/types.go`):
//! - certificates sorted by name (`Manager.Certificates()` sorts by `Name`), then the CAs;
//! - a certificate that is absent is listed as missing (`!MISSING! <name>`), not an error;
//! - "externally managed" means the signing CA's key is absent (`UsingExternalEtcdCA`);
//!   the CA row says it of the CA itself.
//!
//! Nothing here reads the clock: `now` is a parameter, so tests pin it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::{parse_cert, pem_to_der, read_optional, CertId, PkiError};

/// `--warn-within`'s default: kubeadm's documentation asks to renew certificates a month
/// before they expire, and the issue asks for the same default.
pub const DEFAULT_WARN_WITHIN: Duration = Duration::from_secs(30 * 24 * 3600);

/// The output API group and version kubeadm prints `check-expiration` in.
pub const OUTPUT_API_VERSION: &str = "output.kubeadm.k8s.io/v1alpha3";

/// Where a certificate stands at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpiryStatus {
    Ok,
    /// Valid now, but expires within `--warn-within`.
    ExpiresSoon,
    /// NotAfter has passed.
    Expired,
    /// NotBefore lies ahead (a clock problem, or a certificate made for later).
    NotYetValid,
    Missing,
}

impl ExpiryStatus {
    /// Whether `check-expiration` fails because of this certificate.
    pub fn needs_action(self) -> bool {
        matches!(
            self,
            ExpiryStatus::ExpiresSoon | ExpiryStatus::Expired | ExpiryStatus::NotYetValid
        )
    }
}

/// One row: kubeadm's `Certificate` (same field names and order), plus where the file is
/// and its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateExpiry {
    /// kubeadm's name: `etcd-server`, `etcd-ca`, ...
    pub name: &'static str,
    /// NotAfter, RFC 3339 in UTC as `metav1.Time` writes it; null when missing.
    #[serde(serialize_with = "serialize_rfc3339")]
    pub expiration_date: Option<OffsetDateTime>,
    /// Seconds from `now` until NotAfter, negative once expired (kubeadm's
    /// `ResidualTimeSeconds`, JSON `residualTime`).
    #[serde(rename = "residualTime")]
    pub residual_time_seconds: i64,
    pub externally_managed: bool,
    /// The signing CA's name; absent for a CA (kubeadm: "empty for self-signed, root CA
    /// certificates").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_name: Option<&'static str>,
    pub missing: bool,
    pub path: PathBuf,
    pub status: ExpiryStatus,
    #[serde(skip)]
    pub id: CertId,
    #[serde(skip)]
    pub not_before: Option<OffsetDateTime>,
}

/// kubeadm's `CertificateExpirationInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpirationInfo {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub certificates: Vec<CertificateExpiry>,
    pub certificate_authorities: Vec<CertificateExpiry>,
}

impl ExpirationInfo {
    /// Every row, certificates first.
    pub fn rows(&self) -> impl Iterator<Item = &CertificateExpiry> {
        self.certificates
            .iter()
            .chain(&self.certificate_authorities)
    }
}

/// One host of an external bundle and its certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostExpiry {
    pub host: String,
    pub cert_dir: PathBuf,
    #[serde(flatten)]
    pub info: ExpirationInfo,
}

fn serialize_rfc3339<S: serde::Serializer>(
    t: &Option<OffsetDateTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// `2026-12-02T06:51:18Z`: `metav1.Time`'s JSON form (RFC 3339, whole seconds, UTC).
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `Jan 02, 2006 15:04 MST` in UTC, the layout of kubeadm's EXPIRES column.
pub fn kubeadm_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {:02}, {:04} {:02}:{:02} UTC",
        MONTHS[u8::from(t.month()) as usize - 1],
        t.day(),
        t.year(),
        t.hour(),
        t.minute()
    )
}

/// apimachinery's `duration.ShortHumanDuration`, which kubeadm's RESIDUAL TIME column
/// uses: `<invalid>` below -1 s, then the largest whole unit of s, m, h, d (under 365
/// days), y.
pub fn short_human_duration(seconds: i64) -> String {
    if seconds < -1 {
        "<invalid>".to_string()
    } else if seconds < 0 {
        "0s".to_string()
    } else if seconds < 60 {
        format!("{seconds}s")
    } else if seconds < 3600 {
        format!("{}m", seconds / 60)
    } else if seconds < 24 * 3600 {
        format!("{}h", seconds / 3600)
    } else if seconds / 3600 < 24 * 365 {
        format!("{}d", seconds / 3600 / 24)
    } else {
        format!("{}y", seconds / 3600 / 24 / 365)
    }
}

/// The certificates of the node whose certificate directory is `cert_dir`, at `now`.
///
/// The CA's key is looked for in `ca_dir` when given (an external bundle keeps it out of
/// the host folders), else in `cert_dir`.
pub fn check(
    cert_dir: &Path,
    ca_dir: Option<&Path>,
    now: OffsetDateTime,
    warn_within: Duration,
) -> Result<ExpirationInfo, PkiError> {
    let ca_home = ca_dir.unwrap_or(cert_dir);
    let ca_cert_present = read_optional(&CertId::EtcdCa.cert_path(cert_dir))?.is_some();
    let ca_key_present = read_optional(&CertId::EtcdCa.key_path(ca_home))?.is_some();
    // kubeadm's UsingExternalEtcdCA: the CA certificate without its key.
    let externally_managed = ca_cert_present && !ca_key_present;

    let mut leaves: Vec<CertId> = CertId::ALL.into_iter().filter(|id| !id.is_ca()).collect();
    leaves.sort_by_key(|id| id.phase_name());
    let mut certificates = Vec::new();
    for id in leaves {
        certificates.push(row(
            id,
            cert_dir,
            Some(CertId::EtcdCa.phase_name()),
            externally_managed,
            now,
            warn_within,
        )?);
    }
    let certificate_authorities = vec![row(
        CertId::EtcdCa,
        cert_dir,
        None,
        externally_managed,
        now,
        warn_within,
    )?];
    Ok(ExpirationInfo {
        kind: "CertificateExpirationInfo",
        api_version: OUTPUT_API_VERSION,
        certificates,
        certificate_authorities,
    })
}

fn row(
    id: CertId,
    cert_dir: &Path,
    ca_name: Option<&'static str>,
    externally_managed: bool,
    now: OffsetDateTime,
    warn_within: Duration,
) -> Result<CertificateExpiry, PkiError> {
    let path = id.cert_path(cert_dir);
    let Some(pem) = read_optional(&path)? else {
        return Ok(CertificateExpiry {
            name: id.phase_name(),
            expiration_date: None,
            residual_time_seconds: 0,
            externally_managed: false,
            ca_name,
            missing: true,
            path,
            status: ExpiryStatus::Missing,
            id,
            not_before: None,
        });
    };
    let der = pem_to_der(&path, &pem)?;
    let cert = parse_cert(&path, &der)?;
    let validity = cert.validity();
    let not_after = validity.not_after.to_datetime();
    let not_before = validity.not_before.to_datetime();
    // Go's int64(d / time.Second): truncated toward zero.
    let residual = (not_after - now).whole_seconds();
    let status = if not_before > now {
        ExpiryStatus::NotYetValid
    } else if not_after <= now {
        ExpiryStatus::Expired
    } else if (not_after - now) <= warn_within {
        ExpiryStatus::ExpiresSoon
    } else {
        ExpiryStatus::Ok
    };
    Ok(CertificateExpiry {
        name: id.phase_name(),
        expiration_date: Some(not_after),
        residual_time_seconds: residual,
        externally_managed,
        ca_name,
        missing: false,
        path,
        status,
        id,
        not_before: Some(not_before),
    })
}

/// The host folders of an external bundle written by `phase etcd external-bundle`
/// (`<dir>/<host>/kubeadmcfg.yaml` and `<dir>/<host>/pki/`), sorted by name, and the
/// bundle's CA directory (`<dir>/ca`, the only copy of the CA key).
pub fn bundle_hosts(dir: &Path) -> Result<(PathBuf, Vec<(String, PathBuf)>), PkiError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PkiError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut hosts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PkiError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let config = path.join(crate::manifest::bundle::HOST_CONFIG_FILE_NAME);
        if path.is_dir() && config.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            hosts.push((name, path));
        }
    }
    hosts.sort();
    if hosts.is_empty() {
        return Err(PkiError::NotABundle {
            dir: dir.to_path_buf(),
        });
    }
    Ok((dir.join("ca"), hosts))
}

/// [`check`] for every host of the bundle at `dir`.
pub fn check_bundle(
    dir: &Path,
    now: OffsetDateTime,
    warn_within: Duration,
) -> Result<Vec<HostExpiry>, PkiError> {
    let (ca_dir, hosts) = bundle_hosts(dir)?;
    hosts
        .into_iter()
        .map(|(host, host_dir)| {
            let cert_dir = host_dir.join("pki");
            let info = check(&cert_dir, Some(&ca_dir), now, warn_within)?;
            Ok(HostExpiry {
                host,
                cert_dir,
                info,
            })
        })
        .collect()
}

/// kubeadm's table: certificates, a blank line, certificate authorities, laid out as
/// Go's `tabwriter.NewWriter(w, 10, 4, 3, ' ', 0)` lays them out (minimum cell width 10,
/// padding 3), with the last column written as `%-8v`.
pub fn render_table(info: &ExpirationInfo) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut certs: Vec<Vec<String>> = vec![vec![
        "CERTIFICATE".into(),
        "EXPIRES".into(),
        "RESIDUAL TIME".into(),
        "CERTIFICATE AUTHORITY".into(),
        "EXTERNALLY MANAGED".into(),
    ]];
    for c in &info.certificates {
        certs.push(match c.expiration_date {
            None => vec![
                format!("!MISSING! {}", c.name),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ],
            Some(date) => vec![
                c.name.to_string(),
                kubeadm_date(date),
                short_human_duration(c.residual_time_seconds),
                c.ca_name.unwrap_or_default().to_string(),
                format!("{:<8}", yes_no(c.externally_managed)),
            ],
        });
    }
    let mut cas: Vec<Vec<String>> = vec![vec![
        "CERTIFICATE AUTHORITY".into(),
        "EXPIRES".into(),
        "RESIDUAL TIME".into(),
        "EXTERNALLY MANAGED".into(),
    ]];
    for c in &info.certificate_authorities {
        cas.push(match c.expiration_date {
            None => vec![
                format!("!MISSING! {}", c.name),
                String::new(),
                String::new(),
                String::new(),
            ],
            Some(date) => vec![
                c.name.to_string(),
                kubeadm_date(date),
                short_human_duration(c.residual_time_seconds),
                format!("{:<8}", yes_no(c.externally_managed)),
            ],
        });
    }
    let mut out = tabwrite(&certs);
    out.push('\n');
    out.push_str(&tabwrite(&cas));
    out
}

/// Go's tabwriter for one block of lines with the same number of cells: every cell but
/// the last of a line is tab-terminated and padded to its column's width (the widest cell
/// plus 3, at least 10); the last cell is written as it is.
fn tabwrite(lines: &[Vec<String>]) -> String {
    const MIN_WIDTH: usize = 10;
    const PADDING: usize = 3;
    let columns = lines.iter().map(|l| l.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns.saturating_sub(1))
        .map(|c| {
            lines
                .iter()
                .filter_map(|l| l.get(c).filter(|_| c + 1 < l.len()))
                .map(|cell| cell.chars().count() + PADDING)
                .fold(MIN_WIDTH, usize::max)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        for (c, cell) in line.iter().enumerate() {
            if c + 1 < line.len() {
                out.push_str(&format!("{cell:<width$}", width = widths[c]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_human_duration_matches_apimachinery() {
        for (seconds, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3599, "59m"),
            (3600, "1h"),
            (86399, "23h"),
            (86400, "1d"),
            (364 * 86400, "364d"),
            (365 * 86400, "1y"),
            (10 * 365 * 86400 - 1, "9y"),
        ] {
            assert_eq!(short_human_duration(seconds), want, "{seconds}");
        }
    }

    #[test]
    fn dates_as_kubeadm_and_metav1_print_them() {
        // 2026-08-19T09:03:07Z
        let t = OffsetDateTime::from_unix_timestamp(1_787_130_187).unwrap();
        assert_eq!(kubeadm_date(t), "Aug 19, 2026 09:03 UTC");
        assert_eq!(rfc3339(t), "2026-08-19T09:03:07Z");
    }

    #[test]
    fn tabwriter_columns_as_go_lays_them_out() {
        let lines = vec![
            vec!["CERTIFICATE".to_string(), "X".into(), "no      ".into()],
            vec!["apiserver-kubelet-client".to_string(), "".into(), "".into()],
        ];
        let want = format!(
            "{:<27}{:<10}no      \n{:<27}{:<10}\n",
            "CERTIFICATE", "X", "apiserver-kubelet-client", ""
        );
        assert_eq!(tabwrite(&lines), want);
    }
}
