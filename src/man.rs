//! Man pages for every command, rendered from the command tree (clap_mangen), named as
//! git names its pages: `kubeadm-etcd.1`, `kubeadm-etcd-phase-etcd-join-learner.1`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Command;

/// The pages for `root` and each visible command under it, as (file name, roff text),
/// parents before children.
pub fn pages(root: &Command) -> Vec<(String, Vec<u8>)> {
    fn walk(cmd: &Command, out: &mut Vec<(String, Vec<u8>)>) {
        let man = clap_mangen::Man::new(cmd.clone())
            .source(format!("kubeadm-etcd {}", env!("CARGO_PKG_VERSION")))
            .manual("kubeadm-etcd Manual");
        let mut text = Vec::new();
        man.render(&mut text)
            .expect("rendering into memory does not fail");
        out.push((man.get_filename(), text));
        for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
            walk(sub, out);
        }
    }
    // Built, every subcommand knows its full name (`kubeadm-etcd-phase-etcd`), which
    // names its page; `help` is no command of its own on a man page.
    let mut root = root.clone().disable_help_subcommand(true);
    root.build();
    let mut out = Vec::new();
    walk(&root, &mut out);
    out
}

/// Writes every page into `dir` (created if missing), each atomically.
pub fn write_all(root: &Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in pages(root) {
        let path: PathBuf = dir.join(&name);
        phases::fsutil::write_atomic(&path, &text, 0o644)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page for every visible command, each naming its full command line, and none
    /// for the hidden `man` or clap's `help`.
    #[test]
    fn every_visible_command_has_a_page() {
        let root = crate::cli::command(&crate::workflow::Tree::new());
        let pages = pages(&root);
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        fn count(cmd: &Command) -> usize {
            1 + cmd
                .get_subcommands()
                .filter(|c| !c.is_hide_set() && c.get_name() != "help")
                .map(count)
                .sum::<usize>()
        }
        assert_eq!(pages.len(), count(&root), "{names:?}");
        for want in [
            "kubeadm-etcd.1",
            "kubeadm-etcd-phase-etcd-join-learner.1",
            "kubeadm-etcd-phase-certs-all.1",
            "kubeadm-etcd-completion.1",
            "kubeadm-etcd-version.1",
        ] {
            assert!(names.contains(&want), "no {want} in {names:?}");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.contains("-man") || n.contains("-help")),
            "{names:?}"
        );
        let (_, text) = pages
            .iter()
            .find(|(n, _)| n == "kubeadm-etcd-phase-etcd-join-learner.1")
            .unwrap();
        let text = String::from_utf8_lossy(text);
        // roff escapes the hyphens of the synopsis.
        assert!(
            text.contains(r"kubeadm\-etcd phase etcd join\-learner"),
            "{text}"
        );
        assert!(text.contains("learner"), "{text}");
    }
}
