//! `snapshot restore`: disaster recovery into a new data directory for this node.
//!
//! The restored member is the first member of a new cluster: the member name, peer URL,
//! `--initial-cluster` and data directory are read from the static Pod manifest the
//! renderer makes for this node's kubeadm configuration as a first member, so the data
//! directory and the manifest that will run it cannot disagree. The other nodes then join
//! it through `join-learner` and `promote`, as learners.
//!
//! The database rewrite (new membership, a WAL and raft snapshot for the new member) is
//! etcd's own: `etcdutl snapshot restore` of the release in use, or etcd 3.4's
//! `etcdctl snapshot restore` (see [`super::tools`]). It writes into a temporary
//! directory beside the target, which is renamed into place only when the tool
//! succeeded, so the data directory is either absent/empty or complete.

use std::fs;
use std::path::{Path, PathBuf};

use super::tools::{self, Tool, ToolLookup};
use super::verify::{verify_file, Verified};
use super::SnapshotError;
use crate::config::KubeadmConfig;
use crate::fsutil;
use crate::manifest::{self, ManifestOptions, WriteOutcome};

/// etcd refuses a data directory other users can read (and fixes it with a warning).
pub const DATA_DIR_MODE: u32 = 0o700;

/// What the restore needs besides the kubeadm configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOptions {
    pub snapshot: PathBuf,
    /// The certificate directory the manifest points at.
    pub cert_dir: PathBuf,
    pub manifest_dir: PathBuf,
    /// Where a replaced manifest is backed up (`/etc/kubernetes/tmp`).
    pub backup_dir: PathBuf,
    pub tools: ToolLookup,
    /// Check everything, write nothing.
    pub dry_run: bool,
}

/// What the restore did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    pub snapshot: Verified,
    pub data_dir: PathBuf,
    pub member_name: String,
    pub peer_url: String,
    pub initial_cluster: String,
    /// The etcd release the configuration runs, which wrote the data directory.
    pub etcd_version: String,
    pub tool: Tool,
    pub manifest_path: PathBuf,
    /// `None` in a dry run.
    #[serde(skip)]
    pub manifest: Option<WriteOutcome>,
    pub dry_run: bool,
}

/// The last `--<name>=value` of a container command.
pub(crate) fn command_flag<'a>(command: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    command
        .iter()
        .rev()
        .find_map(|a| a.strip_prefix(prefix.as_str()))
}

/// Restores `opts.snapshot` for this node and writes its first-member manifest.
pub fn restore(cfg: &KubeadmConfig, opts: &RestoreOptions) -> Result<Restored, SnapshotError> {
    let verified = verify_file(&opts.snapshot)?;
    let (_, version, _) = manifest::etcd_version_of(cfg)?;
    let pod = manifest::etcd_pod(cfg, &ManifestOptions::first_member(opts.cert_dir.clone()))?;
    let command = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.command.clone())
        .unwrap_or_default();
    let flag = |name: &str| {
        command_flag(&command, name)
            .map(str::to_string)
            .ok_or_else(|| {
                SnapshotError::Invalid(format!(
                    "the rendered etcd command has no --{name}; this is a bug"
                ))
            })
    };
    let member_name = flag("name")?;
    let peer_url = flag("initial-advertise-peer-urls")?;
    let initial_cluster = flag("initial-cluster")?;
    let data_dir = PathBuf::from(flag("data-dir")?);
    let token = command_flag(&command, "initial-cluster-token").map(str::to_string);

    check_data_dir(&data_dir)?;
    let tool = tools::restore_tool(&opts.tools, &version)?;
    let yaml = manifest::render_yaml(&pod)?;
    let manifest_path = manifest::manifest_path(&opts.manifest_dir);
    let mut restored = Restored {
        snapshot: verified,
        data_dir: data_dir.clone(),
        member_name: member_name.clone(),
        peer_url: peer_url.clone(),
        initial_cluster: initial_cluster.clone(),
        etcd_version: version.to_string(),
        tool: tool.clone(),
        manifest_path,
        manifest: None,
        dry_run: opts.dry_run,
    };
    if opts.dry_run {
        return Ok(restored);
    }

    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Write { path, source }
    };
    fsutil::create_dir_all_with_mode(&parent, DATA_DIR_MODE).map_err(write_error(&parent))?;
    let dir_name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "etcd".to_string());
    let temp = parent.join(format!(".{dir_name}.restore-{}", std::process::id()));
    if temp.exists() {
        fs::remove_dir_all(&temp).map_err(write_error(&temp))?;
    }
    let mut args = vec![
        "snapshot".to_string(),
        "restore".to_string(),
        opts.snapshot.display().to_string(),
        format!("--data-dir={}", temp.display()),
        format!("--name={member_name}"),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
    ];
    if let Some(token) = token {
        args.push(format!("--initial-cluster-token={token}"));
    }
    let result = (|| {
        tools::run(&tool, &args)?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&temp, fs::Permissions::from_mode(DATA_DIR_MODE))
            .map_err(write_error(&temp))?;
        // Checked again right before the rename: the directory may have been filled
        // while the tool ran. An empty one is replaced.
        check_data_dir(&data_dir)?;
        if data_dir.exists() {
            fs::remove_dir(&data_dir).map_err(write_error(&data_dir))?;
        }
        fs::rename(&temp, &data_dir).map_err(write_error(&data_dir))?;
        fs::File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(write_error(&parent))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&temp);
    }
    result?;
    restored.manifest = Some(manifest::write_manifest(
        &opts.manifest_dir,
        &opts.backup_dir,
        &yaml,
    )?);
    Ok(restored)
}

/// A restore target must be absent or an empty directory.
fn check_data_dir(dir: &Path) -> Result<(), SnapshotError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Err(SnapshotError::DataDirNotEmpty {
                    path: dir.to_path_buf(),
                })
            } else {
                Ok(())
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(SnapshotError::DataDirNotEmpty {
                path: dir.to_path_buf(),
            })
        }
        Err(source) => Err(SnapshotError::Read {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_read_from_the_command() {
        let cmd: Vec<String> = ["etcd", "--name=a", "--data-dir=/x", "--name=b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(command_flag(&cmd, "name"), Some("b"));
        assert_eq!(command_flag(&cmd, "data-dir"), Some("/x"));
        assert_eq!(command_flag(&cmd, "initial-cluster"), None);
    }

    #[test]
    fn only_an_absent_or_empty_data_dir_is_a_target() {
        let dir = tempfile::tempdir().unwrap();
        check_data_dir(&dir.path().join("absent")).unwrap();
        check_data_dir(dir.path()).unwrap();
        fs::write(dir.path().join("member"), b"").unwrap();
        let err = check_data_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not empty"), "{err}");
        assert!(err.contains("move it away"), "{err}");
        assert!(check_data_dir(&dir.path().join("member")).is_err());
    }
}
