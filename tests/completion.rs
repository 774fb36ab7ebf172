//! `kubeadm-etcd completion bash` loaded into a real bash, driven as bash's programmable
//! completion drives it: `complete -p` names the function, which is called with
//! COMP_WORDS/COMP_CWORD/COMP_LINE/COMP_POINT and the three arguments bash passes
//! (command, word being completed, word before it), and COMPREPLY is what a TAB offers.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kubeadm-etcd");

fn script(shell: &str) -> String {
    let out = Command::new(BIN)
        .args(["completion", shell])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "completion {shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What bash offers for TAB at the end of `line` (words separated by single spaces; a
/// trailing space completes a new, empty word).
fn complete(script_path: &std::path::Path, line: &str) -> Vec<String> {
    let mut words: Vec<&str> = line.split(' ').collect();
    if words.last() != Some(&"") && line.ends_with(' ') {
        words.push("");
    }
    let cword = words.len() - 1;
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let program = format!(
        r#"set -e
source '{script}'
spec="$(complete -p kubeadm-etcd)"
func="$(sed -n 's/.* -F \([^ ]*\) .*/\1/p' <<<"$spec")"
[ -n "$func" ] || {{ echo "no completion function in: $spec" >&2; exit 1; }}
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE='{line}'
COMP_POINT=${{#COMP_LINE}}
COMPREPLY=()
"$func" kubeadm-etcd '{cur}' '{prev}'
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        script = script_path.display(),
        words = quoted.join(" "),
        cur = words[cword],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash failed on {line:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.trim_end().to_string())
        .collect();
    got.sort();
    got
}

#[test]
fn bash_completes_phase_and_flag_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeadm-etcd.bash");
    std::fs::write(&path, script("bash")).unwrap();

    assert_eq!(complete(&path, "kubeadm-etcd phase et"), ["etcd"]);
    assert_eq!(
        complete(&path, "kubeadm-etcd phase etcd jo"),
        ["join-learner"]
    );
    // Top level: the workflows, `phase` and the utility commands; not the hidden `man`.
    let top = complete(&path, "kubeadm-etcd ");
    for name in ["init", "join", "upgrade", "phase", "completion", "version"] {
        assert!(top.iter().any(|c| c == name), "{name} not in {top:?}");
    }
    assert!(!top.iter().any(|c| c == "man"), "{top:?}");
    // A phase's own flags, and a value list.
    assert!(
        complete(&path, "kubeadm-etcd phase etcd local --dr").contains(&"--dry-run".to_string())
    );
    assert_eq!(complete(&path, "kubeadm-etcd completion f"), ["fish"]);
    // The same word under another parent: `upgrade` is a workflow and a phase group.
    assert_eq!(complete(&path, "kubeadm-etcd phase upgrade et"), ["etcd"]);
}

#[test]
fn zsh_and_fish_completions_name_every_phase() {
    for (shell, marker) in [
        ("zsh", "#compdef kubeadm-etcd"),
        ("fish", "complete -c kubeadm-etcd"),
    ] {
        let text = script(shell);
        assert!(text.contains(marker), "{shell}: no {marker:?}");
        for name in [
            "join-learner",
            "external-bundle",
            "migrate-feature-gates",
            "etcd-healthcheck-client",
        ] {
            assert!(text.contains(name), "{shell} completion lacks {name}");
        }
    }
}

#[test]
fn unknown_shell_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bash") && err.contains("zsh") && err.contains("fish"),
        "{err}"
    );
}
