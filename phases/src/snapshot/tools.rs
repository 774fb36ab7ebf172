//! Finding `etcdutl` (or, for etcd 3.4, `etcdctl`) of the right release.
//!
//! A snapshot is restored by rewriting the database's membership and writing a WAL and a
//! raft snapshot for the new member; that is etcd's own code, and only the release that
//! will run the data directory should write it. etcd 3.4 has it in `etcdctl snapshot
//! restore` only; 3.5 added `etcdutl` and deprecated the etcdctl command; 3.6 removed it
//! from etcdctl. On a kubeadm node the binaries live in the etcd image, not on the host,
//! so the tool is taken from an explicit path (`--etcdutl`) or from the search path, and
//! its `version` output is checked against the release in use.

use std::path::{Path, PathBuf};
use std::process::Command;

use semver::Version;

use super::SnapshotError;

/// Which of etcd's offline tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolKind {
    Etcdutl,
    /// etcd 3.4's `etcdctl` (`ETCDCTL_API=3`).
    Etcdctl,
}

impl ToolKind {
    pub fn name(self) -> &'static str {
        match self {
            ToolKind::Etcdutl => "etcdutl",
            ToolKind::Etcdctl => "etcdctl",
        }
    }
}

/// A tool that was found and asked for its version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tool {
    pub kind: ToolKind,
    pub path: PathBuf,
    #[serde(serialize_with = "as_string")]
    pub version: Version,
}

/// Serializes through `Display` (semver's `Version` has no serde support here).
pub(crate) fn as_string<T: std::fmt::Display, S: serde::Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl Tool {
    /// A command for this tool with etcdctl's v3 API selected (3.4 needs it).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.env("ETCDCTL_API", "3");
        cmd
    }
}

/// Where to look for a tool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolLookup {
    /// `--etcdutl PATH`: used as given, never replaced by another one.
    pub explicit: Option<PathBuf>,
    /// Directories searched in order; empty means `$PATH`.
    pub search_dirs: Vec<PathBuf>,
}

impl ToolLookup {
    pub fn explicit(path: impl Into<PathBuf>) -> Self {
        Self {
            explicit: Some(path.into()),
            search_dirs: Vec::new(),
        }
    }

    fn dirs(&self) -> Vec<PathBuf> {
        if !self.search_dirs.is_empty() {
            return self.search_dirs.clone();
        }
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default()
    }

    /// Every candidate for `kind`: the explicit path alone when given (a path to the
    /// other tool counts: `--etcdutl /usr/bin/etcdctl` for etcd 3.4), else each search
    /// directory's binary of that name.
    fn candidates(&self, kind: ToolKind) -> Vec<PathBuf> {
        match &self.explicit {
            Some(p) => vec![p.clone()],
            None => self
                .dirs()
                .into_iter()
                .map(|d| d.join(kind.name()))
                .filter(|p| p.is_file())
                .collect(),
        }
    }

    fn looked(&self, kind: ToolKind) -> String {
        match &self.explicit {
            Some(p) => p.display().to_string(),
            None => format!(
                "{} in {}",
                kind.name(),
                self.dirs()
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            ),
        }
    }
}

/// Runs `<tool> version` and reads `etcdutl version: X` / `etcdctl version: X`.
pub fn probe(path: &Path) -> Result<Tool, SnapshotError> {
    let output = Command::new(path)
        .arg("version")
        .env("ETCDCTL_API", "3")
        .output()
        .map_err(|source| SnapshotError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    for line in text.lines() {
        let lower = line.trim().to_lowercase();
        for kind in [ToolKind::Etcdutl, ToolKind::Etcdctl] {
            if let Some(v) = lower.strip_prefix(&format!("{} version:", kind.name())) {
                if let Ok(version) = crate::versions::etcd_semver_from_tag(v.trim()) {
                    return Ok(Tool {
                        kind,
                        path: path.to_path_buf(),
                        version,
                    });
                }
            }
        }
    }
    Err(SnapshotError::ToolOutput {
        tool: path.to_path_buf(),
        reason: "`version` did not print \"etcdutl version: X\" or \"etcdctl version: X\""
            .to_string(),
        output: format!("{}{}", text, String::from_utf8_lossy(&output.stderr)),
    })
}

/// The tool that restores a data directory for etcd `etcd`: `etcdutl` of the same
/// minor for 3.5 and newer, `etcdctl` 3.4 for 3.4.
pub fn restore_tool(lookup: &ToolLookup, etcd: &Version) -> Result<Tool, SnapshotError> {
    let kind = if (etcd.major, etcd.minor) < (3, 5) {
        ToolKind::Etcdctl
    } else {
        ToolKind::Etcdutl
    };
    let wanted = format!("{} {}.{}", kind.name(), etcd.major, etcd.minor);
    let hint = format!(
        "the data directory is written by etcd {etcd}, so restore with {wanted}.x: it is in etcd's release archive (etcd-v{etcd}-linux-amd64.tar.gz) and in the etcd image ({}); pass its path with --etcdutl",
        if kind == ToolKind::Etcdutl { "/usr/local/bin/etcdutl" } else { "/usr/local/bin/etcdctl" }
    );
    let mut wrong = None;
    for path in lookup.candidates(kind) {
        let tool = probe(&path)?;
        if tool.kind == kind && (tool.version.major, tool.version.minor) == (etcd.major, etcd.minor)
        {
            return Ok(tool);
        }
        wrong.get_or_insert(tool);
    }
    match wrong {
        Some(tool) => Err(SnapshotError::ToolVersion {
            path: tool.path,
            found: format!("{} {}", tool.kind.name(), tool.version),
            wanted,
            hint,
        }),
        None => Err(SnapshotError::ToolMissing {
            what: wanted,
            looked: lookup.looked(kind),
            hint,
        }),
    }
}

/// A tool that can read a snapshot's revision and keys: any `etcdutl`, else an `etcdctl`
/// older than 3.6 (3.6 removed `etcdctl snapshot status`).
pub fn status_tool(lookup: &ToolLookup) -> Result<Tool, SnapshotError> {
    let mut wrong = None;
    for kind in [ToolKind::Etcdutl, ToolKind::Etcdctl] {
        for path in lookup.candidates(kind) {
            let tool = probe(&path)?;
            if tool.kind == ToolKind::Etcdutl || (tool.version.major, tool.version.minor) < (3, 6) {
                return Ok(tool);
            }
            wrong.get_or_insert(tool);
        }
        if lookup.explicit.is_some() {
            break;
        }
    }
    let hint = "the revision and key count are read with `etcdutl snapshot status` (any etcd release's etcdutl, or etcdctl before 3.6); pass its path with --etcdutl".to_string();
    match wrong {
        Some(tool) => Err(SnapshotError::ToolVersion {
            path: tool.path,
            found: format!("{} {}", tool.kind.name(), tool.version),
            wanted: "etcdutl, or etcdctl older than 3.6".to_string(),
            hint,
        }),
        None => Err(SnapshotError::ToolMissing {
            what: "etcdutl".to_string(),
            looked: lookup.looked(ToolKind::Etcdutl),
            hint,
        }),
    }
}

/// Runs a tool and returns its stdout, or the failure with its stderr.
pub(crate) fn run(tool: &Tool, args: &[String]) -> Result<String, SnapshotError> {
    let output = tool
        .command()
        .args(args)
        .output()
        .map_err(|source| SnapshotError::Read {
            path: tool.path.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(SnapshotError::ToolFailed {
            tool: tool.path.clone(),
            args: args.join(" "),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fake(dir: &Path, name: &str, prints: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho '{prints}'\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn the_restore_tool_matches_the_minor_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        let new = dir.path().join("new");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        fake(&old, "etcdutl", "etcdutl version: 3.5.1");
        fake(&new, "etcdutl", "etcdutl version: 3.6.14");
        fake(&old, "etcdctl", "etcdctl version: 3.4.23");
        let lookup = ToolLookup {
            explicit: None,
            search_dirs: vec![old.clone(), new.clone()],
        };
        let t = restore_tool(&lookup, &Version::new(3, 6, 14)).unwrap();
        assert_eq!(t.path, new.join("etcdutl"));
        let t = restore_tool(&lookup, &Version::new(3, 5, 30)).unwrap();
        assert_eq!(t.path, old.join("etcdutl"));
        let t = restore_tool(&lookup, &Version::new(3, 4, 23)).unwrap();
        assert_eq!((t.kind, t.path), (ToolKind::Etcdctl, old.join("etcdctl")));

        let err = restore_tool(&lookup, &Version::new(3, 7, 1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is etcdutl 3.5.1, but etcdutl 3.7 is needed"),
            "{err}"
        );
        let err = restore_tool(
            &ToolLookup {
                explicit: None,
                search_dirs: vec![dir.path().to_path_buf()],
            },
            &Version::new(3, 6, 0),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("etcdutl 3.6 is needed for this and was not found"),
            "{err}"
        );
        assert!(err.contains("--etcdutl"), "{err}");
    }

    #[test]
    fn status_takes_any_etcdutl_or_an_old_etcdctl() {
        let dir = tempfile::tempdir().unwrap();
        fake(dir.path(), "etcdctl", "etcdctl version: 3.6.14");
        let lookup = ToolLookup {
            explicit: None,
            search_dirs: vec![dir.path().to_path_buf()],
        };
        let err = status_tool(&lookup).unwrap_err().to_string();
        assert!(err.contains("etcdctl older than 3.6"), "{err}");
        fake(dir.path(), "etcdutl", "etcdutl version: 3.7.1");
        assert_eq!(status_tool(&lookup).unwrap().kind, ToolKind::Etcdutl);
    }
}
