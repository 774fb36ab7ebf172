//! What every phase can reach (kubeadm's `InitData`/`JoinData`): the flag values, the
//! configuration loaded once with flag overrides applied, a runtime for the phases that
//! talk to etcd or the API server, and the output conventions.

use std::cell::OnceCell;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use phases::config::{self, KubeadmConfig};

use crate::flags::FlagValues;

pub struct Context {
    pub flags: FlagValues,
    config: OnceCell<KubeadmConfig>,
    runtime: OnceCell<tokio::runtime::Runtime>,
}

impl Context {
    pub fn new(flags: FlagValues) -> Self {
        Self {
            flags,
            config: OnceCell::new(),
            runtime: OnceCell::new(),
        }
    }

    pub fn dry_run(&self) -> bool {
        self.flags.dry_run
    }

    /// The kubeadm configuration: the `--config` file (kubeadm's defaults without one),
    /// with `--node-name` and `--advertise-address` applied on top. Loaded on first use,
    /// so phases that need none never touch the file.
    pub fn config(&self) -> anyhow::Result<&KubeadmConfig> {
        if let Some(cfg) = self.config.get() {
            return Ok(cfg);
        }
        let mut cfg = match &self.flags.config {
            Some(path) => config::load_file(path)?,
            None => KubeadmConfig::default(),
        };
        for warning in &cfg.warnings {
            warn(warning);
        }
        if let Some(name) = &self.flags.node_name {
            config::validate_node_name(name).map_err(|m| anyhow::anyhow!("--node-name: {m}"))?;
            cfg.node.name = Some(name.clone());
        }
        if let Some(ip) = self.flags.advertise_address {
            config::validate_advertise_address(ip)
                .map_err(|m| anyhow::anyhow!("--advertise-address: {m}"))?;
            cfg.node.advertise_address = Some(ip);
        }
        Ok(self.config.get_or_init(|| cfg))
    }

    /// `--cert-dir`, else the configuration's `certificatesDir`.
    pub fn cert_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.flags.cert_dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(self.config()?.cluster.certificates_dir.clone()),
        }
    }

    /// Runs a future on the tool's runtime, created on first use.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let runtime = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("failed to start the async runtime")
                .expect("a runtime can always be built on Linux")
        });
        runtime.block_on(future)
    }
}

/// Prints a progress line the way kubeadm does: `[certs] Generating ...`.
pub fn say(prefix: &str, message: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[{prefix}] {message}");
    let _ = out.flush();
}

/// Prints a warning to standard error.
pub fn warn(message: impl std::fmt::Display) {
    eprintln!("WARNING: {message}");
}
