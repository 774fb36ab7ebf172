//! What certificate a member actually serves, read from a TLS handshake, for
//! `check-health`: an expired or not-yet-valid server or peer certificate is reported
//! with the command that renews it.
//!
//! The handshake is never completed: the certificate is taken from the server's first
//! flight (TLS 1.2 and 1.3 both send it before asking for the client's), then the
//! handshake is aborted. Nothing is sent to the member but a ClientHello, so no
//! credential is needed and nothing is trusted.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use time::OffsetDateTime;

use super::expiry::{kubeadm_date, short_human_duration};

/// Why no certificate could be read from an address.
#[derive(Debug, thiserror::Error)]
pub enum ServedError {
    #[error("{url}: not an https:// URL with a host and port")]
    BadUrl { url: String },
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr}: the TLS handshake ended before the server sent a certificate: {reason}")]
    NoCertificate { addr: String, reason: String },
}

/// Records the server's certificate and refuses it, which ends the handshake.
#[derive(Debug)]
struct Capture {
    seen: Mutex<Option<Vec<u8>>>,
    schemes: Vec<SignatureScheme>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("no panic holds the lock") = Some(end_entity.to_vec());
        Err(rustls::Error::General(
            "certificate captured; handshake not continued".into(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("not used".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// The host and port of an `https://` URL.
fn socket_addr(url: &str) -> Result<(SocketAddr, String), ServedError> {
    let bad = || ServedError::BadUrl {
        url: url.to_string(),
    };
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    let addr = authority
        .to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)?;
    let host = authority
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .ok_or_else(bad)?;
    Ok((addr, host))
}

/// The DER certificate the server at `url` (`https://host:port`) presents, read within
/// `timeout`.
pub fn served_certificate(url: &str, timeout: Duration) -> Result<Vec<u8>, ServedError> {
    let (addr, host) = socket_addr(url)?;
    let io = |source| ServedError::Io {
        addr: addr.to_string(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(Capture {
        seen: Mutex::new(None),
        schemes: provider
            .signature_verification_algorithms
            .supported_schemes(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServedError::NoCertificate {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone()).map_err(|_| ServedError::BadUrl {
        url: url.to_string(),
    })?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| {
        ServedError::NoCertificate {
            addr: addr.to_string(),
            reason: e.to_string(),
        }
    })?;
    let mut sock = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    sock.set_read_timeout(Some(timeout)).map_err(io)?;
    sock.set_write_timeout(Some(timeout)).map_err(io)?;
    let reason = loop {
        match conn.complete_io(&mut sock) {
            Ok(_) if conn.is_handshaking() => continue,
            Ok(_) => break "the handshake completed without a certificate".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    let seen = capture.seen.lock().expect("no panic holds the lock").take();
    seen.ok_or(ServedError::NoCertificate {
        addr: addr.to_string(),
        reason,
    })
}

/// A member's URLs, as its member list entry gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEndpoints {
    /// How the member is named in messages (`etcd-0 (8e9e05c52164694d)`).
    pub label: String,
    pub client_urls: Vec<String>,
    pub peer_urls: Vec<String>,
}

/// Warnings about the certificates members serve: expired, not yet valid, or expiring
/// within `warn_within` of `now`, each with the command that renews it on that node.
/// An address that does not answer is left to the health check, which reports it.
pub fn served_certificate_warnings(
    members: &[MemberEndpoints],
    now: OffsetDateTime,
    warn_within: Duration,
    timeout: Duration,
) -> Vec<String> {
    let mut probes = Vec::new();
    for m in members {
        for (urls, kind, phase) in [
            (&m.client_urls, "server", "etcd-server"),
            (&m.peer_urls, "peer", "etcd-peer"),
        ] {
            for url in urls.iter().filter(|u| u.starts_with("https://")) {
                probes.push((m.label.as_str(), url.as_str(), kind, phase));
            }
        }
    }
    let results: Vec<Option<Vec<u8>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = probes
            .iter()
            .map(|(_, url, _, _)| scope.spawn(move || served_certificate(url, timeout).ok()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    let mut warnings = Vec::new();
    for ((label, url, kind, phase), der) in probes.iter().zip(results) {
        let Some(der) = der else { continue };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
            continue;
        };
        let validity = cert.validity();
        let (not_before, not_after) = (
            validity.not_before.to_datetime(),
            validity.not_after.to_datetime(),
        );
        let renew = format!("on that node run `kubeadm-etcd phase certs renew {phase}`");
        let message = if not_after <= now {
            format!(
                "member {label} serves an expired {kind} certificate on {url} (expired {}): {renew}; etcd reads the files again for every new connection, so the member serves the renewed one without a restart",
                kubeadm_date(not_after)
            )
        } else if not_before > now {
            format!(
                "member {label} serves a {kind} certificate on {url} that is not valid before {}: check the clocks of this machine and that node, or {renew}",
                kubeadm_date(not_before)
            )
        } else if not_after - now <= warn_within {
            format!(
                "member {label} serves a {kind} certificate on {url} that expires in {} ({}): {renew}",
                short_human_duration((not_after - now).whole_seconds()),
                kubeadm_date(not_after)
            )
        } else {
            continue;
        };
        warnings.push(message);
    }
    warnings
}
