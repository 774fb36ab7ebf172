//! What the kubelet does with an etcd static Pod, for `hack/kubelet-standin.rs` and the
//! test harness (one implementation: the stand-in includes this file with `#[path]`).
//! Not part of the product; standard library and `serde_yaml` only.
//!
//! Like the kubelet, [`run`]:
//! - starts the container when the manifest appears, and kills it when it goes away;
//! - kills and restarts it when the manifest changes (the upgrade phases rewrite it);
//! - restarts it when it exits (static Pods have `restartPolicy: Always`), after a back-off;
//! - runs the probes the manifest declares, HTTP GET on the scheme, host, port and path
//!   written there, honouring `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`,
//!   `failureThreshold` and `successThreshold`: liveness and readiness only once the
//!   startup probe has succeeded; a startup or liveness probe failing `failureThreshold`
//!   times in a row kills the container, which is then restarted; readiness only marks it
//!   ready or not.
//!
//! What differs from a real node, and why:
//! - Several "nodes" share this host's 127.0.0.1, so [`localize_command`] moves the
//!   member's localhost listeners to its own address, and the probes follow them there.
//! - `time_scale` multiplies every duration of the manifest's probes (1.0: as written), so
//!   a test can run kubeadm's real probes, whose periods are 10 s, in a fraction of the time.
//! - The back-off between restarts is fixed (`restart_backoff`), not the kubelet's doubling
//!   10 s to 5 min, so tests see restarts within their time budget.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Moves a member's localhost listeners to its own address.
///
/// kubeadm makes every member listen on `https://127.0.0.1:2379` (`[::1]` for IPv6) and
/// serve metrics on `http://127.0.0.1:2381`, which is private to each real node. Members
/// sharing one test machine cannot all own those sockets, so in `--listen-client-urls`
/// and `--listen-metrics-urls` a localhost URL becomes the same URL on `own_address`
/// (dropped when that duplicates another entry). Nothing else changes: every other flag
/// runs exactly as rendered.
pub fn localize_command(command: &[String], own_address: IpAddr) -> Vec<String> {
    command
        .iter()
        .map(|arg| {
            let Some((flag, value)) = arg.split_once('=') else {
                return arg.clone();
            };
            if flag != "--listen-client-urls" && flag != "--listen-metrics-urls" {
                return arg.clone();
            }
            let mut urls: Vec<String> = Vec::new();
            for url in value.split(',') {
                let url = localize_url(url, own_address);
                if !urls.contains(&url) {
                    urls.push(url);
                }
            }
            format!("{flag}={}", urls.join(","))
        })
        .collect()
}

/// `url` with a localhost host replaced by `own_address`; any other URL unchanged.
pub fn localize_url(url: &str, own_address: IpAddr) -> String {
    let own_host = bracketed(own_address);
    ["127.0.0.1", "[::1]", "localhost"]
        .iter()
        .find_map(|local| {
            let (scheme, rest) = url.split_once("://")?;
            let rest = rest.strip_prefix(local)?;
            (rest.is_empty() || rest.starts_with(':') || rest.starts_with('/'))
                .then(|| format!("{scheme}://{own_host}{rest}"))
        })
        .unwrap_or_else(|| url.to_string())
}

/// A probe's host moved like the listeners: localhost becomes `own_address`.
pub fn localize_host(host: &str, own_address: IpAddr) -> String {
    match host {
        "127.0.0.1" | "::1" | "[::1]" | "localhost" | "" => own_address.to_string(),
        other => other.to_string(),
    }
}

fn bracketed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// The member's own address: the host of the first `--advertise-client-urls` entry.
pub fn own_address(command: &[String]) -> Result<IpAddr, String> {
    let advertise = command
        .iter()
        .find_map(|a| a.strip_prefix("--advertise-client-urls="))
        .ok_or("the command has no --advertise-client-urls")?;
    let first = advertise.split(',').next().unwrap_or_default();
    let authority = first
        .split_once("://")
        .map_or(first, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.parse().map_err(|e| {
        format!(
            "the host {host:?} of --advertise-client-urls={advertise} is not an IP address: {e}"
        )
    })
}

/// One HTTP probe as the manifest declares it, with the kubelet's defaults for what it
/// leaves out (period 10 s, timeout 1 s, failure threshold 3, success threshold 1).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpProbe {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

impl HttpProbe {
    /// `container` resolves a named `httpGet.port` through its `ports`, as the kubelet does
    /// (kubeadm names the probe port from 1.34, kubernetes/kubernetes#132776).
    fn from_yaml(
        v: &serde_yaml::Value,
        container: &serde_yaml::Value,
        which: &str,
    ) -> Result<Option<Self>, String> {
        if v.is_null() {
            return Ok(None);
        }
        let get = &v["httpGet"];
        if get.is_null() {
            return Err(format!("{which}: only httpGet probes are supported"));
        }
        let secs = |field: &str, default: u64| -> Result<Duration, String> {
            match &v[field] {
                serde_yaml::Value::Null => Ok(Duration::from_secs(default)),
                n => n
                    .as_u64()
                    .map(Duration::from_secs)
                    .ok_or_else(|| format!("{which}.{field}: {n:?} is not a number of seconds")),
            }
        };
        let count = |field: &str, default: u32| -> Result<u32, String> {
            match &v[field] {
                serde_yaml::Value::Null => Ok(default),
                n => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| format!("{which}.{field}: {n:?} is not a count")),
            }
        };
        let named_port = |name: &str| {
            container["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|p| p["name"].as_str() == Some(name))
                .and_then(|p| p["containerPort"].as_u64())
        };
        let port = match &get["port"] {
            serde_yaml::Value::String(name) => named_port(name),
            n => n.as_u64(),
        }
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| {
                format!(
                    "{which}.httpGet.port: {:?} is neither a port number nor the name of one of the container's ports",
                    get["port"]
                )
            })?;
        Ok(Some(Self {
            scheme: get["scheme"].as_str().unwrap_or("HTTP").to_string(),
            host: get["host"].as_str().unwrap_or_default().to_string(),
            port,
            path: get["path"].as_str().unwrap_or("/").to_string(),
            initial_delay: secs("initialDelaySeconds", 0)?,
            period: secs("periodSeconds", 10)?,
            timeout: secs("timeoutSeconds", 1)?,
            failure_threshold: count("failureThreshold", 3)?,
            success_threshold: count("successThreshold", 1)?,
        }))
    }

    /// One GET, `Ok` for a status in 200..400 (the kubelet's rule), else why not. The
    /// host was localized by the caller.
    pub fn check(&self, host: &str, timeout: Duration) -> Result<u16, String> {
        if !self.scheme.eq_ignore_ascii_case("http") {
            return Err(format!(
                "{} probes are not supported by the stand-in (only HTTP)",
                self.scheme
            ));
        }
        let target = format!("{}:{}", bracket_host(host), self.port);
        let addr: SocketAddr = target
            .to_socket_addrs()
            .map_err(|e| format!("{target}: {e}"))?
            .next()
            .ok_or_else(|| format!("{target}: no address"))?;
        let timeout = timeout.max(Duration::from_millis(10));
        let mut stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("GET http://{target}{}: {e}", self.path))?;
        stream.set_read_timeout(Some(timeout)).ok();
        stream.set_write_timeout(Some(timeout)).ok();
        write!(
            stream,
            "GET {} HTTP/1.0\r\nHost: {target}\r\nUser-Agent: kube-probe/standin\r\n\r\n",
            self.path
        )
        .map_err(|e| format!("GET http://{target}{}: {e}", self.path))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .map_err(|e| format!("GET http://{target}{}: {e}", self.path))?;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| {
                format!(
                    "GET http://{target}{}: no HTTP status in the answer",
                    self.path
                )
            })?;
        if (200..400).contains(&status) {
            Ok(status)
        } else {
            let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
            Err(format!(
                "GET http://{target}{}: HTTP {status} {}",
                self.path,
                body.chars().take(200).collect::<String>()
            ))
        }
    }
}

fn bracket_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// What the stand-in reads from an etcd static Pod manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSpec {
    /// `spec.containers[0].command`, starting with `etcd`.
    pub command: Vec<String>,
    pub startup: Option<HttpProbe>,
    pub liveness: Option<HttpProbe>,
    pub readiness: Option<HttpProbe>,
    /// `hostPath` volumes of type `DirectoryOrCreate`.
    pub create_dirs: Vec<PathBuf>,
    /// `spec.containers[0].image` (empty when absent): the harness runs the etcd
    /// binary its tag names, so an upgrade that rewrites the image restarts the member
    /// on the new release.
    pub image: String,
}

impl PodSpec {
    pub fn parse(yaml: &str) -> Result<Self, String> {
        let pod: serde_yaml::Value =
            serde_yaml::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
        let container = &pod["spec"]["containers"][0];
        let command: Vec<String> = container["command"]
            .as_sequence()
            .ok_or("no spec.containers[0].command")?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("command entry {v:?} is not a string"))
            })
            .collect::<Result<_, _>>()?;
        match command.first() {
            Some(p) if p == "etcd" => {}
            other => {
                return Err(format!(
                    "the container command starts with {other:?}, not \"etcd\""
                ))
            }
        }
        let create_dirs = pod["spec"]["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter(|v| v["hostPath"]["type"].as_str() == Some("DirectoryOrCreate"))
            .filter_map(|v| v["hostPath"]["path"].as_str().map(PathBuf::from))
            .collect();
        Ok(Self {
            startup: HttpProbe::from_yaml(&container["startupProbe"], container, "startupProbe")?,
            liveness: HttpProbe::from_yaml(
                &container["livenessProbe"],
                container,
                "livenessProbe",
            )?,
            readiness: HttpProbe::from_yaml(
                &container["readinessProbe"],
                container,
                "readinessProbe",
            )?,
            command,
            create_dirs,
            image: container["image"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// Starts and stops containers for [`run`]: plain processes in the stand-in, processes
/// bound to the test process in the harness.
pub trait Runtime {
    type Container;
    /// Starts `command` (localized already; `command[0]` is `etcd`) of the container
    /// whose image is `image`.
    fn start(&mut self, image: &str, command: &[String]) -> io::Result<Self::Container>;
    /// SIGKILL and reap.
    fn kill(&mut self, container: &mut Self::Container);
    /// How the container ended, once it has (reaping it).
    fn exited(&mut self, container: &mut Self::Container) -> Option<String>;
    /// The container's process id.
    fn pid(&self, container: &Self::Container) -> u32;
}

#[derive(Debug, Clone)]
pub struct KubeletOptions {
    pub manifest: PathBuf,
    /// Multiplies every duration of the manifest's probes (1.0: as written).
    pub time_scale: f64,
    /// Between a container's end and its restart.
    pub restart_backoff: Duration,
}

impl KubeletOptions {
    pub fn new(manifest: &Path) -> Self {
        Self {
            manifest: manifest.to_path_buf(),
            time_scale: 1.0,
            restart_backoff: Duration::from_secs(1),
        }
    }

    fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.time_scale)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        })
    }
}

/// What happened, in order, as the kubelet would record it in the Pod's events.
#[derive(Debug, Clone, PartialEq)]
pub enum KubeletEvent {
    /// A container started; `restarts` is the Pod's restart count.
    Started {
        restarts: u32,
        pid: u32,
        command: Vec<String>,
    },
    /// The manifest could not be read as an etcd Pod.
    BadManifest(String),
    /// The manifest changed: the running container is killed, the new one started.
    ManifestChanged,
    /// The manifest was removed: the container is killed.
    ManifestRemoved,
    ProbeFailed {
        probe: ProbeKind,
        failures: u32,
        threshold: u32,
        error: String,
    },
    /// The startup probe succeeded: liveness and readiness start.
    StartupSucceeded,
    /// Killed after `failureThreshold` failures of the startup or liveness probe.
    KilledByProbe {
        probe: ProbeKind,
        failures: u32,
    },
    /// The container ended by itself.
    Exited(String),
    Ready(bool),
    /// The container could not be started.
    StartFailed(String),
}

struct ProbeState {
    probe: HttpProbe,
    next: Instant,
    failures: u32,
    successes: u32,
}

impl ProbeState {
    fn new(probe: &HttpProbe, started: Instant, opts: &KubeletOptions) -> Self {
        Self {
            next: started + opts.scaled(probe.initial_delay),
            probe: probe.clone(),
            failures: 0,
            successes: 0,
        }
    }

    /// Runs the probe when due: `Some(Ok)` after `successThreshold` successes in a row,
    /// `Some(Err(failures))` after a failure, `None` when nothing changed.
    fn tick(
        &mut self,
        kind: ProbeKind,
        own: IpAddr,
        opts: &KubeletOptions,
        on_event: &mut dyn FnMut(KubeletEvent),
    ) -> Option<Result<(), u32>> {
        let now = Instant::now();
        if now < self.next {
            return None;
        }
        self.next = now
            + opts
                .scaled(self.probe.period)
                .max(Duration::from_millis(10));
        let host = localize_host(&self.probe.host, own);
        match self.probe.check(&host, opts.scaled(self.probe.timeout)) {
            Ok(_) => {
                self.failures = 0;
                self.successes += 1;
                (self.successes >= self.probe.success_threshold.max(1)).then_some(Ok(()))
            }
            Err(error) => {
                self.successes = 0;
                self.failures += 1;
                on_event(KubeletEvent::ProbeFailed {
                    probe: kind,
                    failures: self.failures,
                    threshold: self.probe.failure_threshold,
                    error,
                });
                Some(Err(self.failures))
            }
        }
    }
}

struct Running<C> {
    container: C,
    own: IpAddr,
    startup: Option<ProbeState>,
    liveness: Option<ProbeState>,
    readiness: Option<ProbeState>,
    ready: bool,
}

/// Runs the Pod of `opts.manifest` until `stop` is set, then kills its container.
pub fn run<R: Runtime>(
    opts: &KubeletOptions,
    runtime: &mut R,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(KubeletEvent),
) {
    let mut manifest: Option<String> = None;
    let mut spec: Option<PodSpec> = None;
    let mut running: Option<Running<R::Container>> = None;
    let mut restarts = 0u32;
    let mut started_any = false;
    let mut restart_at: Option<Instant> = Some(Instant::now());
    while !stop.load(Ordering::SeqCst) {
        let text = std::fs::read_to_string(&opts.manifest).ok();
        if text != manifest {
            if let Some(mut r) = running.take() {
                on_event(if text.is_some() {
                    KubeletEvent::ManifestChanged
                } else {
                    KubeletEvent::ManifestRemoved
                });
                runtime.kill(&mut r.container);
            }
            spec = match text.as_deref().map(PodSpec::parse) {
                Some(Ok(s)) => Some(s),
                Some(Err(e)) => {
                    on_event(KubeletEvent::BadManifest(e));
                    None
                }
                None => None,
            };
            manifest = text;
            restart_at = Some(Instant::now());
        }
        if let Some(r) = running.as_mut() {
            if let Some(how) = runtime.exited(&mut r.container) {
                on_event(KubeletEvent::Exited(how));
                running = None;
                restart_at = Some(Instant::now() + opts.restart_backoff);
            }
        }
        if running.is_none() {
            if let (Some(s), Some(at)) = (spec.as_ref(), restart_at) {
                if Instant::now() >= at {
                    if started_any {
                        restarts += 1;
                    }
                    started_any = true;
                    match start(opts, runtime, s) {
                        Ok(r) => {
                            on_event(KubeletEvent::Started {
                                restarts,
                                pid: runtime.pid(&r.container),
                                command: s.command.clone(),
                            });
                            running = Some(r);
                            restart_at = None;
                        }
                        Err(e) => {
                            on_event(KubeletEvent::StartFailed(e));
                            restart_at = Some(Instant::now() + opts.restart_backoff);
                        }
                    }
                }
            }
        }
        if let Some(r) = running.as_mut() {
            if let Some(killed_by) = probe_tick(r, opts, on_event) {
                on_event(killed_by);
                runtime.kill(&mut r.container);
                running = None;
                restart_at = Some(Instant::now() + opts.restart_backoff);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(mut r) = running.take() {
        runtime.kill(&mut r.container);
    }
}

fn start<R: Runtime>(
    opts: &KubeletOptions,
    runtime: &mut R,
    spec: &PodSpec,
) -> Result<Running<R::Container>, String> {
    for dir in &spec.create_dirs {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create hostPath {}: {e}", dir.display()))?;
    }
    let own = own_address(&spec.command)?;
    let command = localize_command(&spec.command, own);
    let container = runtime
        .start(&spec.image, &command)
        .map_err(|e| format!("cannot start {}: {e}", command[0]))?;
    let now = Instant::now();
    Ok(Running {
        container,
        own,
        startup: spec.startup.as_ref().map(|p| ProbeState::new(p, now, opts)),
        liveness: spec
            .liveness
            .as_ref()
            .map(|p| ProbeState::new(p, now, opts)),
        readiness: spec
            .readiness
            .as_ref()
            .map(|p| ProbeState::new(p, now, opts)),
        ready: false,
    })
}

/// One round of probes; the event to report and kill for, if a probe gave up.
fn probe_tick<C>(
    r: &mut Running<C>,
    opts: &KubeletOptions,
    on_event: &mut dyn FnMut(KubeletEvent),
) -> Option<KubeletEvent> {
    if let Some(startup) = r.startup.as_mut() {
        match startup.tick(ProbeKind::Startup, r.own, opts, on_event) {
            Some(Ok(())) => {
                on_event(KubeletEvent::StartupSucceeded);
                r.startup = None;
                // Liveness and readiness start counting from now, as in the kubelet.
                let now = Instant::now();
                for p in [r.liveness.as_mut(), r.readiness.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    p.next = p.next.max(now);
                }
            }
            Some(Err(failures)) if failures >= startup.probe.failure_threshold.max(1) => {
                return Some(KubeletEvent::KilledByProbe {
                    probe: ProbeKind::Startup,
                    failures,
                });
            }
            _ => {}
        }
        return None;
    }
    if let Some(liveness) = r.liveness.as_mut() {
        if let Some(Err(failures)) = liveness.tick(ProbeKind::Liveness, r.own, opts, on_event) {
            if failures >= liveness.probe.failure_threshold.max(1) {
                return Some(KubeletEvent::KilledByProbe {
                    probe: ProbeKind::Liveness,
                    failures,
                });
            }
        }
    }
    if let Some(readiness) = r.readiness.as_mut() {
        let ready = match readiness.tick(ProbeKind::Readiness, r.own, opts, on_event) {
            Some(Ok(())) => true,
            Some(Err(failures)) if failures >= readiness.probe.failure_threshold.max(1) => false,
            _ => r.ready,
        };
        if ready != r.ready {
            r.ready = ready;
            on_event(KubeletEvent::Ready(ready));
        }
    }
    None
}
