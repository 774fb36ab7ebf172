//! YAML for manifests, safe for the kubelet's reader.
//!
//! NB: serde_yaml quotes strings by YAML 1.2 rules only, so `on`, `yes`, `n`, `1_000` or
//! `2001-01-01` come out plain. The kubelet reads static Pods with go-yaml's YAML 1.1
//! rules, where those are booleans, numbers and timestamps: an extraEnvs value `"on"`
//! would make the whole Pod undecodable. This writer quotes (with Go's double quotes)
//! every string that either reader would take for something else, and otherwise lays the
//! document out the way go-yaml does (block style, sequences not indented under their
//! key), which is also what serde_yaml produces for everything else.

use serde_json::Value;

/// Writes a JSON value as a block-style YAML document, mapping keys in the value's order.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_mapping(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => write_sequence(a, 0, &mut out),
        scalar => {
            write_inline(scalar, &mut out);
            out.push('\n');
        }
    }
    out
}

fn pad(indent: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn write_mapping(m: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (k, v) in m {
        pad(indent, out);
        write_string(k, out);
        out.push(':');
        match v {
            Value::Object(child) if !child.is_empty() => {
                out.push('\n');
                write_mapping(child, indent + 2, out);
            }
            // go-yaml does not indent a sequence under its key.
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                write_sequence(items, indent, out);
            }
            scalar => {
                out.push(' ');
                write_inline(scalar, out);
                out.push('\n');
            }
        }
    }
}

fn write_sequence(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        pad(indent, out);
        out.push('-');
        match item {
            // The first line of a nested block goes on the dash's line.
            Value::Object(m) if !m.is_empty() => {
                let mut nested = String::new();
                write_mapping(m, indent + 2, &mut nested);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            Value::Array(a) if !a.is_empty() => {
                let mut nested = String::new();
                write_sequence(a, indent + 2, &mut nested);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            scalar => {
                out.push(' ');
                write_inline(scalar, out);
                out.push('\n');
            }
        }
    }
}

fn write_inline(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

fn write_string(s: &str, out: &mut String) {
    if plain_ok(s) {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether `s` can be written unquoted after `key: ` or `- ` and read back as the same
/// string by both YAML 1.2 (serde_yaml) and go-yaml's YAML 1.1 resolver.
fn plain_ok(s: &str) -> bool {
    if s.is_empty() || s.contains(['\n', '\r', '\t']) || s.chars().any(char::is_control) {
        return false;
    }
    // A flow indicator anywhere could end the scalar inside `{}`/`[]`; go-yaml quotes
    // those only at the start, and so does the round trip below.
    if yaml11_non_string(s) {
        return false;
    }
    // The YAML 1.2 side, indicators, comments and `: ` included: parsed on its own, the
    // text must come back as exactly this string.
    matches!(serde_yaml::from_str::<serde_yaml::Value>(s), Ok(serde_yaml::Value::String(back)) if back == s)
}

/// go-yaml v2's `resolve` for a plain scalar: does it become anything but a string?
fn yaml11_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "~", "null", "Null", "NULL",
        ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
        ".NaN", ".NAN", "<<", "=",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    if !s.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.')) {
        return false;
    }
    // go-yaml drops underscores, then tries Go's ParseInt (base prefixes, leading-zero
    // octal) and ParseFloat, then its timestamp layouts.
    let plain = s.replace('_', "");
    let unsigned = plain.strip_prefix(['+', '-']).unwrap_or(&plain);
    let radix_digits =
        |digits: &str, radix: u32| !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
    let is_int = match unsigned.get(..2) {
        Some("0x" | "0X") => radix_digits(&unsigned[2..], 16),
        Some("0o" | "0O") => radix_digits(&unsigned[2..], 8),
        Some("0b" | "0B") => radix_digits(&unsigned[2..], 2),
        _ => radix_digits(unsigned, 10),
    };
    is_int || plain.parse::<f64>().is_ok() || looks_like_timestamp(s)
}

/// `YYYY-M-D` at the start: go-yaml's date and timestamp layouts all begin so.
fn looks_like_timestamp(s: &str) -> bool {
    let mut parts = s.splitn(3, '-');
    let (Some(y), Some(m), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let d: String = rest.chars().take_while(char::is_ascii_digit).collect();
    y.len() == 4
        && y.chars().all(|c| c.is_ascii_digit())
        && (1..=2).contains(&m.len())
        && m.chars().all(|c| c.is_ascii_digit())
        && (1..=2).contains(&d.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_1_1_specials_are_quoted() {
        for s in [
            "yes",
            "on",
            "Off",
            "y",
            "N",
            "~",
            "",
            "1_000",
            "0x1F",
            "012",
            "0o17",
            "1e3",
            ".5",
            "+1",
            "-0b101",
            "2001-01-01",
            "2001-12-14t21:59:43.10-05:00",
            "<<",
            "=",
            ".inf",
            "null",
            "true",
        ] {
            assert!(!plain_ok(s), "{s:?} must be quoted");
        }
    }

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
            "1:20",
        ] {
            assert!(plain_ok(s), "{s:?} should stay plain");
        }
    }

    #[test]
    fn indicators_and_comments_are_quoted() {
        for s in [
            "- x", "a: b", "x #y", "#x", "'x", "\"x", "&a", "*a", "!t", "%x", "@x", "`x", " x",
            "x ", "a:", "[x", "{x", "|", ">",
        ] {
            assert!(!plain_ok(s), "{s:?} must be quoted");
        }
    }

    #[test]
    fn layout_and_round_trip() {
        let v = serde_json::json!({
            "a": {"b": ["--x=1", {"c": "on", "d": []}], "e": {}},
            "f": "say \"hi\"\n",
            "g": 3,
        });
        let text = to_string(&v);
        assert_eq!(
            text,
            "a:\n  b:\n  - --x=1\n  - c: \"on\"\n    d: []\n  e: {}\nf: \"say \\\"hi\\\"\\n\"\ng: 3\n"
        );
        let back: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}
