//! A stand-in for the kubelet, for `hack/local-cluster.sh`: waits for an etcd static Pod
//! manifest, then becomes the etcd process it describes (exec, so the PID stays the same
//! and the caller can stop it).
//!
//! Not part of the product: it knows only what running our own etcd manifest on one
//! development machine needs.
//! - The container command runs as written, with `etcd` replaced by `--etcd-bin`.
//! - `hostPath` volumes of type `DirectoryOrCreate` are created (mode 0700).
//! - Several "nodes" share this host's 127.0.0.1, so the members' localhost listeners
//!   (`--listen-client-urls` and `--listen-metrics-urls` on 127.0.0.1) move to the
//!   member's own address, taken from `--advertise-client-urls`. On a real node each
//!   member owns its 127.0.0.1. Every other flag is untouched.
//! - The environment is cleared but for PATH: etcd reads `ETCD_*` variables as flags.
//!
//! Usage: kubelet-standin --manifest DIR/etcd.yaml --etcd-bin PATH [--wait SECONDS]

use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

fn main() -> anyhow::Result<()> {
    let mut manifest = None;
    let mut etcd_bin = None;
    let mut wait = Duration::from_secs(120);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--manifest" => manifest = Some(PathBuf::from(value()?)),
            "--etcd-bin" => etcd_bin = Some(PathBuf::from(value()?)),
            "--wait" => wait = Duration::from_secs(value()?.parse().context("--wait takes seconds")?),
            other => bail!("unknown argument {other:?}; usage: kubelet-standin --manifest FILE --etcd-bin PATH [--wait SECONDS]"),
        }
    }
    let manifest = manifest.context("--manifest is required")?;
    let etcd_bin = etcd_bin.context("--etcd-bin is required")?;

    let text = wait_for(&manifest, wait)?;
    let pod: serde_yaml::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not YAML", manifest.display()))?;
    let command: Vec<String> = pod["spec"]["containers"][0]["command"]
        .as_sequence()
        .with_context(|| format!("{} has no spec.containers[0].command", manifest.display()))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .context("a command entry is not a string")
        })
        .collect::<anyhow::Result<_>>()?;
    let (program, rest) = command.split_first().context("empty command")?;
    if program != "etcd" {
        bail!("the container command starts with {program:?}, not etcd");
    }
    for volume in pod["spec"]["volumes"].as_sequence().into_iter().flatten() {
        let host_path = &volume["hostPath"];
        if host_path["type"].as_str() == Some("DirectoryOrCreate") {
            if let Some(path) = host_path["path"].as_str() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .with_context(|| format!("failed to create hostPath {path}"))?;
            }
        }
    }
    let args = localize(rest)?;
    eprintln!(
        "[kubelet-standin] {} {}",
        etcd_bin.display(),
        args.join(" ")
    );
    let err = Command::new(&etcd_bin)
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .exec();
    Err(err).with_context(|| format!("failed to exec {}", etcd_bin.display()))
}

fn wait_for(path: &Path, wait: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + wait;
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) => return Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("no manifest at {} after {wait:?}", path.display()))
            }
        }
    }
}

/// Moves localhost listeners onto the member's own address (see the module comment).
fn localize(args: &[String]) -> anyhow::Result<Vec<String>> {
    let advertise = args
        .iter()
        .find_map(|a| a.strip_prefix("--advertise-client-urls="))
        .context("the command has no --advertise-client-urls")?;
    let own_host = advertise
        .split(',')
        .next()
        .and_then(|u| u.split_once("://"))
        .map(|(_, rest)| rest.rsplit_once(':').map_or(rest, |(host, _)| host))
        .context("cannot read the host of --advertise-client-urls")?
        .to_string();
    Ok(args
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
                let url = ["127.0.0.1", "[::1]", "localhost"]
                    .iter()
                    .find_map(|local| {
                        let (scheme, rest) = url.split_once("://")?;
                        let rest = rest.strip_prefix(local)?;
                        (rest.is_empty() || rest.starts_with(':'))
                            .then(|| format!("{scheme}://{own_host}{rest}"))
                    })
                    .unwrap_or_else(|| url.to_string());
                if !urls.contains(&url) {
                    urls.push(url);
                }
            }
            format!("{flag}={}", urls.join(","))
        })
        .collect())
}
