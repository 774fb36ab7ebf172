//! `kubeadm-etcd completion bash|zsh|fish`: clap_complete's scripts for the command tree
//! the tool parses with, so completions cannot disagree with `--help`.

use clap::Command;
use clap_complete::Shell;

/// The script for `shell`, for the binary named [`crate::cli::BIN`].
pub fn script(shell: Shell, root: &Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut root.clone(), crate::cli::BIN, &mut out);
    if shell == Shell::Bash {
        out = fix_bash_hyphenated_bin(&String::from_utf8(out).expect("scripts are UTF-8"))
            .into_bytes();
    }
    out
}

/// clap_complete's bash script completes nothing below the top level for a binary whose
/// name has a hyphen (clap-rs/clap#6421, open in clap_complete 4.6.12): the loop over the
/// words spells the state of `kubeadm-etcd phase` as `kubeadm__etcd__subcmd__phase`
/// (the bin name's `-` escaped as `__`), but the case arms that offer each command's
/// words are spelled `kubeadm__subcmd__etcd__subcmd__phase` (the `-` escaped as the
/// subcommand separator), so no arm ever matches and `phase et<TAB>` offers nothing.
/// Spelling the arms as the loop does fixes it; once clap_complete spells them alike this
/// replaces nothing. Subcommand names keep their own escaping, which is consistent.
fn fix_bash_hyphenated_bin(script: &str) -> String {
    let loop_spelling = crate::cli::BIN.replace('-', "__");
    let arm_spelling = crate::cli::BIN.replace('-', "__subcmd__");
    script.replace(&arm_spelling, &loop_spelling)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case arm of the bash script is a state the word loop can reach: the bug
    /// above, caught without running bash (tests/completion.rs runs it).
    #[test]
    fn every_bash_case_arm_is_reachable() {
        let root = crate::cli::user_command(&crate::workflow::Tree::new());
        let text = String::from_utf8(script(Shell::Bash, &root)).unwrap();
        let states: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("cmd=\""))
            .filter_map(|l| l.strip_suffix('"'))
            .collect();
        let arms: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("        ") && !l.starts_with("         "))
            .filter_map(|l| l.trim().strip_suffix(')'))
            .filter(|l| l.starts_with("kubeadm"))
            .collect();
        assert!(arms.len() > 20, "{}", arms.len());
        for arm in arms {
            assert!(
                states.contains(arm),
                "case arm {arm} is no state the loop reaches"
            );
        }
    }
}
