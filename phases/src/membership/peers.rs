//! Which members a member is connected to, as it reports it: etcd's
//! `etcd_network_active_peers{Local,Remote}` gauge, read from `/metrics` on the member's
//! client URL (served there next to the gRPC API, over the same TLS with the same client
//! certificate, whatever `--listen-metrics-urls` says).
//!
//! No RPC says whether the other members can reach a member; this gauge is the state of
//! the raft transport's stream to that peer (`peerStatus.activate`/`deactivate` in
//! `server/etcdserver/api/rafthttp/peer_status.go`, the same state etcd's own
//! `mayRemoveMember` consults through `transport.ActiveSince`). `--replace` asks it so that
//! a member it cannot reach itself (a firewall, a partition) but that its peers still talk
//! to is never taken for dead.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::client::{EtcdErrorKind, EtcdTls, RpcError};
use super::MemberId;

/// The gauge's name.
const ACTIVE_PEERS: &str = "etcd_network_active_peers";

/// The peers the member at `url` has an active raft stream with, read from its
/// `/metrics`, bounded by `timeout`.
pub(crate) async fn active_peers(
    tls: &EtcdTls,
    url: &str,
    timeout: Duration,
) -> Result<Vec<MemberId>, RpcError> {
    match tokio::time::timeout(timeout, fetch_metrics(tls, url)).await {
        Ok(Ok(text)) => parse_active_peers(&text).ok_or_else(|| RpcError {
            kind: EtcdErrorKind::Other,
            message: format!(
                "{url}/metrics has no {ACTIVE_PEERS} sample: the member does not say which peers it is connected to"
            ),
        }),
        Ok(Err(message)) => Err(RpcError {
            kind: EtcdErrorKind::Unavailable,
            message: format!("{url}/metrics: {message}"),
        }),
        Err(_) => Err(RpcError::busy(timeout)),
    }
}

fn other(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn fetch_metrics(tls: &EtcdTls, url: &str) -> Result<String, String> {
    let uri: hyper::Uri = url.parse().map_err(other)?;
    let host = uri.host().ok_or("no host in the URL")?;
    let port = uri.port_u16().unwrap_or(2379);
    let server_name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(other)?;
    let config = client_config(tls)?;
    let tcp =
        tokio::net::TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
            .await
            .map_err(other)?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(other)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(other)?;
    // The connection task ends with the request (or when this future is dropped).
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get("/metrics")
        .header(
            hyper::header::HOST,
            uri.authority().map_or(host, |a| a.as_str()),
        )
        .body(Empty::<Bytes>::new())
        .map_err(other)?;
    let response = sender.send_request(request).await.map_err(other)?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(other)?;
    driver.abort();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    String::from_utf8(body.to_bytes().to_vec()).map_err(other)
}

/// The CA to verify the member with, and our client certificate: the files the gRPC
/// client uses.
fn client_config(tls: &EtcdTls) -> Result<ClientConfig, String> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read(&tls.ca)?) {
        roots.add(cert.map_err(other)?).map_err(other)?;
    }
    let chain = CertificateDer::pem_slice_iter(&read(&tls.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(other)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&tls.key)?).map_err(other)?;
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(other)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The `Remote` of every `etcd_network_active_peers` sample above 0. The gauge keeps a
/// sample at 0 for a peer that was active once and is not now, and a member of a cluster
/// of several has had a peer: no sample at all means the page does not say (another
/// format, a member that never connected to anyone), `None`, never "connected to nobody".
pub(crate) fn parse_active_peers(text: &str) -> Option<Vec<MemberId>> {
    let mut out = Vec::new();
    let mut samples = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(ACTIVE_PEERS) else {
            continue;
        };
        let Some((labels, value)) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) else {
            continue;
        };
        samples += 1;
        let active = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v > 0.0);
        if !active {
            continue;
        }
        let remote = labels.split(',').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == "Remote").then(|| v.trim().trim_matches('"'))
        });
        match remote.and_then(|r| r.parse::<MemberId>().ok()) {
            Some(id) => out.push(id),
            // An active peer this parser cannot name: not "nobody".
            None => return None,
        }
    }
    (samples > 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_peers_are_read_from_the_gauge() {
        let text = "\
# HELP etcd_network_active_peers The current number of active peer connections.
# TYPE etcd_network_active_peers gauge
etcd_network_active_peers{Local=\"8211f1d0f64f3269\",Remote=\"91bc3c398fb3c146\"} 1
etcd_network_active_peers{Local=\"8211f1d0f64f3269\",Remote=\"fd422379fda50e48\"} 0
etcd_network_active_peers_total 3
etcd_network_disconnected_peers_total{Local=\"8211f1d0f64f3269\",Remote=\"fd422379fda50e48\"} 1
";
        assert_eq!(
            parse_active_peers(text),
            Some(vec![MemberId(0x91bc3c398fb3c146)])
        );
        // Every peer inactive: connected to nobody.
        let idle = "etcd_network_active_peers{Local=\"1\",Remote=\"2\"} 0\n";
        assert_eq!(parse_active_peers(idle), Some(vec![]));
        // No sample, or an active one without a readable peer: the page does not say.
        assert_eq!(parse_active_peers(""), None);
        assert_eq!(
            parse_active_peers("etcd_network_active_peers{Local=\"1\"} 1\n"),
            None
        );
    }
}
