//! What certificate a member actually serves, read from a TLS handshake, for
//! `check-health`: an expired or not-yet-valid server or peer certificate is reported
//! with the command that renews it.
//!
//! The certificate is taken from the server's first flight (TLS 1.2 and 1.3 both send
//! it before asking for the client's). With the client's credentials ([`ClientIdentity`]:
//! the etcd CA and the healthcheck-client pair) the handshake is then completed and
//! closed with close_notify, nothing else sent: the member logs nothing, where an aborted
//! handshake costs a "rejected connection ... tls: handshake failure" warning in its log
//! per address (both checked on etcd 3.4.23 to 3.7.1 in `phases/tests/tls.rs`). The chain and the address are verified against
//! the CA at the certificate's own NotBefore, so that an expired certificate is still
//! read (and reported) while a stranger's is not trusted; one that fails that check ends
//! the handshake there. Without credentials the handshake is aborted after the
//! certificate, and nothing is trusted.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
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
    #[error("{}: {reason}", path.display())]
    Credentials {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// The etcd CA and a client certificate and key, to complete the handshake cleanly.
#[derive(Debug)]
pub struct ClientIdentity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        Self {
            roots: self.roots.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl ClientIdentity {
    /// Reads the CA bundle, the client certificate and its key (PKCS#1, SEC1 or PKCS#8).
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, ServedError> {
        let blocks = |path: &Path| -> Result<Vec<pem::Pem>, ServedError> {
            let bad = |reason: String| ServedError::Credentials {
                path: path.to_path_buf(),
                reason,
            };
            let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            pem::parse_many(bytes).map_err(|e| bad(e.to_string()))
        };
        let certs = |path: &Path| -> Result<Vec<CertificateDer<'static>>, ServedError> {
            Ok(blocks(path)?
                .into_iter()
                .filter(|b| b.tag() == "CERTIFICATE")
                .map(|b| CertificateDer::from(b.into_contents()))
                .collect())
        };
        let mut roots = RootCertStore::empty();
        for der in certs(ca)? {
            roots.add(der).map_err(|e| ServedError::Credentials {
                path: ca.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
        let chain = certs(cert)?;
        let key_der = blocks(key)?
            .into_iter()
            .find_map(|b| match b.tag() {
                "RSA PRIVATE KEY" => Some(PrivateKeyDer::Pkcs1(b.into_contents().into())),
                "EC PRIVATE KEY" => Some(PrivateKeyDer::Sec1(b.into_contents().into())),
                "PRIVATE KEY" => Some(PrivateKeyDer::Pkcs8(b.into_contents().into())),
                _ => None,
            })
            .ok_or_else(|| ServedError::Credentials {
                path: key.to_path_buf(),
                reason: "no private key in it".into(),
            })?;
        if chain.is_empty() {
            return Err(ServedError::Credentials {
                path: cert.to_path_buf(),
                reason: "no certificate in it".into(),
            });
        }
        Ok(Self {
            roots: Arc::new(roots),
            chain,
            key: key_der,
        })
    }
}

/// Records the server's certificate; then verifies it with `verify` (at its own
/// NotBefore), or, without one, refuses it, which ends the handshake.
#[derive(Debug)]
struct Capture {
    seen: Mutex<Option<Vec<u8>>>,
    schemes: Vec<SignatureScheme>,
    verify: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("no panic holds the lock") = Some(end_entity.to_vec());
        let Some(verify) = &self.verify else {
            return Err(rustls::Error::General(
                "certificate captured; handshake not continued".into(),
            ));
        };
        // Checked as of its own NotBefore: its validity period is what is reported,
        // the chain and the names are what is verified.
        let not_before = x509_parser::parse_x509_certificate(end_entity)
            .map(|(_, c)| c.validity().not_before.timestamp())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let at = UnixTime::since_unix_epoch(Duration::from_secs(
            u64::try_from(not_before.saturating_add(1)).unwrap_or(0),
        ));
        verify.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, at)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match &self.verify {
            Some(v) => v.verify_tls12_signature(message, cert, dss),
            None => Err(rustls::Error::General("not used".into())),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match &self.verify {
            Some(v) => v.verify_tls13_signature(message, cert, dss),
            None => Err(rustls::Error::General("not used".into())),
        }
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
/// `timeout`; with `identity`, over a completed and closed handshake.
pub fn served_certificate(
    url: &str,
    identity: Option<&ClientIdentity>,
    timeout: Duration,
) -> Result<Vec<u8>, ServedError> {
    let (addr, host) = socket_addr(url)?;
    let failed = |reason: String| ServedError::NoCertificate {
        addr: addr.to_string(),
        reason,
    };
    let io = |source| ServedError::Io {
        addr: addr.to_string(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verify = match identity {
        Some(id) => Some(
            WebPkiServerVerifier::builder_with_provider(id.roots.clone(), provider.clone())
                .build()
                .map_err(|e| failed(e.to_string()))?,
        ),
        None => None,
    };
    let capture = Arc::new(Capture {
        seen: Mutex::new(None),
        schemes: provider
            .signature_verification_algorithms
            .supported_schemes(),
        verify,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone());
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| failed(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(host.clone()).map_err(|_| ServedError::BadUrl {
        url: url.to_string(),
    })?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| failed(e.to_string()))?;
    let mut sock = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    sock.set_read_timeout(Some(timeout)).map_err(io)?;
    sock.set_write_timeout(Some(timeout)).map_err(io)?;
    let reason = loop {
        match conn.complete_io(&mut sock) {
            Ok(_) if conn.is_handshaking() => continue,
            Ok(_) => {
                // Done: say goodbye properly, so that the member has nothing to log.
                conn.send_close_notify();
                let _ = conn.complete_io(&mut sock);
                break String::new();
            }
            Err(e) => break e.to_string(),
        }
    };
    let seen = capture.seen.lock().expect("no panic holds the lock").take();
    seen.ok_or_else(|| failed(reason))
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
    identity: Option<&ClientIdentity>,
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
            .map(|(_, url, _, _)| {
                scope.spawn(move || served_certificate(url, identity, timeout).ok())
            })
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
