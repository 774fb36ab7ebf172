//! What kubeadm reads from the host to default a node's identity.

use std::net::{IpAddr, SocketAddr, UdpSocket};

/// kubeadm's `nodeutil.GetHostname("")`: the kernel's host name, trimmed and lowercased.
pub fn hostname() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = raw.trim().to_lowercase();
    (!name.is_empty()).then_some(name)
}

/// The source address the kernel picks for the default route, IPv4 first, then IPv6, as
/// kubeadm's `ChooseBindAddress` prefers: connecting a UDP socket sends nothing, it only
/// asks the routing table, so this works offline and never leaves the host.
/// The destinations are documentation addresses (RFC 5737, RFC 3849): any address
/// outside the host's own networks selects the default route.
pub fn default_route_address() -> Option<IpAddr> {
    let probes: [(&str, SocketAddr); 2] = [
        ("0.0.0.0:0", SocketAddr::from(([192, 0, 2, 1], 53))),
        (
            "[::]:0",
            SocketAddr::new("2001:db8::1".parse().expect("a literal address"), 53),
        ),
    ];
    probes.into_iter().find_map(|(bind, destination)| {
        let socket = UdpSocket::bind(bind).ok()?;
        socket.connect(destination).ok()?;
        let ip = socket.local_addr().ok()?.ip();
        (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
    })
}
