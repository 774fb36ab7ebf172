//! Crash-safe file writes.
//!
//! Every file the tool produces (keys, certificates, manifests, backups) goes through
//! [`write_atomic`]: what is on disk after a crash is either the old file or the complete
//! new one, never a partial one, and a key is never readable by group or others, not even
//! for the instant between creation and `chmod`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Points in [`write_atomic`] where a test can inject a failure, to prove that an
/// interruption at any step leaves either the old or the new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStep {
    /// After the temporary file was created, before any byte was written.
    Created,
    /// After half of the bytes were written.
    PartlyWritten,
    /// After the data was written and synced, before the rename.
    Synced,
}

type FaultHook = fn(&Path, WriteStep) -> io::Result<()>;

thread_local! {
    static FAULT_HOOK: std::cell::Cell<Option<FaultHook>> = const { std::cell::Cell::new(None) };
}

/// Installs a hook, for the current thread only, that [`write_atomic`] calls at each
/// [`WriteStep`]; an error it returns aborts the write there. Meant for fault-injection tests.
pub fn set_fault_hook(hook: Option<FaultHook>) {
    FAULT_HOOK.with(|h| h.set(hook));
}

fn fault(path: &Path, step: WriteStep) -> io::Result<()> {
    match FAULT_HOOK.with(|h| h.get()) {
        Some(hook) => hook(path, step),
        None => Ok(()),
    }
}

/// Writes `contents` to `path` atomically with permission bits `mode`: a temporary file
/// in the same directory (created with `mode`, so a key is never briefly world-readable),
/// fsync, rename over `path`, fsync of the directory.
///
/// The parent directory must exist; see [`create_dir_all_with_mode`].
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp_path = dir.join(tmp_name);

    let result = (|| {
        let open = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp_path)
        };
        let mut file = match open() {
            // A temporary named with this process's id is left over from a run that died
            // with the same id (a container's pid 1, pid reuse after a reboot): nobody
            // writes it, and refusing would make every rerun fail with "File exists".
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp_path)?;
                open()?
            }
            other => other?,
        };
        // The umask may have narrowed `mode`; set it exactly (it can only narrow, so the
        // file was never wider than asked).
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        fault(path, WriteStep::Created)?;
        let half = contents.len() / 2;
        file.write_all(&contents[..half])?;
        fault(path, WriteStep::PartlyWritten)?;
        file.write_all(&contents[half..])?;
        file.sync_all()?;
        fault(path, WriteStep::Synced)?;
        fs::rename(&tmp_path, path)?;
        // Persist the rename itself.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    result
}

/// Creates `dir` and any missing parents with permission bits `mode`; existing
/// directories are left as they are (they are the user's).
pub fn create_dir_all_with_mode(dir: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(mode).create(dir)
}

/// Reads a file, returning `None` when it does not exist.
pub fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_exact_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_atomic(&path, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    /// Found by phases/tests/crash_safety.rs: after a crash, the next run with the same
    /// pid failed on the leftover temporary.
    #[test]
    fn a_temporary_left_by_a_crash_with_the_same_pid_does_not_block_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.key");
        let stale = dir
            .path()
            .join(format!(".ca.key.tmp-{}", std::process::id()));
        fs::write(&stale, b"half a key").unwrap();
        write_atomic(&path, b"the key", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"the key");
        assert!(!stale.exists());
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn an_interrupted_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.yaml");
        write_atomic(&path, b"old contents", 0o600).unwrap();
        for step in [
            WriteStep::Created,
            WriteStep::PartlyWritten,
            WriteStep::Synced,
        ] {
            thread_local!(static FAIL_AT: std::cell::Cell<Option<WriteStep>> = const { std::cell::Cell::new(None) });
            FAIL_AT.with(|f| f.set(Some(step)));
            set_fault_hook(Some(|_, s| {
                if FAIL_AT.with(|f| f.get()) == Some(s) {
                    Err(io::Error::other("injected"))
                } else {
                    Ok(())
                }
            }));
            let err = write_atomic(&path, b"new contents that never land", 0o600).unwrap_err();
            set_fault_hook(None);
            assert_eq!(err.to_string(), "injected");
            assert_eq!(fs::read(&path).unwrap(), b"old contents", "{step:?}");
            let names: Vec<_> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                names,
                vec![std::ffi::OsString::from("etcd.yaml")],
                "{step:?}"
            );
        }
    }
}
