//! A stand-in for the kubelet, for `hack/local-cluster.sh`: runs the etcd static Pod of one
//! manifest the way the kubelet does, until SIGTERM or SIGINT (then it kills the member).
//!
//! Not part of the product. The behaviour is `phases/tests/common/kubelet.rs`, shared with
//! the test harness: start the member when the manifest appears, kill and restart it when
//! the manifest changes, restart it when it exits, run the startup, liveness and readiness
//! probes the manifest declares (killing and restarting it as the kubelet would). What it
//! changes, and why, is listed there: the members' localhost listeners move to each
//! member's own address, since several "nodes" share this host's 127.0.0.1.
//!
//! Every event is printed as a `[kubelet-standin]` line on stderr (the member's own log
//! follows on the same stream).
//!
//! Usage: kubelet-standin --manifest DIR/etcd.yaml --etcd-bin PATH [--wait SECONDS]
//!        [--time-scale F] [--restart-backoff SECONDS]
//!   --wait             give up when no manifest appeared within SECONDS (default 120)
//!   --time-scale       multiply the probes' durations by F (default 1: as written)

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

#[path = "../phases/tests/common/kubelet.rs"]
mod kubelet;

use kubelet::{KubeletEvent, KubeletOptions, Runtime};

/// Plain child processes; the environment is cleared but for PATH, since etcd reads
/// `ETCD_*` variables as flags.
struct Processes {
    etcd_bin: PathBuf,
}

impl Runtime for Processes {
    type Container = Child;

    /// The one `--etcd-bin`, whatever the image.
    fn start(&mut self, _image: &str, command: &[String]) -> io::Result<Child> {
        Command::new(&self.etcd_bin)
            .args(&command[1..])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .spawn()
    }

    fn kill(&mut self, child: &mut Child) {
        let _ = child.kill();
        let _ = child.wait();
    }

    fn exited(&mut self, child: &mut Child) -> Option<String> {
        child.try_wait().ok().flatten().map(|s| s.to_string())
    }

    fn pid(&self, child: &Child) -> u32 {
        child.id()
    }
}

fn main() -> anyhow::Result<()> {
    let mut manifest = None;
    let mut etcd_bin = None;
    let mut wait = Duration::from_secs(120);
    let mut time_scale = 1.0;
    let mut restart_backoff = Duration::from_secs(1);
    let usage = "usage: kubelet-standin --manifest FILE --etcd-bin PATH [--wait SECONDS] [--time-scale F] [--restart-backoff SECONDS]";
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--manifest" => manifest = Some(PathBuf::from(value()?)),
            "--etcd-bin" => etcd_bin = Some(PathBuf::from(value()?)),
            "--wait" => {
                wait = Duration::from_secs(value()?.parse().context("--wait takes seconds")?)
            }
            "--time-scale" => {
                time_scale = value()?.parse().context("--time-scale takes a number")?
            }
            "--restart-backoff" => {
                restart_backoff = Duration::from_secs_f64(
                    value()?
                        .parse()
                        .context("--restart-backoff takes seconds")?,
                )
            }
            other => bail!("unknown argument {other:?}; {usage}"),
        }
    }
    let manifest = manifest.with_context(|| format!("--manifest is required; {usage}"))?;
    let etcd_bin = etcd_bin.with_context(|| format!("--etcd-bin is required; {usage}"))?;

    wait_for(&manifest, wait)?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(stop.clone())?;
    let options = KubeletOptions {
        time_scale,
        restart_backoff,
        ..KubeletOptions::new(&manifest)
    };
    let mut runtime = Processes { etcd_bin };
    let name = manifest.display().to_string();
    kubelet::run(&options, &mut runtime, &stop, &mut |event| {
        eprintln!("[kubelet-standin] {}", describe(&event, &name));
    });
    Ok(())
}

fn describe(event: &KubeletEvent, manifest: &str) -> String {
    match event {
        KubeletEvent::Started {
            restarts,
            pid,
            command,
        } => format!("started pid {pid} (restarts: {restarts}): {}", command.join(" ")),
        KubeletEvent::BadManifest(e) => format!("{manifest}: {e}"),
        KubeletEvent::ManifestChanged => format!("{manifest} changed: restarting the member"),
        KubeletEvent::ManifestRemoved => format!("{manifest} was removed: stopping the member"),
        KubeletEvent::ProbeFailed {
            probe,
            failures,
            threshold,
            error,
        } => format!("{probe} probe failed ({failures}/{threshold}): {error}"),
        KubeletEvent::StartupSucceeded => "startup probe succeeded".to_string(),
        KubeletEvent::KilledByProbe { probe, failures } => format!(
            "{probe} probe failed {failures} times in a row: killing the member, which will be restarted"
        ),
        KubeletEvent::Exited(how) => format!("the member exited ({how})"),
        KubeletEvent::Ready(ready) => format!("ready: {ready}"),
        KubeletEvent::StartFailed(e) => e.clone(),
    }
}

/// Polls every 5 ms: the kubelet sees a new static Pod manifest through inotify within
/// milliseconds, and the join benchmark starts its clock before the manifest is written,
/// so a coarser poll would add up to its interval of noise to every method's time.
fn wait_for(path: &Path, wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    while !path.exists() {
        if Instant::now() >= deadline {
            bail!("no manifest at {} after {wait:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// SIGTERM and SIGINT stop the loop, which then kills the member: stopping the stand-in
/// stops its member, as stopping the kubelet's Pod would.
fn stop_on_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a signal-handling runtime")?;
    let mut term = runtime
        .block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        })
        .context("cannot handle SIGTERM")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            });
            stop.store(true, Ordering::SeqCst);
        })
        .context("cannot start the signal thread")?;
    Ok(())
}
