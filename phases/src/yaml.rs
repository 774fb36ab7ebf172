//! A YAML writer for [`serde_yaml::Value`] whose output Go reads back unchanged.
//!
//! NB: serde_yaml writes plain scalars by YAML 1.2 rules, so the string `on`, `yes` or
//! `n` comes out unquoted. kubeadm and kubectl read YAML with go-yaml's YAML 1.1 rules,
//! where those are booleans: a label `example.com/enabled: "yes"` would be written back
//! as a bool and rejected. This writer quotes every string that YAML 1.1 *or* 1.2 could
//! read as something else, and otherwise follows go-yaml's layout (block style, sequences
//! not indented under their key, multi-line strings as `|` literals), so that a
//! ConfigMap kubeadm wrote comes back looking the way kubeadm writes it.
//!
//! The same holds for static Pod manifests: the kubelet reads them with go-yaml's YAML
//! 1.1 rules, so an extraEnvs value `"on"` written plain would make the Pod undecodable.

use serde_yaml::{Mapping, Value};

/// Writes `value` as a YAML document; falls back to serde_yaml for what this writer does
/// not handle (tags, non-scalar mapping keys).
pub fn to_string(value: &Value) -> Result<String, serde_yaml::Error> {
    if !supported(value) {
        return serde_yaml::to_string(value);
    }
    let mut out = String::new();
    match value {
        Value::Mapping(m) if !m.is_empty() => write_mapping(m, 0, &mut out),
        Value::Sequence(s) if !s.is_empty() => write_sequence(s, 0, &mut out),
        // A literal block needs its lines indented, even at the top.
        scalar => {
            write_inline(scalar, 2, &mut out);
            out.push('\n');
        }
    }
    Ok(out)
}

fn supported(value: &Value) -> bool {
    match value {
        Value::Tagged(_) => false,
        Value::Sequence(s) => s.iter().all(supported),
        Value::Mapping(m) => m.iter().all(|(k, v)| {
            !matches!(k, Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_)) && supported(v)
        }),
        _ => true,
    }
}

fn pad(indent: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// YAML readers (libyaml, go-yaml) refuse an implicit key longer than 1024 characters.
const MAX_IMPLICIT_KEY: usize = 1024;

fn write_mapping(m: &Mapping, indent: usize, out: &mut String) {
    for (k, v) in m {
        pad(indent, out);
        let mut key = String::new();
        write_scalar(k, None, &mut key);
        // Bytes, not characters: never longer than the limit, at worst explicit needlessly.
        if key.len() > MAX_IMPLICIT_KEY {
            out.push_str("? ");
            out.push_str(&key);
            out.push('\n');
            pad(indent, out);
        } else {
            out.push_str(&key);
        }
        out.push(':');
        write_value(v, indent, indent + 2, out);
    }
}

fn write_sequence(s: &[Value], indent: usize, out: &mut String) {
    for item in s {
        pad(indent, out);
        out.push('-');
        match item {
            // The first line of a nested block goes on the dash's line.
            Value::Mapping(m) if !m.is_empty() => {
                let mut nested = String::new();
                write_mapping(m, indent + 2, &mut nested);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            Value::Sequence(s) if !s.is_empty() => {
                let mut nested = String::new();
                write_sequence(s, indent + 2, &mut nested);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            scalar => {
                out.push(' ');
                write_inline(scalar, indent + 2, out);
                out.push('\n');
            }
        }
    }
}

/// The value after `key:`; `indent` is the key's, `child` the indentation of a block below.
fn write_value(v: &Value, indent: usize, child: usize, out: &mut String) {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            out.push('\n');
            write_mapping(m, child, out);
        }
        // go-yaml does not indent a sequence under its key.
        Value::Sequence(s) if !s.is_empty() => {
            out.push('\n');
            write_sequence(s, indent, out);
        }
        scalar => {
            out.push(' ');
            write_inline(scalar, child, out);
            out.push('\n');
        }
    }
}

/// A scalar, or an empty collection, on the current line; a literal block's lines are
/// indented by `indent`.
fn write_inline(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Mapping(_) => out.push_str("{}"),
        Value::Sequence(_) => out.push_str("[]"),
        Value::String(s) if literal_ok(s) => write_literal(s, indent, out),
        other => write_scalar(other, Some(indent), out),
    }
}

/// go-yaml's `best_width`: past this column a plain or single-quoted scalar is folded at
/// its next single space.
const BEST_WIDTH: usize = 80;

/// A scalar as go-yaml (v2, which sigs.k8s.io/yaml and so kubeadm use) writes it: plain
/// when it reads back as the same string; double-quoted when plain it would read as
/// another type (`"true"`, `"100"`, `""`) or it holds characters only escapes can carry;
/// single-quoted otherwise (`'*.example.com'`, `'a: b'`). `fold_indent`: where a folded
/// line continues, `None` for a mapping key (never folded).
fn write_scalar(v: &Value, fold_indent: Option<usize>, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) if plain_ok(s) => write_folded(s, fold_indent, out),
        Value::String(s) if single_quote_ok(s) => {
            out.push('\'');
            write_folded(&s.replace('\'', "''"), fold_indent, out);
            out.push('\'');
        }
        Value::String(s) => write_double_quoted(s, out),
        // Not reached: `supported` sends these to serde_yaml.
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => out.push_str("null"),
    }
}

/// go-yaml picks double quotes for a string that would read as another type, and libyaml's
/// emitter needs them for what a single-quoted scalar cannot carry.
fn single_quote_ok(s: &str) -> bool {
    !s.is_empty()
        && !resolves_to_non_string(s)
        && !s
            .chars()
            .any(|c| c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}')
}

/// `text` with libyaml's folding: a single space past [`BEST_WIDTH`] that is neither
/// first nor last and not followed by another space becomes a line break and indentation.
/// Readers fold the break back into one space.
fn write_folded(text: &str, fold_indent: Option<usize>, out: &mut String) {
    let Some(indent) = fold_indent else {
        out.push_str(text);
        return;
    };
    let mut column = out.len() - out.rfind('\n').map_or(0, |i| i + 1);
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let single_space =
            c == ' ' && i > 0 && i + 1 < chars.len() && chars[i - 1] != ' ' && chars[i + 1] != ' ';
        if single_space && column > BEST_WIDTH {
            out.push('\n');
            pad(indent, out);
            column = indent;
        } else {
            out.push(c);
            column += 1;
        }
    }
}

/// Whether `s` can be a `|` block: several lines, nothing a literal cannot carry, and a
/// first line that does not start with a space (that would need an indentation indicator).
fn literal_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control())
        && !s.contains('\u{feff}')
        && !s.contains("\u{2028}")
        && !s.contains("\u{2029}")
        // Trailing spaces on a line survive a literal, but a line of only spaces before
        // the end can be mistaken for the block's end by some readers; quote those.
        && !s.lines().any(|l| (!l.is_empty() && l.trim().is_empty()) || l.starts_with('\t'))
}

fn write_literal(s: &str, indent: usize, out: &mut String) {
    let body = s.trim_end_matches('\n');
    let trailing = s.len() - body.len();
    out.push_str(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    for line in s[..body.len()].split('\n') {
        out.push('\n');
        if !line.is_empty() {
            pad(indent, out);
            out.push_str(line);
        }
    }
    // `|+` keeps the extra empty lines.
    for _ in 1..trailing {
        out.push('\n');
    }
}

fn write_double_quoted(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether `s` reads back as the same string, unquoted, under YAML 1.1 and 1.2.
fn plain_ok(s: &str) -> bool {
    if s.is_empty() || s != s.trim() || s.contains('\n') {
        return false;
    }
    if s.chars()
        .any(|c| c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}')
    {
        return false;
    }
    let mut chars = s.chars();
    let first = chars.next().unwrap();
    // As libyaml's emitter decides, `-` and `:` are indicators only when a space (or the
    // end) follows, so `--listen-client-urls=...` and `::1` stay plain, as kubeadm writes
    // them. `?` could be plain too, but nothing we write starts with it: quote it.
    let followed_by_space = chars.next().is_none_or(|c| c == ' ');
    if "-:".contains(first) && followed_by_space || "?,[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    if s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.starts_with("...")
        || s.starts_with("---")
    {
        return false;
    }
    !resolves_to_non_string(s)
}

/// YAML 1.1 (go-yaml) and 1.2 core schema forms of null, bool, int, float, timestamp,
/// and the merge and value keys.
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        "<<", "=", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
        ".nan", ".NaN", ".NAN",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if looks_numeric(unsigned) {
        return true;
    }
    // Timestamps (YAML 1.1): 2001-12-14, 2001-12-14t21:59:43.10-05:00, 2001-12-14 21:59:43.10 -5.
    let b = s.as_bytes();
    b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[5].is_ascii_digit()
}

/// Integers in base 2, 8, 10 or 16, floats and YAML 1.1 sexagesimals, with `_` separators.
fn looks_numeric(s: &str) -> bool {
    let s: String = s.chars().filter(|&c| c != '_').collect();
    let digits = |t: &str, radix: u32| !t.is_empty() && t.chars().all(|c| c.is_digit(radix));
    if digits(&s, 10) {
        return true;
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if s.strip_prefix(prefix)
            .is_some_and(|rest| digits(rest, radix))
        {
            return true;
        }
    }
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() > 1 && parts[..parts.len() - 1].iter().all(|p| digits(p, 10)) {
        let last = parts[parts.len() - 1];
        if digits(last, 10)
            || last.parse::<f64>().is_ok() && last.chars().all(|c| c.is_ascii_digit() || c == '.')
        {
            return true;
        }
    }
    // Rust's float syntax also takes "inf" and "nan", which are plain words in YAML.
    s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) && s.parse::<f64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(v: &Value) -> Value {
        serde_yaml::from_str(&to_string(v).unwrap()).unwrap()
    }

    /// Values a kubeadm manifest is made of must stay readable as kubeadm writes them.
    #[test]
    fn kubeadm_values_stay_plain() {
        for s in [
            "--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.10:2379",
            "127.0.0.1",
            "::1",
            "fd00::5",
            "/health?exclude=NOSPACE&serializable=true",
            "100m",
            "100Mi",
            "registry.k8s.io/etcd:3.5.24-0",
            "https://[fd00:10::10]:2379",
            "kubeadm.kubernetes.io/etcd.advertise-client-urls",
        ] {
            assert!(plain_ok(s), "{s:?} should stay plain");
        }
    }

    #[test]
    fn indicators_comments_and_yaml_1_1_numbers_are_quoted() {
        for s in [
            "- x",
            "a: b",
            "x #y",
            "#x",
            "'x",
            "\"x",
            "&a",
            "*a",
            "!t",
            "%x",
            "@x",
            "`x",
            " x",
            "x ",
            "a:",
            "[x",
            "{x",
            "|",
            ">",
            "1_000",
            "0x1F",
            "0o17",
            "-0b101",
            "2001-01-01",
            "2001-12-14t21:59:43.10-05:00",
            "1:20",
        ] {
            assert!(!plain_ok(s), "{s:?} must be quoted");
        }
    }

    /// libyaml's emitter folds a long plain scalar at a single space past column 80.
    #[test]
    fn long_values_fold_as_go_yaml_folds_them() {
        let long = "word ".repeat(30).trim_end().to_string();
        let mut m = Mapping::new();
        m.insert(Value::String("key".into()), Value::String(long.clone()));
        let out = to_string(&Value::Mapping(m.clone())).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() > 1, "{out}");
        assert!(lines[1].starts_with("  word"), "{out}");
        assert!(
            lines[0].len() > BEST_WIDTH && lines[0].len() < BEST_WIDTH + 6,
            "{out}"
        );
        assert_eq!(
            serde_yaml::from_str::<Value>(&out).unwrap(),
            Value::Mapping(m)
        );
        assert_eq!(
            to_string(&Value::String("*.example.com".into())).unwrap(),
            "'*.example.com'\n"
        );
    }

    #[test]
    fn yaml_1_1_specials_are_quoted() {
        for s in [
            "on",
            "off",
            "yes",
            "no",
            "y",
            "n",
            "Y",
            "N",
            "true",
            "False",
            "null",
            "~",
            "",
            " padded",
            "0755",
            "0x1F",
            "1e3",
            "1_000",
            "1:20",
            "-1",
            "+1",
            ".5",
            ".inf",
            "-.inf",
            ".nan",
            "2024-11-05",
            "2024-11-05T16:45:00Z",
            "<<",
            "=",
            "- item",
            "key: value",
            "a #comment",
            "ends:",
            "#x",
            "*alias",
            "&anchor",
            "!tag",
            "@x",
            "`x",
            "%x",
            "{x}",
            "[x]",
            "'x'",
            "\"x\"",
            "|x",
            ">x",
            "?x",
            ",x",
            "tab\there",
            "0b101",
            "0o17",
            "1.",
            "1.5e-3",
            "1:20:30.5",
            "12_345",
        ] {
            let out = to_string(&Value::String(s.into())).unwrap();
            // go-yaml (v2): double quotes for what would read as another type or needs an
            // escape, single quotes for what is only an indicator problem.
            let quote = if s.is_empty() || resolves_to_non_string(s) || s.contains('\t') {
                '"'
            } else {
                '\''
            };
            assert!(out.starts_with(quote), "{s:?} -> {out}");
            assert_eq!(
                roundtrip(&Value::String(s.into())),
                Value::String(s.into()),
                "{s:?}"
            );
        }
        for s in [
            "Node,RBAC",
            "4m0s",
            "10.96.0.0/12",
            "registry.k8s.io",
            "http://0.0.0.0:2381",
            "v1.33.0",
            "a-b",
            "x:y",
            "10.0.0.1",
            "0.0.0.0",
            "3.5.24-0",
            "8760h0m0s",
            "infinity",
            "nan",
            "1.2.3",
        ] {
            assert_eq!(
                to_string(&Value::String(s.into())).unwrap(),
                format!("{s}\n")
            );
        }
    }

    #[test]
    fn layout_follows_go_yaml() {
        let yaml = "\
apiVersion: v1
data:
  ClusterConfiguration: |
    apiServer:
      extraArgs:
      - name: a
        value: \"on\"
    kind: ClusterConfiguration
  NoNewline: |-
    one
    two
  Empty: \"\"
kind: ConfigMap
metadata:
  annotations: {}
  labels:
    example.com/enabled: \"yes\"
  finalizers: []
  list:
  - - 1
    - 2
  - a: 1
    b: [x]
  - {}
  n: null
  b: false
  f: 1.5
";
        let v: Value = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(
            to_string(&v).unwrap(),
            yaml.replace("b: [x]", "b:\n    - x")
                .replace("  n: null", "  \"n\": null")
        );
        assert_eq!(roundtrip(&v), v);
    }

    fn arb_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9 :#'\"\\-\\n\\t.{}\\[\\],&*!|>%@`~]{0,12}",
            prop::sample::select(vec![
                "on",
                "yes",
                "0755",
                "1e3",
                "2024-01-01",
                "a\n b\n",
                "\n",
                "x\n\n",
                " ",
                "a\n  \n"
            ])
            .prop_map(str::to_string),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| Value::Number(n.into())),
            arb_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
                prop::collection::vec((arb_string(), inner), 0..4).prop_map(|kvs| {
                    Value::Mapping(
                        kvs.into_iter()
                            .map(|(k, v)| (Value::String(k), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    /// Found by phases/tests/fuzz.rs: a key over 1024 characters was written as an
    /// implicit key, which no YAML reader accepts.
    #[test]
    fn long_keys_are_written_as_explicit_keys() {
        let long = "k".repeat(MAX_IMPLICIT_KEY + 1);
        for value in [
            Value::Null,
            Value::String("on".into()),
            Value::Sequence(vec![Value::Null]),
            serde_yaml::from_str("{a: [1]}").unwrap(),
        ] {
            let mut m = Mapping::new();
            m.insert(Value::String(long.clone()), value);
            m.insert(Value::String("short".into()), Value::Bool(true));
            let doc = Value::Mapping(serde_yaml::from_str("{a: b}").unwrap());
            let mut nested = doc.as_mapping().unwrap().clone();
            nested.insert(Value::String("nested".into()), Value::Mapping(m.clone()));
            for v in [Value::Mapping(m.clone()), Value::Mapping(nested)] {
                let text = to_string(&v).unwrap();
                assert!(text.contains(&format!("? {long}\n")), "{text}");
                assert_eq!(roundtrip(&v), v, "{text}");
            }
        }
    }

    proptest! {
        #[test]
        fn everything_reads_back_the_same(v in arb_value()) {
            prop_assert_eq!(roundtrip(&v), v);
        }
    }
}
