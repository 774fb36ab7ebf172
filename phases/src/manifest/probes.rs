//! The etcd container's probes: kubeadm's `LivenessProbe`, `ReadinessProbe`,
//! `StartupProbe` (`cmd/kubeadm/app/util/staticpod/utils.go`) and
//! `GetEtcdProbeEndpoint`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::command::{last_arg_value, localhost_for, EtcdProfile, METRICS_PORT};
use crate::config::Arg;

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

/// The three probes kubeadm puts on etcd for this release (no readiness probe before
/// `/readyz` existed, as kubeadm before 1.31 rendered it).
pub struct Probes {
    pub liveness: Probe,
    pub readiness: Option<Probe>,
    pub startup: Probe,
}

pub fn probes(
    endpoint: &ProbeEndpoint,
    profile: &EtcdProfile,
    health_check_timeout: Duration,
) -> Probes {
    // kubeadm: failureThreshold big enough for the whole control-plane health-check
    // timeout, in 10 s periods.
    let startup_failures = (health_check_timeout.as_secs_f64() / 10.0).ceil() as i32;
    if profile.has_livez_readyz() {
        Probes {
            liveness: http_probe(endpoint, "/livez", 10, 15, 8, 10),
            readiness: Some(http_probe(endpoint, "/readyz", 0, 15, 3, 1)),
            startup: http_probe(endpoint, "/readyz", 10, 15, startup_failures, 10),
        }
    } else {
        Probes {
            liveness: http_probe(
                endpoint,
                "/health?exclude=NOSPACE&serializable=true",
                10,
                15,
                8,
                10,
            ),
            readiness: None,
            startup: http_probe(
                endpoint,
                "/health?serializable=false",
                10,
                15,
                startup_failures,
                10,
            ),
        }
    }
}

/// Go's `omitempty` drops zero integers; mirror it so the YAML matches kubeadm's.
fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

fn http_probe(
    endpoint: &ProbeEndpoint,
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
            port: IntOrString::Int(endpoint.port),
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
