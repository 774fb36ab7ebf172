//! What every phase can reach (kubeadm's `InitData`/`JoinData`): the values of the flags
//! it declared, the configuration loaded once with flag overrides applied, a runtime for
//! the phases that talk to etcd or the API server, and the output conventions.

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use phases::config::{self, KubeadmConfig};
use phases::snapshot::Saved;

use crate::flags::{Flag, FlagValues};

/// One invocation of the tool: shared by every phase a workflow runs, so that the
/// configuration is loaded once.
pub struct Session {
    values: FlagValues,
    config: OnceCell<KubeadmConfig>,
    runtime: OnceCell<tokio::runtime::Runtime>,
    /// The snapshot a phase of this run saved, for a later phase that needs one (the
    /// `upgrade` workflow takes one before touching the cluster; `upgrade/etcd` uses it).
    snapshot: RefCell<Option<Saved>>,
}

impl Session {
    pub fn new(values: FlagValues) -> Self {
        Self {
            values,
            config: OnceCell::new(),
            runtime: OnceCell::new(),
            snapshot: RefCell::new(None),
        }
    }

    /// The context of one phase, which may read the flags in `declared`.
    pub fn context(
        &self,
        path: &str,
        in_workflow: bool,
        declared: impl IntoIterator<Item = Flag>,
    ) -> Context<'_> {
        Context {
            session: self,
            path: path.to_string(),
            in_workflow,
            declared: declared.into_iter().collect(),
        }
    }
}

/// What a running phase sees: its own flags (reading another one panics, naming the
/// phase and the flag), the configuration, the runtime.
pub struct Context<'a> {
    session: &'a Session,
    path: String,
    in_workflow: bool,
    declared: BTreeSet<Flag>,
}

impl Context<'_> {
    fn check(&self, flag: Flag) {
        assert!(
            self.declared.contains(&flag),
            "phase {} reads --{}, which it does not declare: add Flag::{flag:?} to its flags",
            self.path,
            flag.id()
        );
    }

    /// The value of a flag; `None` when it was not given. `T` is the type of the flag's
    /// value parser (`PathBuf`, `String`, `IpAddr`, `GoDuration`).
    pub fn value<T: Clone + Send + Sync + 'static>(&self, flag: Flag) -> Option<T> {
        self.check(flag);
        self.session.values.one(flag)
    }

    /// The value of a flag that always has one (a default, or required by clap).
    pub fn required<T: Clone + Send + Sync + 'static>(&self, flag: Flag) -> T {
        assert!(
            flag.always_set(),
            "--{} has no default and is not required: read it with value()",
            flag.id()
        );
        self.value(flag)
            .unwrap_or_else(|| panic!("clap sets --{}", flag.id()))
    }

    /// The items of a comma-separated flag.
    pub fn list(&self, flag: Flag) -> Vec<String> {
        self.check(flag);
        self.session.values.many(flag)
    }

    /// Whether a switch was given.
    pub fn switch(&self, flag: Flag) -> bool {
        self.check(flag);
        self.session.values.switch(flag)
    }

    /// Whether a workflow (`init`, `join`) runs this phase, rather than `phase ...`. A
    /// workflow skips what does not apply to the configuration (kubeadm skips the
    /// local etcd phases for an external etcd); asked for by name, such a phase says
    /// why it cannot run.
    pub fn in_workflow(&self) -> bool {
        self.in_workflow
    }

    pub fn dry_run(&self) -> bool {
        self.switch(Flag::DryRun)
    }

    /// The kubeadm configuration: the `--config` file (kubeadm's defaults without one),
    /// with `--node-name` and `--advertise-address` applied on top. Loaded on first use,
    /// so phases that need none never touch the file.
    ///
    /// The configuration is the command's, shared by every phase of a workflow, so the
    /// overrides are those of the command line, whichever phase loads it first.
    pub fn config(&self) -> anyhow::Result<&KubeadmConfig> {
        let path: Option<PathBuf> = self.value(Flag::Config);
        if let Some(cfg) = self.session.config.get() {
            return Ok(cfg);
        }
        let values = &self.session.values;
        let kubeadm_minor: Option<u64> = if values.takes(Flag::KubeadmVersion) {
            values.one(Flag::KubeadmVersion)
        } else {
            None
        };
        let mut cfg = match &path {
            Some(path) => config::load_file_as(path, kubeadm_minor)?,
            None => KubeadmConfig {
                kubeadm_minor,
                ..KubeadmConfig::default()
            },
        };
        for warning in &cfg.warnings {
            warn(warning);
        }
        if values.takes(Flag::NodeName) {
            if let Some(name) = values.one::<String>(Flag::NodeName) {
                config::validate_node_name(&name)
                    .map_err(|m| anyhow::anyhow!("--node-name: {m}"))?;
                cfg.node.name = Some(name);
            }
        }
        if values.takes(Flag::AdvertiseAddress) {
            if let Some(ip) = values.one(Flag::AdvertiseAddress) {
                config::validate_advertise_address(ip)
                    .map_err(|m| anyhow::anyhow!("--advertise-address: {m}"))?;
                cfg.node.advertise_address = Some(ip);
            }
        }
        // What the file and the flags leave unset comes from the host, as kubeadm's
        // `SetNodeRegistrationDynamicDefaults` and `SetAPIEndpointDynamicDefaults` do.
        cfg.notes = cfg.apply_host_defaults();
        // Which kubeadm this run renders as decides paths, probes and flags: a dry run
        // says it on standard error (standard output may carry the manifest).
        if values.takes(Flag::DryRun) && values.switch(Flag::DryRun) {
            eprintln!("[dryrun] {}", cfg.emulated_kubeadm());
        }
        tracing::info!("{}", cfg.emulated_kubeadm());
        for note in &cfg.notes {
            tracing::info!("{note}");
        }
        Ok(self.session.config.get_or_init(|| cfg))
    }

    /// `--cert-dir`, else the configuration's `certificatesDir`.
    pub fn cert_dir(&self) -> anyhow::Result<PathBuf> {
        match self.value(Flag::CertDir) {
            Some(dir) => Ok(dir),
            None => Ok(self.config()?.cluster.certificates_dir.clone()),
        }
    }

    /// Records the snapshot this phase saved, for the phases after it in this run.
    pub fn remember_snapshot(&self, saved: Saved) {
        *self.session.snapshot.borrow_mut() = Some(saved);
    }

    /// The snapshot an earlier phase of this run saved, if any.
    pub fn snapshot_taken(&self) -> Option<Saved> {
        self.session.snapshot.borrow().clone()
    }

    /// Runs a future on the tool's runtime, created on first use.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let runtime = self.session.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("failed to start the async runtime")
                .expect("a runtime can always be built on Linux")
        });
        runtime.block_on(future)
    }
}

/// A progress bar of `len` steps in the tool's style, drawn nowhere until the caller gives
/// it a draw target (so that its first frame is complete).
pub fn hidden_bar(len: u64, template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::hidden(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session(args: &[&str]) -> Session {
        let flags = [
            Flag::Config,
            Flag::DryRun,
            Flag::ManifestDir,
            Flag::Endpoints,
        ];
        let mut cmd = clap::Command::new("t");
        for flag in flags {
            cmd = cmd.arg(flag.arg());
        }
        let matches = cmd.try_get_matches_from(args).unwrap();
        Session::new(FlagValues::new(matches, flags))
    }

    #[test]
    fn declared_flags_read_back_typed() {
        let s = session(&[
            "t",
            "--dry-run",
            "--config",
            "a.yaml",
            "--endpoints",
            "x,,y",
        ]);
        let ctx = s.context(
            "test/phase",
            false,
            [
                Flag::Config,
                Flag::DryRun,
                Flag::ManifestDir,
                Flag::Endpoints,
            ],
        );
        assert!(ctx.dry_run());
        assert_eq!(
            ctx.value::<PathBuf>(Flag::Config),
            Some(PathBuf::from("a.yaml"))
        );
        assert_eq!(
            ctx.required::<PathBuf>(Flag::ManifestDir),
            PathBuf::from("/etc/kubernetes/manifests")
        );
        assert_eq!(ctx.list(Flag::Endpoints), ["x", "y"]);
    }

    #[test]
    #[should_panic(expected = "phase test/phase reads --dry-run, which it does not declare")]
    fn reading_an_undeclared_flag_panics() {
        let s = session(&["t", "--dry-run"]);
        // The command has --dry-run, but this phase did not declare it.
        let ctx = s.context("test/phase", false, [Flag::Config]);
        ctx.dry_run();
    }

    #[test]
    #[should_panic(expected = "--force is read, but the command does not take it")]
    fn reading_a_flag_the_command_lacks_panics() {
        let s = session(&["t"]);
        // A phase declaring a flag its command was not built with: a broken tree.
        let ctx = s.context("test/phase", false, [Flag::Force]);
        ctx.switch(Flag::Force);
    }

    #[test]
    #[should_panic(expected = "--config has no default and is not required")]
    fn required_only_for_flags_that_always_have_a_value() {
        let s = session(&["t", "--config", "a.yaml"]);
        let ctx = s.context("test/phase", false, [Flag::Config]);
        let _: PathBuf = ctx.required(Flag::Config);
    }

    #[test]
    #[should_panic(expected = "Mismatch between definition and access of `config`")]
    fn reading_with_the_wrong_type_panics() {
        let s = session(&["t", "--config", "a.yaml"]);
        let ctx = s.context("test/phase", false, [Flag::Config]);
        let _: Option<String> = ctx.value(Flag::Config);
    }
}
