//! Build facts for `kubeadm-etcd version`: the git commit the binary was built from, the
//! state of the work tree, and the compiler.
//!
//! `KUBEADM_ETCD_GIT_COMMIT` and `KUBEADM_ETCD_GIT_TREE_STATE` in the environment win
//! (hack/release.sh sets both, and a build from a source archive can name its commit);
//! otherwise the commit is asked of git, and a build outside a git checkout, or without
//! git, says `unknown`. The tree state is only reported when given: a build script that
//! reruns only when HEAD moves cannot see an edit to a file, and a stale `clean` is worse
//! than `unknown`.

use std::path::Path;
use std::process::Command;

const COMMIT_VAR: &str = "KUBEADM_ETCD_GIT_COMMIT";
const TREE_STATE_VAR: &str = "KUBEADM_ETCD_GIT_TREE_STATE";
const UNKNOWN: &str = "unknown";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={COMMIT_VAR}");
    println!("cargo:rerun-if-env-changed={TREE_STATE_VAR}");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&dir);

    let commit = match std::env::var(COMMIT_VAR) {
        Ok(commit) if !commit.is_empty() => commit,
        _ => {
            // Rerun when HEAD moves: HEAD itself changes on a checkout, its reflog on every
            // commit, reset and checkout (both per work tree, so `git worktree` works).
            // And the branch's ref file, where reflogs are off.
            let mut files = vec!["HEAD".to_string(), "logs/HEAD".to_string()];
            files.extend(git(dir, &["symbolic-ref", "-q", "HEAD"]));
            for file in &files {
                if let Some(path) = git(dir, &["rev-parse", "--git-path", file]) {
                    let path = dir.join(path);
                    if path.exists() {
                        println!("cargo:rerun-if-changed={}", path.display());
                    }
                }
            }
            git_commit(dir).unwrap_or_else(|| UNKNOWN.to_string())
        }
    };
    let tree_state = std::env::var(TREE_STATE_VAR)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| UNKNOWN.to_string());
    println!("cargo:rustc-env={COMMIT_VAR}={commit}");
    println!("cargo:rustc-env={TREE_STATE_VAR}={tree_state}");
    println!(
        "cargo:rustc-env=KUBEADM_ETCD_RUSTC_VERSION={}",
        rustc_version()
    );
}

/// The commit checked out in `dir`, or `None` outside a git checkout (or without git).
pub fn git_commit(dir: &Path) -> Option<String> {
    git(dir, &["rev-parse", "--verify", "HEAD^{commit}"])
        .filter(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        // A GIT_DIR from the caller's environment would describe another repository.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

/// `1.95.0`, from the rustc cargo runs.
fn rustc_version() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| UNKNOWN.to_string())
}
