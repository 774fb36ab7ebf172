//! The etcd container's probes: kubeadm's `LivenessProbe`, `ReadinessProbe`,
//! `StartupProbe` (`cmd/kubeadm/app/util/staticpod/utils.go`) and
//! `GetEtcdProbeEndpoint`, per kubeadm release ([`crate::versions::KubeadmRelease`]).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::command::{last_arg_value, localhost_for, METRICS_PORT};
use crate::config::Arg;
use crate::versions::{KubeadmRelease, ProbeStyle};

/// Where the kubelet probes etcd: host, port and scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEndpoint {
    pub host: String,
    pub port: i32,
    pub scheme: &'static str,
}

/// kubeadm's `GetEtcdProbeEndpoint`: the first URL of the last `listen-metrics-urls`
/// extraArg, else `http://127.0.0.1:2381` (`::1` when the advertise address is IPv6).
/// Like kubeadm, a URL it cannot read falls back to the default rather than failing.
pub fn probe_endpoint(extra_args: &[Arg], ipv6: bool) -> ProbeEndpoint {
    let localhost = localhost_for(if ipv6 {
        std::net::Ipv6Addr::LOCALHOST.into()
    } else {
        std::net::Ipv4Addr::LOCALHOST.into()
    });
    let default = ProbeEndpoint {
        host: localhost.to_string(),
        port: i32::from(METRICS_PORT),
        scheme: "HTTP",
    };
    let Some(value) = last_arg_value(extra_args, "listen-metrics-urls") else {
        return default;
    };
    let first = value.split(',').next().unwrap_or_default();
    let Some((scheme, rest)) = first.split_once("://") else {
        return default;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => return default,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    ProbeEndpoint {
        host: if host.is_empty() {
            localhost.to_string()
        } else {
            host.to_string()
        },
        // kubeadm's ParsePort: 1-65535, anything else keeps the default.
        port: port
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p > 0)
            .map_or(default.port, i32::from),
        scheme: if scheme.eq_ignore_ascii_case("https") {
            "HTTPS"
        } else {
            "HTTP"
        },
    }
}

/// The name kubeadm gives the probe port from 1.34 (k/k#132776).
pub const PROBE_PORT_NAME: &str = "probe-port";

/// The probes kubeadm puts on etcd in this release (no readiness probe up to 1.30).
pub struct Probes {
    pub liveness: Probe,
    pub readiness: Option<Probe>,
    pub startup: Probe,
}

/// kubeadm's `LivenessProbe`, `ReadinessProbe` and `StartupProbe` calls in
/// `GetEtcdPodSpec`, for the probe style and port naming of the release emulated.
pub fn probes(
    endpoint: &ProbeEndpoint,
    release: &KubeadmRelease,
    health_check_timeout: Duration,
) -> Probes {
    // kubeadm's StartupProbe: failureThreshold big enough for the whole control-plane
    // health-check timeout, in 10 s periods.
    let startup_failures = (health_check_timeout.as_secs_f64() / 10.0).ceil() as i32;
    let port = if release.named_probe_port {
        IntOrString::String(PROBE_PORT_NAME.into())
    } else {
        IntOrString::Int(endpoint.port)
    };
    let probe = |path: &str, initial_delay, failure_threshold, period| {
        http_probe(
            endpoint,
            &port,
            path,
            initial_delay,
            15,
            failure_threshold,
            period,
        )
    };
    match release.probes {
        ProbeStyle::LivezReadyz => Probes {
            liveness: probe("/livez", 10, 8, 10),
            readiness: Some(probe("/readyz", 0, 3, 1)),
            startup: probe("/readyz", 10, startup_failures, 10),
        },
        ProbeStyle::Health => Probes {
            liveness: probe("/health?exclude=NOSPACE&serializable=true", 10, 8, 10),
            readiness: None,
            startup: probe("/health?serializable=false", 10, startup_failures, 10),
        },
    }
}

/// The container port the probes name, from 1.34 (k/k#132776).
pub fn probe_port(endpoint: &ProbeEndpoint, release: &KubeadmRelease) -> Option<ContainerPort> {
    release.named_probe_port.then(|| ContainerPort {
        name: Some(PROBE_PORT_NAME.into()),
        container_port: endpoint.port,
        protocol: Some("TCP".into()),
        ..Default::default()
    })
}

/// Go's `omitempty` drops zero integers; mirror it so the YAML matches kubeadm's.
fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

fn http_probe(
    endpoint: &ProbeEndpoint,
    port: &IntOrString,
    path: &str,
    initial_delay: i32,
    timeout: i32,
    failure_threshold: i32,
    period: i32,
) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            host: Some(endpoint.host.clone()),
            path: Some(path.to_string()),
            port: port.clone(),
            scheme: Some(endpoint.scheme.to_string()),
            ..Default::default()
        }),
        initial_delay_seconds: nonzero(initial_delay),
        timeout_seconds: nonzero(timeout),
        failure_threshold: nonzero(failure_threshold),
        period_seconds: nonzero(period),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(value: &str) -> Vec<Arg> {
        vec![Arg {
            name: "listen-metrics-urls".into(),
            value: value.into(),
        }]
    }

    #[test]
    fn default_endpoint_follows_the_address_family() {
        assert_eq!(probe_endpoint(&[], false).host, "127.0.0.1");
        assert_eq!(probe_endpoint(&[], true).host, "::1");
        assert_eq!(probe_endpoint(&[], true).port, 2381);
    }

    #[test]
    fn endpoint_comes_from_the_first_metrics_url() {
        let e = probe_endpoint(
            &metrics("https://[fd00::5]:9379,http://127.0.0.1:2381"),
            true,
        );
        assert_eq!(
            e,
            ProbeEndpoint {
                host: "fd00::5".into(),
                port: 9379,
                scheme: "HTTPS"
            }
        );
        let e = probe_endpoint(&metrics("http://10.0.0.5"), false);
        assert_eq!(
            e,
            ProbeEndpoint {
                host: "10.0.0.5".into(),
                port: 2381,
                scheme: "HTTP"
            }
        );
        let e = probe_endpoint(&metrics("http://:9000/metrics"), false);
        assert_eq!(
            e,
            ProbeEndpoint {
                host: "127.0.0.1".into(),
                port: 9000,
                scheme: "HTTP"
            }
        );
        assert_eq!(
            probe_endpoint(&metrics("not a url"), false),
            probe_endpoint(&[], false)
        );
        assert_eq!(probe_endpoint(&metrics("http://h:99999"), false).port, 2381);
    }
}
