//! Fuzzing of everything that reads bytes a user, a cluster or a disk hands us: the kubeadm
//! configuration parser, the kubeadm-config migration (the ClusterConfiguration document
//! and the whole ConfigMap file), Go durations, PEM certificates, and a certificate
//! directory whose files hold anything at all. The one property shared by all: no input
//! panics. Some targets also check what their documentation promises (a migration is
//! idempotent, a certificate directory is never overwritten).
//!
//! Inputs are mostly mutations of real fixtures, not random bytes: random bytes stop at
//! the first YAML or PEM syntax check, mutated fixtures reach the code behind it. The
//! mutations work at three levels: the parsed YAML tree (a known field gets an odd value,
//! a node is removed, nested deeply, retyped), the DER inside a PEM block (a length, a tag
//! or a whole element edited, grafted from another certificate), and the bytes (flips,
//! truncation, YAML tokens, splices of other fixtures).
//!
//! `cargo test` runs a bounded number of cases per property; `PROPTEST_CASES=<n>` sets
//! another number for all of them (hack/fuzz.sh runs long campaigns). A failure proptest
//! finds is persisted to testdata/fuzz/regressions/<property>.txt and replayed first on
//! every later run; because a persisted seed regenerates its input from the current seed
//! corpus, the input itself also belongs in testdata/fuzz/crashers/<target>/, which
//! [`known_crashers_do_not_panic`] replays byte for byte.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use phases::config::{load_str, GoDuration};
use phases::pki::{describe_certificate, ensure_certificates, CertId, PkiConfig};
use phases::upgrade::{
    migrate_cluster_configuration, migrate_feature_gates, MigrateOptions, Source,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value};

// ---------------------------------------------------------------------------------------
// Configuration of the runs

/// Cases per property: the default keeps each property at a few seconds on two cores in
/// a debug build; `PROPTEST_CASES` overrides it for every property.
fn config(default_cases: u32, regressions: &'static str) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default()
    }
}

macro_rules! regressions {
    ($name:literal) => {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/fuzz/regressions/",
            $name,
            ".txt"
        )
    };
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The files of `dirs` (relative to the repository), in name order so that a persisted
/// seed picks the same fixture as long as the corpus is unchanged.
fn files_in(dirs: &[&str]) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(repo().join(dir)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, bytes));
        }
    }
    out
}

fn texts_in(dirs: &[&str]) -> Vec<String> {
    files_in(dirs)
        .into_iter()
        .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

fn pick(index: &Index, len: usize) -> Option<usize> {
    (len > 0).then(|| index.index(len))
}

// ---------------------------------------------------------------------------------------
// Seed corpora

struct Corpus {
    configs: Arc<Vec<String>>,
    cluster_configurations: Arc<Vec<String>>,
    configmaps: Arc<Vec<String>>,
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let configs = texts_in(&[
            "testdata/config",
            "testdata/config/bad",
            "testdata/manifest",
            "testdata/fuzz/config",
        ]);
        let configmaps = texts_in(&[
            "testdata/upgrade",
            "testdata/upgrade/bad",
            "testdata/fuzz/configmap",
        ]);
        // The ClusterConfiguration documents of every fixture: the migration's own input.
        let mut cluster_configurations = texts_in(&["testdata/fuzz/cluster-configuration"]);
        for cm in &configmaps {
            if let Ok(v) = serde_yaml::from_str::<Value>(cm) {
                if let Some(s) = v
                    .get("data")
                    .and_then(|d| d.get("ClusterConfiguration"))
                    .and_then(Value::as_str)
                {
                    cluster_configurations.push(s.to_string());
                }
            }
        }
        for text in &configs {
            for doc in text.split("\n---\n") {
                if doc.contains("kind: ClusterConfiguration") {
                    cluster_configurations.push(doc.to_string());
                }
            }
        }
        assert!(configs.len() > 10 && configmaps.len() > 5 && cluster_configurations.len() > 10);
        Corpus {
            configs: Arc::new(configs),
            cluster_configurations: Arc::new(cluster_configurations),
            configmaps: Arc::new(configmaps),
        }
    })
}

/// A certificate directory made by the tool, held in memory: relative path, bytes, mode.
#[derive(Clone)]
struct PkiSet {
    files: Vec<(PathBuf, Vec<u8>, u32)>,
}

struct Pems {
    /// Every PEM seed (certificates and keys of both sets, kubeadm-style keys when openssl
    /// is there, and the committed seeds), as bytes.
    seeds: Arc<Vec<Vec<u8>>>,
    ecdsa: PkiSet,
    rsa: PkiSet,
}

fn pki_config(cert_dir: &Path) -> PkiConfig {
    let cfg =
        phases::config::load_file(&repo().join("testdata/config/v1beta4-ecdsa-p256.yaml")).unwrap();
    PkiConfig::from_kubeadm(&cfg, cert_dir.to_path_buf())
}

fn make_set(algorithm: phases::config::EncryptionAlgorithm) -> PkiSet {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = pki_config(dir.path());
    cfg.algorithm = algorithm;
    ensure_certificates(&cfg, &CertId::ALL, false).unwrap();
    let mut files = Vec::new();
    for id in CertId::ALL {
        for (path, mode) in [
            (id.key_path(dir.path()), 0o600),
            (id.cert_path(dir.path()), 0o644),
        ] {
            let bytes = std::fs::read(&path).unwrap();
            files.push((
                path.strip_prefix(dir.path()).unwrap().to_path_buf(),
                bytes,
                mode,
            ));
        }
    }
    PkiSet { files }
}

fn pems() -> &'static Pems {
    static PEMS: OnceLock<Pems> = OnceLock::new();
    PEMS.get_or_init(|| {
        use phases::config::EncryptionAlgorithm;
        let ecdsa = make_set(EncryptionAlgorithm::EcdsaP256);
        let rsa = make_set(EncryptionAlgorithm::Rsa2048);
        let mut seeds: Vec<Vec<u8>> = Vec::new();
        for set in [&ecdsa, &rsa] {
            seeds.extend(set.files.iter().map(|(_, b, _)| b.clone()));
        }
        // kubeadm's own keys are PKCS#1 (RSA) and SEC1 (EC); rcgen writes PKCS#8.
        let dir = tempfile::tempdir().unwrap();
        for (i, key) in [&ecdsa.files[0].1, &rsa.files[0].1].into_iter().enumerate() {
            let path = dir.path().join(format!("{i}.key"));
            std::fs::write(&path, key).unwrap();
            if let Ok(out) = std::process::Command::new("openssl")
                .args(["pkey", "-traditional", "-in"])
                .arg(&path)
                .output()
            {
                if out.status.success() {
                    seeds.push(out.stdout);
                }
            }
        }
        seeds.extend(files_in(&["testdata/fuzz/pem"]).into_iter().map(|(_, b)| b));
        Pems {
            seeds: Arc::new(seeds),
            ecdsa,
            rsa,
        }
    })
}

// ---------------------------------------------------------------------------------------
// Odd values

/// Values that sit on the edges of what the parsers accept: YAML 1.1 specials, numbers
/// past every integer type, durations and versions that overflow, addresses that are not
/// quite addresses, unicode that changes length when lowercased or reads right to left.
const ODD_STRINGS: &[&str] = &[
    "",
    " ",
    "~",
    "null",
    "true",
    "yes",
    "on",
    "0",
    "-0",
    "0x1F",
    "0o777",
    "1e400",
    "-1e400",
    ".nan",
    ".inf",
    "18446744073709551616",
    "-9223372036854775809",
    "340282366920938463463374607431768211456",
    "99999999999999999999999999999999999999999999999999",
    "1.999999999999999999999999999999h",
    "9999999999999999999999999999.999999999999999999999999999999h",
    "0.999999999999999999999999999999999999999h",
    "9223372036854775807ns",
    "9223372036854775808ns",
    "2562047h47m16.854775807s",
    "2562047h47m16.854775808s",
    "2562048h",
    "1e9h",
    ".5s",
    "5.s",
    ".s",
    "1h-1m",
    "+0",
    "+",
    "0s",
    "µs",
    "1µs",
    "1μs",
    "1h1h1h1h1h1h1h1h1h1h1h1h1h1h1h1h1h1h1h1h",
    "v1.33.0",
    "v1.18446744073709551615.0",
    "v1.18446744073709551616.0",
    "v1.33.0-rc.1+build.5",
    "v1.33.0-",
    "v1",
    "v2.0.0",
    "stable",
    "::",
    "0.0.0.0",
    "::ffff:10.0.0.1",
    "fe80::1%eth0",
    "ff02::1",
    "224.0.0.1",
    "255.255.255.255",
    "10.0.0.1/8",
    "1.2.3",
    "[::1]",
    "RSA-2048",
    "RSA-4096",
    "ECDSA-P384",
    "ecdsa-p256",
    "ECDSA-P521",
    "/",
    "relative/path",
    "/etc/\u{0}",
    "a=b",
    "--flag",
    "-",
    "*.",
    "*.*.example",
    "*",
    "xn--bcher-kva.example",
    "UPPER.example",
    "a..b",
    "\u{202e}evil",
    "İ",
    "ǅ",
    "ﬃ",
    "ß",
    "\u{feff}",
    "\u{0}",
    "\u{1F600}",
    "a\u{301}",
    "\r\n",
    "\t",
    "\\",
    "'",
    "\"",
    "%",
    "{{",
    "&anchor",
    "*alias",
    "!!binary",
    "<<",
    "kubeadm.k8s.io/v1beta3",
    "kubeadm.k8s.io/v1beta4",
    "kubeadm.k8s.io/v1beta2",
    "kubeadm.k8s.io/",
    "kubeadm.k8s.io",
    "kubelet.config.k8s.io/v1beta1",
    "v1",
    "InitConfiguration",
    "JoinConfiguration",
    "ClusterConfiguration",
    "ResetConfiguration",
    "ConfigMap",
    "EtcdLearnerMode",
    "PublicKeysECDSA",
    "RootlessControlPlane",
    "ControlPlaneKubeletLocalMode",
    "WaitForAllControlPlaneComponents",
    "https://10.0.0.10:2379",
    "http://",
    "https://[::1]:2379",
    "3.5.21-0",
    "3.4.0",
    "v3.6.0-alpha.0",
    "99999999999999999999.0.0-0",
    "registry.k8s.io/etcd",
];

/// Field names the parsers know, so that a mutation lands where the code looks.
const KNOWN_KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "nodeRegistration",
    "name",
    "localAPIEndpoint",
    "advertiseAddress",
    "bindPort",
    "controlPlane",
    "etcd",
    "local",
    "external",
    "dataDir",
    "extraArgs",
    "extraEnvs",
    "value",
    "valueFrom",
    "serverCertSANs",
    "peerCertSANs",
    "imageRepository",
    "imageTag",
    "endpoints",
    "caFile",
    "certFile",
    "keyFile",
    "kubernetesVersion",
    "certificatesDir",
    "clusterName",
    "encryptionAlgorithm",
    "certificateValidityPeriod",
    "caCertificateValidityPeriod",
    "timeouts",
    "etcdAPICall",
    "controlPlaneComponentHealthCheck",
    "featureGates",
    "apiServer",
    "controllerManager",
    "scheduler",
    "timeoutForControlPlane",
    "data",
    "binaryData",
    "metadata",
    "ClusterConfiguration",
    "EtcdLearnerMode",
    "RootlessControlPlane",
    "<<",
];

/// Tokens that mean something to a YAML reader, for byte-level insertion.
const YAML_TOKENS: &[&str] = &[
    ": ",
    "- ",
    "\n",
    "\n  ",
    "\n- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "!!str ",
    "!!int ",
    "!!binary ",
    "!!map ",
    "!custom ",
    "? ",
    "---\n",
    "...\n",
    "'",
    "\"",
    "#",
    "|",
    ">-",
    "\t",
    "%YAML 1.1\n",
    "<<: *a\n",
    "\u{feff}",
    "\r",
    "\0",
    "\\u0000",
    "~",
];

fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(ODD_STRINGS).prop_map(str::to_string),
        2 => "\\PC{0,24}",
        1 => "[0-9]{1,60}(\\.[0-9]{0,60})?(ns|us|µs|ms|s|m|h|d|)",
        1 => (prop::sample::select(ODD_STRINGS), 2usize..2000)
            .prop_map(|(s, n)| if s.is_empty() { "x".repeat(n) } else { s.repeat(n) }),
    ]
}

fn leaf_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(|n| Value::Number(n.into())),
        1 => any::<u64>().prop_map(|n| Value::Number(n.into())),
        1 => any::<f64>().prop_map(|n| Value::Number(n.into())),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e300])
            .prop_map(|n| Value::Number(n.into())),
        6 => odd_string().prop_map(Value::String),
    ]
}

fn arb_key() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => prop::sample::select(KNOWN_KEYS).prop_map(|k| Value::String(k.to_string())),
        2 => odd_string().prop_map(Value::String),
        1 => leaf_value(),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    leaf_value().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Sequence),
            prop::collection::vec((arb_key(), inner.clone()), 0..6)
                .prop_map(|kvs| Value::Mapping(kvs.into_iter().collect::<Mapping>())),
            ("![a-z]{1,6}", inner).prop_map(|(tag, value)| {
                Value::Tagged(Box::new(TaggedValue {
                    tag: Tag::new(tag),
                    value,
                }))
            }),
        ]
    })
}

// ---------------------------------------------------------------------------------------
// Mutations of YAML trees

#[derive(Debug, Clone)]
enum TreeOp {
    /// Replaces the n-th node (pre-order, all documents) with a value.
    Replace { node: Index, value: Value },
    /// Sets a field of the n-th mapping, known fields first.
    SetField {
        map: Index,
        key: Value,
        value: Value,
    },
    /// Removes an entry of the n-th mapping or sequence.
    Remove { node: Index, entry: Index },
    /// Wraps the n-th node in `depth` sequences or mappings.
    Nest {
        node: Index,
        depth: usize,
        seq: bool,
    },
    /// Appends a document of another fixture (a second ClusterConfiguration, a stray kind).
    AppendDocument { seed: Index, doc: Index },
}

fn tree_op() -> impl Strategy<Value = TreeOp> {
    prop_oneof![
        4 => (any::<Index>(), arb_value()).prop_map(|(node, value)| TreeOp::Replace { node, value }),
        6 => (any::<Index>(), arb_key(), arb_value())
            .prop_map(|(map, key, value)| TreeOp::SetField { map, key, value }),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(node, entry)| TreeOp::Remove { node, entry }),
        // Around serde_yaml's recursion limit (128); deeper nesting is made as text by
        // pathological_yaml, as building it as a Value would recurse as deep in the test.
        1 => (any::<Index>(), prop_oneof![1usize..8, 120usize..136], any::<bool>())
            .prop_map(|(node, depth, seq)| TreeOp::Nest { node, depth, seq }),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(seed, doc)| TreeOp::AppendDocument { seed, doc }),
    ]
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Sequence(s) => s.iter().map(count_nodes).sum(),
        Value::Mapping(m) => m.values().map(count_nodes).sum(),
        Value::Tagged(t) => count_nodes(&t.value),
        _ => 0,
    }
}

fn nth_node(v: &mut Value, n: usize) -> Option<&mut Value> {
    fn go<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
        if *n == 0 {
            return Some(v);
        }
        *n -= 1;
        match v {
            Value::Sequence(s) => s.iter_mut().find_map(|c| go(c, n)),
            Value::Mapping(m) => m.values_mut().find_map(|c| go(c, n)),
            Value::Tagged(t) => go(&mut t.value, n),
            _ => None,
        }
    }
    go(v, &mut { n })
}

/// The n-th node that is a mapping, counting only mappings.
fn nth_mapping(v: &mut Value, n: usize) -> Option<&mut Mapping> {
    fn count(v: &Value) -> usize {
        match v {
            Value::Sequence(s) => s.iter().map(count).sum(),
            Value::Mapping(m) => 1 + m.values().map(count).sum::<usize>(),
            Value::Tagged(t) => count(&t.value),
            _ => 0,
        }
    }
    fn go<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Mapping> {
        match v {
            Value::Sequence(s) => s.iter_mut().find_map(|c| go(c, n)),
            Value::Mapping(m) => {
                if *n == 0 {
                    return Some(m);
                }
                *n -= 1;
                m.values_mut().find_map(|c| go(c, n))
            }
            Value::Tagged(t) => go(&mut t.value, n),
            _ => None,
        }
    }
    let total = count(v);
    if total == 0 {
        return None;
    }
    go(v, &mut (n % total))
}

fn nest(value: Value, depth: usize, seq: bool) -> Value {
    (0..depth).fold(value, |v, _| {
        if seq {
            Value::Sequence(vec![v])
        } else {
            let mut m = Mapping::new();
            m.insert(Value::String("etcd".into()), v);
            Value::Mapping(m)
        }
    })
}

fn split_documents(text: &str) -> Option<Vec<Value>> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(Value::deserialize)
        .collect::<Result<Vec<_>, _>>()
        .ok()
}

/// Applies tree operations to every document of `text`; text that does not parse is left
/// to the byte mutations.
fn apply_tree_ops(text: &str, ops: &[TreeOp], seeds: &[String]) -> String {
    if ops.is_empty() {
        return text.to_string();
    }
    let Some(docs) = split_documents(text) else {
        return text.to_string();
    };
    let mut root = Value::Sequence(docs);
    for op in ops {
        let total = count_nodes(&root);
        match op {
            TreeOp::Replace { node, value } => {
                // Node 0 is the list of documents itself; replacing it keeps one document.
                if let Some(n) = nth_node(&mut root, node.index(total)) {
                    *n = value.clone();
                }
            }
            TreeOp::SetField { map, key, value } => {
                if let Some(m) = nth_mapping(&mut root, map.index(total)) {
                    m.insert(key.clone(), value.clone());
                }
            }
            TreeOp::Remove { node, entry } => match nth_node(&mut root, node.index(total)) {
                Some(Value::Mapping(m)) if !m.is_empty() => {
                    let key = m.keys().nth(entry.index(m.len())).cloned().unwrap();
                    m.remove(&key);
                }
                Some(Value::Sequence(s)) if !s.is_empty() => {
                    s.remove(entry.index(s.len()));
                }
                _ => {}
            },
            TreeOp::Nest { node, depth, seq } => {
                if let Some(n) = nth_node(&mut root, node.index(total)) {
                    *n = nest(std::mem::take(n), *depth, *seq);
                }
            }
            TreeOp::AppendDocument { seed, doc } => {
                let other = &seeds[seed.index(seeds.len())];
                if let (Some(docs), Value::Sequence(root)) = (split_documents(other), &mut root) {
                    if let Some(i) = pick(doc, docs.len()) {
                        root.push(docs[i].clone());
                    }
                }
            }
        }
    }
    let docs = match root {
        Value::Sequence(docs) => docs,
        other => vec![other],
    };
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        // A value serde_yaml cannot write (it refuses very little) keeps the input.
        let Ok(text) = serde_yaml::to_string(doc) else {
            return text.to_string();
        };
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&text);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Mutations of bytes

#[derive(Debug, Clone)]
enum ByteOp {
    Flip {
        at: Index,
        mask: u8,
    },
    Truncate {
        at: Index,
    },
    Delete {
        at: Index,
        len: u8,
    },
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    Token {
        at: Index,
        token: &'static str,
    },
    /// Copies a range of the input elsewhere (duplicate keys, repeated blocks).
    Duplicate {
        from: Index,
        len: u16,
        at: Index,
    },
    /// Inserts a range of another fixture.
    Splice {
        seed: Index,
        from: Index,
        len: u16,
        at: Index,
    },
    /// Moves a whole line left or right: YAML's structure is its indentation.
    Indent {
        line: Index,
        delta: i8,
    },
}

fn byte_op() -> impl Strategy<Value = ByteOp> {
    prop_oneof![
        3 => (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| ByteOp::Flip { at, mask }),
        1 => any::<Index>().prop_map(|at| ByteOp::Truncate { at }),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, len)| ByteOp::Delete { at, len }),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| ByteOp::Insert { at, bytes }),
        3 => (any::<Index>(), prop::sample::select(YAML_TOKENS))
            .prop_map(|(at, token)| ByteOp::Token { at, token }),
        1 => (any::<Index>(), any::<u16>(), any::<Index>())
            .prop_map(|(from, len, at)| ByteOp::Duplicate { from, len, at }),
        2 => (any::<Index>(), any::<Index>(), any::<u16>(), any::<Index>())
            .prop_map(|(seed, from, len, at)| ByteOp::Splice { seed, from, len, at }),
        2 => (any::<Index>(), -4i8..=4).prop_map(|(line, delta)| ByteOp::Indent { line, delta }),
    ]
}

fn apply_byte_ops(mut b: Vec<u8>, ops: &[ByteOp], seeds: &[&[u8]]) -> Vec<u8> {
    for op in ops {
        let len = b.len();
        match op {
            ByteOp::Flip { at, mask } => {
                if let Some(i) = pick(at, len) {
                    b[i] ^= mask;
                }
            }
            ByteOp::Truncate { at } => b.truncate(at.index(len + 1)),
            ByteOp::Delete { at, len: n } => {
                let i = at.index(len + 1);
                let end = (i + *n as usize).min(len);
                b.drain(i..end);
            }
            ByteOp::Insert { at, bytes } => {
                let i = at.index(len + 1);
                b.splice(i..i, bytes.iter().copied());
            }
            ByteOp::Token { at, token } => {
                let i = at.index(len + 1);
                b.splice(i..i, token.bytes());
            }
            ByteOp::Duplicate { from, len: n, at } => {
                if let Some(start) = pick(from, len) {
                    let end = (start + *n as usize % 512 + 1).min(len);
                    let chunk = b[start..end].to_vec();
                    let i = at.index(len + 1);
                    b.splice(i..i, chunk);
                }
            }
            ByteOp::Splice {
                seed,
                from,
                len: n,
                at,
            } => {
                let other = seeds[seed.index(seeds.len())];
                if let Some(start) = pick(from, other.len()) {
                    let end = (start + *n as usize % 2048 + 1).min(other.len());
                    let i = at.index(len + 1);
                    b.splice(i..i, other[start..end].iter().copied());
                }
            }
            ByteOp::Indent { line, delta } => {
                let starts: Vec<usize> = std::iter::once(0)
                    .chain(
                        b.iter()
                            .enumerate()
                            .filter(|(_, c)| **c == b'\n')
                            .map(|(i, _)| i + 1),
                    )
                    .filter(|i| *i < len)
                    .collect();
                if let Some(l) = pick(line, starts.len()) {
                    let s = starts[l];
                    if *delta >= 0 {
                        b.splice(s..s, std::iter::repeat_n(b' ', *delta as usize));
                    } else {
                        let spaces = b[s..].iter().take_while(|c| **c == b' ').count();
                        b.drain(s..s + spaces.min(delta.unsigned_abs() as usize));
                    }
                }
            }
        }
    }
    b
}

/// An input and how it was made: the recipe is what shrinks, the input is what a
/// failure report must show.
#[derive(Clone)]
struct Case<T, R> {
    input: T,
    recipe: R,
}

impl<R: fmt::Debug> fmt::Debug for Case<String, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "input:\n{}\n(as Rust: {:?})\nrecipe: {:?}",
            self.input, self.input, self.recipe
        )
    }
}

impl<R: fmt::Debug> fmt::Debug for Case<Vec<u8>, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "input:\n{}\n(bytes: {:?})\nrecipe: {:?}",
            String::from_utf8_lossy(&self.input),
            self.input,
            self.recipe
        )
    }
}

/// Hand-made YAML that stresses the reader itself rather than the model.
fn pathological_yaml() -> impl Strategy<Value = String> {
    let header = prop::sample::select(vec![
        "",
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n",
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n",
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n",
    ]);
    (header, prop::sample::select(KNOWN_KEYS), 1usize..3000, 0u8..6).prop_map(
        |(header, key, depth, style)| {
            let body = match style {
                0 => format!("{key}: {}{}\n", "[".repeat(depth), "]".repeat(depth)),
                1 => format!("{key}: {}x{}\n", "{a: ".repeat(depth), "}".repeat(depth)),
                2 => {
                    let mut s = String::new();
                    for i in 0..depth.min(400) {
                        s.push_str(&" ".repeat(i));
                        s.push_str(key);
                        s.push_str(":\n");
                    }
                    s
                }
                3 => {
                    // Aliases that expand exponentially ("billion laughs").
                    let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
                    for i in 1..(depth % 12 + 2) {
                        s.push_str(&format!(
                            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                            p = i - 1
                        ));
                    }
                    s.push_str(&format!("{key}: *a{}\n", depth % 12 + 1));
                    s
                }
                4 => format!("{key}: {}\n", "- ".repeat(depth.min(2000))),
                _ => format!("{key}: &x\n  {key}: *x\n<<: *x\n"),
            };
            format!("{header}{body}")
        },
    )
}

/// Zero to three operations, one most often: every further mutation makes it likelier
/// that the input stops at the first syntax check.
fn few<S: Strategy + 'static>(op: S) -> BoxedStrategy<Vec<S::Value>>
where
    S::Value: Clone,
{
    let op = Arc::new(op);
    prop_oneof![
        2 => Just(vec![]),
        4 => prop::collection::vec(op.clone(), 1..=1),
        2 => prop::collection::vec(op.clone(), 2..=2),
        1 => prop::collection::vec(op, 3..=3),
    ]
    .boxed()
}

type YamlRecipe = (usize, Vec<TreeOp>, Vec<ByteOp>);

/// Structure-aware YAML inputs from `seeds`: tree mutations then byte mutations, plus
/// some pathological documents.
fn yaml_input(seeds: Arc<Vec<String>>) -> BoxedStrategy<Case<String, YamlRecipe>> {
    let n = seeds.len();
    let mutated = (
        0..n,
        few(tree_op()),
        // Byte mutations mostly end at the YAML reader; the tree mutations go further.
        prop_oneof![1 => Just(vec![]), 1 => few(byte_op())],
    )
        .prop_map(move |(seed, tree_ops, byte_ops)| {
            let text = apply_tree_ops(&seeds[seed], &tree_ops, &seeds);
            let byte_seeds: Vec<&[u8]> = seeds.iter().map(|s| s.as_bytes()).collect();
            let bytes = apply_byte_ops(text.into_bytes(), &byte_ops, &byte_seeds);
            Case {
                input: String::from_utf8_lossy(&bytes).into_owned(),
                recipe: (seed, tree_ops, byte_ops),
            }
        });
    prop_oneof![
        12 => mutated,
        1 => pathological_yaml().prop_map(|input| Case { input, recipe: (0, vec![], vec![]) }),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(|b| Case {
            input: String::from_utf8_lossy(&b).into_owned(),
            recipe: (0, vec![], vec![]),
        }),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------
// Mutations of PEM

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A PEM body: base64 broken into lines.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
}

/// The first PEM block of `pem`: label and DER.
fn pem_block(pem: &[u8]) -> Option<(String, Vec<u8>)> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end = body.find("-----END ")?;
    Some((label, base64_decode(&body[..end])?))
}

/// A DER element: where it starts, where its content starts, where it ends.
#[derive(Debug, Clone, Copy)]
struct Tlv {
    start: usize,
    len_at: usize,
    content: usize,
    end: usize,
}

/// Every element of `der`, pre-order, descending into constructed elements and into BIT
/// and OCTET STRINGs that hold DER (extensions, the public key).
fn tlvs(der: &[u8]) -> Vec<Tlv> {
    fn parse_one(der: &[u8], at: usize) -> Option<Tlv> {
        let mut i = at;
        let tag = *der.get(i)?;
        i += 1;
        if tag & 0x1f == 0x1f {
            while *der.get(i)? & 0x80 != 0 {
                i += 1;
            }
            i += 1;
        }
        let len_at = i;
        let first = *der.get(i)?;
        i += 1;
        let len = if first < 0x80 {
            first as usize
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for _ in 0..n {
                len = len << 8 | *der.get(i)? as usize;
                i += 1;
            }
            len
        };
        let end = i.checked_add(len)?;
        (end <= der.len()).then_some(Tlv {
            start: at,
            len_at,
            content: i,
            end,
        })
    }
    fn walk(der: &[u8], mut at: usize, end: usize, out: &mut Vec<Tlv>, depth: usize) {
        while at < end && out.len() < 4096 && depth < 32 {
            let Some(t) = parse_one(&der[..end], at) else {
                return;
            };
            out.push(t);
            let tag = der[t.start];
            if tag & 0x20 != 0 || (tag == 0x04 && t.content < t.end) {
                walk(der, t.content, t.end, out, depth + 1);
            } else if tag == 0x03 && t.content + 1 < t.end {
                walk(der, t.content + 1, t.end, out, depth + 1);
            }
            at = t.end;
        }
    }
    let mut out = Vec::new();
    walk(der, 0, der.len(), &mut out, 0);
    out
}

fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        std::iter::once(0x80 | bytes.len() as u8)
            .chain(bytes)
            .collect()
    }
}

#[derive(Debug, Clone)]
enum LengthEdit {
    Plus(u8),
    Minus(u8),
    Zero,
    /// BER's indefinite form, which DER forbids.
    Indefinite,
    /// A long form that claims far more than there is.
    Huge,
    /// A long form with more length bytes than any parser supports.
    TooManyBytes,
    /// The right length in a non-minimal long form, which DER forbids.
    NonMinimal,
}

#[derive(Debug, Clone)]
enum DerOp {
    Flip {
        at: Index,
        mask: u8,
    },
    Truncate {
        at: Index,
    },
    Length {
        tlv: Index,
        edit: LengthEdit,
    },
    Tag {
        tlv: Index,
        tag: u8,
    },
    Drop {
        tlv: Index,
    },
    Duplicate {
        tlv: Index,
    },
    /// Replaces an element with one of another certificate or key.
    Graft {
        tlv: Index,
        seed: Index,
        from: Index,
    },
    /// Replaces an element's content with random bytes or a huge run.
    Content {
        tlv: Index,
        bytes: Vec<u8>,
        repeat: u16,
    },
}

fn der_op() -> impl Strategy<Value = DerOp> {
    let edit = prop_oneof![
        (1u8..=8).prop_map(LengthEdit::Plus),
        (1u8..=8).prop_map(LengthEdit::Minus),
        Just(LengthEdit::Zero),
        Just(LengthEdit::Indefinite),
        Just(LengthEdit::Huge),
        Just(LengthEdit::TooManyBytes),
        Just(LengthEdit::NonMinimal),
    ];
    prop_oneof![
        3 => (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| DerOp::Flip { at, mask }),
        1 => any::<Index>().prop_map(|at| DerOp::Truncate { at }),
        3 => (any::<Index>(), edit).prop_map(|(tlv, edit)| DerOp::Length { tlv, edit }),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(tlv, tag)| DerOp::Tag { tlv, tag }),
        1 => any::<Index>().prop_map(|tlv| DerOp::Drop { tlv }),
        1 => any::<Index>().prop_map(|tlv| DerOp::Duplicate { tlv }),
        2 => (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(tlv, seed, from)| DerOp::Graft { tlv, seed, from }),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 0..12), 0u16..3000)
            .prop_map(|(tlv, bytes, repeat)| DerOp::Content { tlv, bytes, repeat }),
    ]
}

fn apply_der_ops(mut der: Vec<u8>, ops: &[DerOp], seed_ders: &[Vec<u8>]) -> Vec<u8> {
    for op in ops {
        let elements = tlvs(&der);
        let element = |i: &Index| pick(i, elements.len()).map(|n| elements[n]);
        match op {
            DerOp::Flip { at, mask } => {
                if let Some(i) = pick(at, der.len()) {
                    der[i] ^= mask;
                }
            }
            DerOp::Truncate { at } => der.truncate(at.index(der.len() + 1)),
            DerOp::Length { tlv, edit } => {
                if let Some(t) = element(tlv) {
                    let len = t.end - t.content;
                    let new = match edit {
                        LengthEdit::Plus(n) => der_length(len + *n as usize),
                        LengthEdit::Minus(n) => der_length(len.saturating_sub(*n as usize)),
                        LengthEdit::Zero => vec![0],
                        LengthEdit::Indefinite => vec![0x80],
                        LengthEdit::Huge => vec![0x84, 0x7f, 0xff, 0xff, 0xff],
                        LengthEdit::TooManyBytes => vec![0x89, 1, 0, 0, 0, 0, 0, 0, 0, 0],
                        LengthEdit::NonMinimal => {
                            let mut v = vec![0x84];
                            v.extend((len as u32).to_be_bytes());
                            v
                        }
                    };
                    der.splice(t.len_at..t.content, new);
                }
            }
            DerOp::Tag { tlv, tag } => {
                if let Some(t) = element(tlv) {
                    der[t.start] = *tag;
                }
            }
            DerOp::Drop { tlv } => {
                if let Some(t) = element(tlv) {
                    der.drain(t.start..t.end);
                }
            }
            DerOp::Duplicate { tlv } => {
                if let Some(t) = element(tlv) {
                    let copy = der[t.start..t.end].to_vec();
                    der.splice(t.end..t.end, copy);
                }
            }
            DerOp::Graft { tlv, seed, from } => {
                let other = &seed_ders[seed.index(seed_ders.len())];
                let others = tlvs(other);
                if let (Some(t), Some(o)) = (element(tlv), pick(from, others.len())) {
                    let o = others[o];
                    der.splice(t.start..t.end, other[o.start..o.end].iter().copied());
                }
            }
            DerOp::Content { tlv, bytes, repeat } => {
                if let Some(t) = element(tlv) {
                    let content: Vec<u8> = if bytes.is_empty() {
                        vec![0xff; *repeat as usize]
                    } else {
                        bytes.repeat((*repeat as usize % 64).max(1))
                    };
                    let mut replacement = der[t.start..t.len_at].to_vec();
                    replacement.extend(der_length(content.len()));
                    replacement.extend(content);
                    der.splice(t.start..t.end, replacement);
                }
            }
        }
    }
    der
}

const PEM_LABELS: &[&str] = &[
    "CERTIFICATE",
    "PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "PUBLIC KEY",
    "ENCRYPTED PRIVATE KEY",
    "X509 CRL",
    "CERTIFICATE REQUEST",
    "TRUSTED CERTIFICATE",
    "",
    "CERTIFICATE ",
    "certificate",
];

#[derive(Debug, Clone)]
struct Armor {
    /// `None` keeps the block's own label.
    label: Option<&'static str>,
    /// A different label on the END line.
    end_label: Option<&'static str>,
    /// 0: one line.
    width: usize,
    crlf: bool,
    /// Text before the block, like `openssl x509 -text` prints.
    preamble: Option<String>,
    /// Further blocks of other seeds after this one (a chain, a key and its certificate).
    more: Vec<Index>,
}

fn armor() -> impl Strategy<Value = Armor> {
    (
        prop::option::weighted(0.2, prop::sample::select(PEM_LABELS)),
        prop::option::weighted(0.05, prop::sample::select(PEM_LABELS)),
        prop_oneof![8 => Just(64usize), 1 => Just(0usize), 1 => 1usize..100],
        prop::bool::weighted(0.1),
        prop::option::weighted(0.1, "\\PC{0,40}\n"),
        prop::collection::vec(any::<Index>(), 0..2),
    )
        .prop_map(|(label, end_label, width, crlf, preamble, more)| Armor {
            label,
            end_label,
            width,
            crlf,
            preamble,
            more,
        })
}

fn encode_pem(label: &str, end_label: &str, der: &[u8], width: usize, crlf: bool) -> String {
    let nl = if crlf { "\r\n" } else { "\n" };
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----{nl}");
    if width == 0 {
        out.push_str(&b64);
        out.push_str(nl);
    } else {
        for line in b64.as_bytes().chunks(width) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push_str(nl);
        }
    }
    out.push_str(&format!("-----END {end_label}-----{nl}"));
    out
}

type PemRecipe = (usize, Vec<DerOp>, Armor, Vec<ByteOp>);

/// PEM inputs: a seed's DER mutated element-wise, re-armored, then byte-mutated.
fn pem_input() -> BoxedStrategy<Case<Vec<u8>, PemRecipe>> {
    let seeds = pems().seeds.clone();
    let blocks: Arc<Vec<(String, Vec<u8>)>> = Arc::new(
        seeds
            .iter()
            .map(|s| pem_block(s).unwrap_or_else(|| ("CERTIFICATE".into(), s.clone())))
            .collect(),
    );
    let n = seeds.len();
    let mutated = (
        0..n,
        few(der_op()),
        armor(),
        prop_oneof![3 => Just(vec![]), 1 => few(byte_op())],
    )
        .prop_map(move |(seed, der_ops, armor, byte_ops)| {
            let ders: Vec<Vec<u8>> = blocks.iter().map(|(_, d)| d.clone()).collect();
            let (label, der) = &blocks[seed];
            let der = apply_der_ops(der.clone(), &der_ops, &ders);
            let label = armor.label.unwrap_or(label.as_str());
            let end_label = armor.end_label.unwrap_or(label);
            let mut text = armor.preamble.clone().unwrap_or_default();
            text.push_str(&encode_pem(label, end_label, &der, armor.width, armor.crlf));
            for more in &armor.more {
                text.push_str(&String::from_utf8_lossy(&seeds[more.index(n)]));
            }
            let byte_seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
            let input = apply_byte_ops(text.into_bytes(), &byte_ops, &byte_seeds);
            Case {
                input,
                recipe: (seed, der_ops, armor, byte_ops),
            }
        });
    let none = || {
        (
            0,
            vec![],
            Armor {
                label: None,
                end_label: None,
                width: 64,
                crlf: false,
                preamble: None,
                more: vec![],
            },
            vec![],
        )
    };
    prop_oneof![
        14 => mutated,
        1 => prop::collection::vec(any::<u8>(), 0..512).prop_map(move |input| Case { input, recipe: none() }),
        1 => (prop::sample::select(PEM_LABELS), "[A-Za-z0-9+/=\\n ]{0,200}").prop_map(move |(l, body)| Case {
            input: format!("-----BEGIN {l}-----\n{body}\n-----END {l}-----\n").into_bytes(),
            recipe: none(),
        }),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------
// Targets: the calls a property makes, shared with the crasher replay

fn fuzz_config(text: &str) {
    let Ok(cfg) = load_str(text, None) else {
        return;
    };
    // What a loaded configuration feeds: certificate profiles and the etcd Pod.
    let pki = PkiConfig::from_kubeadm(&cfg, PathBuf::from("/nonexistent/pki"));
    for id in CertId::ALL {
        let _ = phases::pki::Profile::for_cert(id, &pki);
    }
    if let Ok(pod) = phases::manifest::etcd_pod(
        &cfg,
        &phases::manifest::ManifestOptions::first_member(PathBuf::from("/etc/kubernetes/pki")),
    ) {
        // The kubelet must be able to read what is written for it.
        if let Ok(yaml) = phases::manifest::render_yaml(&pod) {
            if let Err(e) = serde_yaml::from_str::<Value>(&yaml) {
                panic!("the rendered manifest does not parse ({e}):\n{yaml}");
            }
        }
    }
}

const TARGET_VERSIONS: &[&str] = &[
    "v1.33.0",
    "v1.33.0",
    "v1.33.0",
    "v1.29.0",
    "v1.31.9",
    "v1.32.0",
    "v1.34.1",
    "v1.36.0",
    "v1.99.0",
    "1.33.0",
    "v1.0.0",
    "v0.1.0",
    "v2.0.0",
    "v1.33",
    "",
    " ",
    "v1.33.0-rc.1",
    "v1.18446744073709551615.0",
];

fn migrate_options() -> impl Strategy<Value = MigrateOptions> {
    (
        prop::sample::select(TARGET_VERSIONS),
        prop::sample::select(vec![
            None,
            Some("v1beta4"),
            Some("kubeadm.k8s.io/v1beta3"),
            Some("v9"),
        ]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(target, api, learner, force)| {
            let mut opts = MigrateOptions::new(target);
            opts.api_version = api.map(str::to_string);
            opts.enable_learner_mode = learner;
            opts.force = force;
            opts
        })
}

/// A migration that succeeds must produce YAML that reads back, and migrating that
/// again must change nothing (the module's documented idempotence).
fn fuzz_migration(yaml: &str, opts: &MigrateOptions) -> Result<(), TestCaseError> {
    let Ok((out, _, _)) = migrate_cluster_configuration(yaml, opts) else {
        return Ok(());
    };
    prop_assert!(
        serde_yaml::from_str::<Value>(&out).is_ok(),
        "the migrated document does not parse:\n{out}"
    );
    let again = migrate_cluster_configuration(&out, opts);
    prop_assert!(
        matches!(&again, Ok((o, _, _)) if *o == out),
        "a second migration changed the result:\n{out}\nagain: {again:?}"
    );
    Ok(())
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

/// The offline ConfigMap path, from a file as `kubectl get -o yaml` writes it.
fn fuzz_configmap_file(text: &str, opts: &MigrateOptions) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("kubeadm-config.yaml");
    std::fs::write(&from, text).unwrap();
    let source = Source::File {
        from: from.clone(),
        to: None,
    };
    let Ok(report) = block_on(migrate_feature_gates(&source, opts)) else {
        return Ok(());
    };
    if let Some(out) = report.output {
        prop_assert!(
            serde_yaml::from_str::<Value>(&out).is_ok(),
            "the migrated ConfigMap does not parse:\n{out}"
        );
        std::fs::write(&from, &out).unwrap();
        let again = block_on(migrate_feature_gates(&source, opts));
        prop_assert!(
            matches!(&again, Ok(r) if !r.changed),
            "migrating the migrated ConfigMap again changed it:\n{out}\nagain: {again:?}"
        );
    }
    Ok(())
}

fn fuzz_pem(bytes: &[u8]) {
    if let Ok(description) = describe_certificate(bytes) {
        let _ = serde_yaml::to_string(&description);
    }
}

// ---------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config(3072, regressions!("config_parser")))]

    /// `load_str` on mutated kubeadm configurations, and what a loaded configuration feeds.
    #[test]
    fn config_parser_never_panics(case in yaml_input(corpus().configs.clone())) {
        fuzz_config(&case.input);
    }
}

proptest! {
    #![proptest_config(config(4096, regressions!("migration")))]

    #[test]
    fn migration_never_panics_and_is_idempotent(
        case in yaml_input(corpus().cluster_configurations.clone()),
        opts in migrate_options(),
    ) {
        fuzz_migration(&case.input, &opts)?;
    }
}

proptest! {
    #![proptest_config(config(2048, regressions!("configmap_file")))]

    #[test]
    fn configmap_file_migration_never_panics(
        case in yaml_input(corpus().configmaps.clone()),
        opts in migrate_options(),
    ) {
        fuzz_configmap_file(&case.input, &opts)?;
    }
}

fn duration_text() -> impl Strategy<Value = String> {
    let segment = (
        "[0-9]{0,45}",
        prop::option::of("\\.[0-9]{0,45}"),
        prop::sample::select(vec![
            "ns", "us", "µs", "μs", "ms", "s", "m", "h", "", "d", "H", "sm",
        ]),
    )
        .prop_map(|(int, frac, unit)| format!("{int}{}{unit}", frac.unwrap_or_default()));
    prop_oneof![
        8 => (prop::sample::select(vec!["", "", "", "+", "-", " "]), prop::collection::vec(segment, 1..5))
            .prop_map(|(sign, segs)| format!("{sign}{}", segs.concat())),
        2 => odd_string(),
    ]
}

proptest! {
    #![proptest_config(config(16384, regressions!("go_duration")))]

    /// Go durations: no panic, and what parses prints back to the same duration.
    #[test]
    fn go_duration_parses_without_panic_and_round_trips(text in duration_text()) {
        if let Ok(d) = GoDuration::parse(&text) {
            let printed = d.to_string();
            prop_assert_eq!(GoDuration::parse(&printed).ok(), Some(d), "{} printed as {}", text, printed);
        }
    }
}

proptest! {
    #![proptest_config(config(16384, regressions!("describe_certificate")))]

    #[test]
    fn describe_certificate_never_panics(case in pem_input()) {
        fuzz_pem(&case.input);
    }
}

/// What to do to one file of a good certificate directory.
#[derive(Debug, Clone)]
enum FileEdit {
    Remove,
    Empty,
    /// Mutated PEM bytes.
    Replace(Vec<u8>),
    /// Another file of the directory, or of the other directory (RSA for ECDSA, ...).
    CopyFrom {
        other_set: bool,
        file: Index,
    },
    /// A directory where the file should be.
    Directory,
    /// A symlink that loops.
    SymlinkLoop,
}

fn file_edit() -> impl Strategy<Value = FileEdit> {
    prop_oneof![
        2 => Just(FileEdit::Remove),
        1 => Just(FileEdit::Empty),
        8 => pem_input().prop_map(|c| FileEdit::Replace(c.input)),
        3 => (any::<bool>(), any::<Index>()).prop_map(|(other_set, file)| FileEdit::CopyFrom { other_set, file }),
        1 => Just(FileEdit::Directory),
        1 => Just(FileEdit::SymlinkLoop),
    ]
}

#[derive(Debug, Clone)]
struct DirCase {
    rsa: bool,
    edits: Vec<(Index, FileEdit)>,
    /// Which certificates to ask for, as bits over `CertId::ALL`; never none.
    selected: u8,
    dry_run: bool,
}

fn dir_case() -> impl Strategy<Value = DirCase> {
    (
        prop::bool::weighted(0.3),
        prop::collection::vec((any::<Index>(), file_edit()), 1..4),
        prop_oneof![3 => Just(0b11111u8), 1 => 1u8..32],
        any::<bool>(),
    )
        .prop_map(|(rsa, edits, selected, dry_run)| DirCase {
            rsa,
            edits,
            selected,
            dry_run,
        })
}

/// Lays out a certificate directory: a good one with `case.edits` applied.
fn lay_out(dir: &Path, case: &DirCase) {
    use std::os::unix::fs::PermissionsExt;
    let pems = pems();
    let (set, other) = if case.rsa {
        (&pems.rsa, &pems.ecdsa)
    } else {
        (&pems.ecdsa, &pems.rsa)
    };
    std::fs::create_dir_all(dir.join("etcd")).unwrap();
    for (rel, bytes, mode) in &set.files {
        let path = dir.join(rel);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    for (file, edit) in &case.edits {
        let (rel, _, _) = &set.files[file.index(set.files.len())];
        let path = dir.join(rel);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&path);
        match edit {
            FileEdit::Remove => {}
            FileEdit::Empty => std::fs::write(&path, b"").unwrap(),
            FileEdit::Replace(bytes) => std::fs::write(&path, bytes).unwrap(),
            FileEdit::CopyFrom { other_set, file } => {
                let from = if *other_set { other } else { set };
                std::fs::write(&path, &from.files[file.index(from.files.len())].1).unwrap();
            }
            FileEdit::Directory => std::fs::create_dir(&path).unwrap(),
            FileEdit::SymlinkLoop => std::os::unix::fs::symlink(&path, &path).unwrap(),
        }
    }
}

/// Every regular file under `dir` with its bytes.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn fuzz_cert_dir(case: &DirCase) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    lay_out(&dir, case);
    let before = contents(&dir);
    let selected: Vec<CertId> = CertId::ALL
        .into_iter()
        .enumerate()
        .filter(|(i, _)| case.selected & (1 << i) != 0)
        .map(|(_, id)| id)
        .collect();
    let _ = ensure_certificates(&pki_config(&dir), &selected, case.dry_run);
    // "Nothing of the user's is ever overwritten."
    let after = contents(&dir);
    for (path, bytes) in &before {
        let now = after.iter().find(|(p, _)| p == path).map(|(_, b)| b);
        prop_assert_eq!(
            now,
            Some(bytes),
            "{} was changed or removed",
            path.display()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1024, regressions!("cert_dir")))]

    /// `ensure_certificates` over a certificate directory with damaged, swapped or odd
    /// files: an error or a success, never a panic, and no existing file touched.
    #[test]
    fn ensure_certificates_never_panics_on_a_damaged_directory(case in dir_case()) {
        fuzz_cert_dir(&case)?;
    }
}

// ---------------------------------------------------------------------------------------
// Replay of inputs that once panicked

/// Inputs that made a target panic, byte for byte, in testdata/fuzz/crashers/<target>/.
#[test]
fn known_crashers_do_not_panic() {
    let opts = MigrateOptions::new("v1.33.0");
    let mut replayed = 0;
    for (path, bytes) in files_in(&["testdata/fuzz/crashers/config"]) {
        eprintln!("replaying {}", path.display());
        fuzz_config(&String::from_utf8_lossy(&bytes));
        replayed += 1;
    }
    for (path, bytes) in files_in(&["testdata/fuzz/crashers/go-duration"]) {
        eprintln!("replaying {}", path.display());
        let text = String::from_utf8_lossy(&bytes);
        let _ = GoDuration::parse(text.trim_end_matches('\n'));
        replayed += 1;
    }
    for (path, bytes) in files_in(&["testdata/fuzz/crashers/cluster-configuration"]) {
        eprintln!("replaying {}", path.display());
        fuzz_migration(&String::from_utf8_lossy(&bytes), &opts).unwrap();
        replayed += 1;
    }
    for (path, bytes) in files_in(&["testdata/fuzz/crashers/configmap"]) {
        eprintln!("replaying {}", path.display());
        fuzz_configmap_file(&String::from_utf8_lossy(&bytes), &opts).unwrap();
        replayed += 1;
    }
    for (path, bytes) in files_in(&["testdata/fuzz/crashers/pem"]) {
        eprintln!("replaying {}", path.display());
        fuzz_pem(&bytes);
        replayed += 1;
    }
    eprintln!("{replayed} crashers replayed");
}

/// The generators must reach past the first syntax check, or the fuzzing is shallow:
/// a sample of mutated inputs must contain loadable configurations and parseable
/// certificates as well as refused ones.
#[test]
fn generators_reach_past_the_syntax_checks() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let configs = yaml_input(corpus().configs.clone());
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..300 {
        let case = configs.new_tree(&mut runner).unwrap().current();
        let outcome = match load_str(&case.input, None) {
            Ok(_) => "Ok".to_string(),
            Err(e) => format!("{e:?}")
                .split([' ', '{', '('])
                .next()
                .unwrap()
                .to_string(),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    eprintln!("configuration outcomes: {outcomes:?}");
    let loaded = outcomes.get("Ok").copied().unwrap_or(0);
    let pem = pem_input();
    let described = (0..300)
        .filter(|_| {
            describe_certificate(&pem.new_tree(&mut runner).unwrap().current().input).is_ok()
        })
        .count();
    eprintln!("loadable configurations: {loaded}/300, describable certificates: {described}/300");
    assert!(
        (30..270).contains(&loaded),
        "{loaded}/300 configurations load"
    );
    assert!(
        (15..270).contains(&described),
        "{described}/300 certificates parse"
    );
}
