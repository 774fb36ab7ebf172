//! Reading a multi-document kubeadm configuration into a [`KubeadmConfig`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{FieldError, Location};
use super::raw::{self, ExtraArgs, ExtraArgsList, ExtraArgsMap};
use super::{
    ApiVersion, ClusterConfig, ConfigError, EncryptionAlgorithm, Etcd, ExternalEtcd, GoDuration,
    KubeadmConfig, LocalEtcd, NodeKind, Timeouts, API_GROUP,
};

/// API groups whose documents may sit in a kubeadm configuration file (component
/// configuration) and that this tool passes over without a word.
const COMPONENT_CONFIG_GROUPS: &[&str] = &["kubelet.config.k8s.io", "kubeproxy.config.k8s.io"];

/// Reads and resolves the kubeadm configuration in `path`, with kubeadm's host defaults
/// for a node name or advertise address the file leaves out
/// ([`KubeadmConfig::apply_host_defaults`]), so that a file holding only a
/// ClusterConfiguration works as it does with `kubeadm init phase etcd local --config`.
pub fn load_file(path: &Path) -> Result<KubeadmConfig, ConfigError> {
    let mut config = load_file_as(path, None)?;
    config.notes = config.apply_host_defaults();
    Ok(config)
}

struct Document {
    index: usize,
    kind: String,
    api_version: ApiVersion,
}

/// [`load_file`] without the host defaults, checked against kubeadm `1.kubeadm_minor`
/// rather than the minor of `kubernetesVersion` (the caller's `--kubeadm-version`). The
/// caller applies its own overrides (`--node-name`), then
/// [`KubeadmConfig::apply_host_defaults`] for what is still unset.
pub fn load_file_as(path: &Path, kubeadm_minor: Option<u64>) -> Result<KubeadmConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str_as(&text, Some(path), kubeadm_minor)
}

/// Reads and resolves a kubeadm configuration from text; `source` only names it in
/// messages. Rules that differ between kubeadm releases follow the minor of
/// `kubernetesVersion`.
pub fn load_str(text: &str, source: Option<&Path>) -> Result<KubeadmConfig, ConfigError> {
    load_str_as(text, source, None)
}

/// [`load_str`], checked against kubeadm `1.kubeadm_minor` when given.
pub fn load_str_as(
    text: &str,
    source: Option<&Path>,
    kubeadm_minor: Option<u64>,
) -> Result<KubeadmConfig, ConfigError> {
    let source_name = source.map_or_else(|| "<config>".to_string(), |p| p.display().to_string());
    let mut warnings = Vec::new();
    let documents = classify_documents(text, &source_name, &mut warnings)?;

    let has = |kind: &str| documents.iter().any(|d| d.kind == kind);
    if has("InitConfiguration") && has("JoinConfiguration") {
        return Err(ConfigError::InitAndJoin { source_name });
    }

    let mut config = KubeadmConfig {
        source: source.map(PathBuf::from),
        kubeadm_minor,
        ..KubeadmConfig::default()
    };
    if let Some(first) = documents.first() {
        config.api_version = first.api_version;
    }

    let ctx = Ctx {
        text,
        source_name: &source_name,
    };
    for doc in &documents {
        ctx.read_document(doc, &mut config, &mut warnings)?;
    }
    ctx.check_node(&mut config, &documents)?;
    if let Some(doc) = documents.iter().find(|d| d.kind == "ClusterConfiguration") {
        ctx.feature_gates(&config, doc, &mut warnings)?;
    }

    config.warnings = warnings;
    Ok(config)
}

/// The first pass: what each document of `text` is (kind and API version), refusing what
/// kubeadm refuses and setting aside what is not kubeadm's.
fn classify_documents(
    text: &str,
    source_name: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Document>, ConfigError> {
    let source_name = source_name.to_string();
    let mut documents = Vec::new();
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = index + 1;
        let value = serde_yaml::Value::deserialize(de).map_err(|e| ConfigError::Yaml {
            source_name: source_name.clone(),
            document,
            location: e.location().map(|l| Location {
                line: l.line(),
                column: l.column(),
            }),
            message: strip_location(&e.to_string()),
        })?;
        if value.is_null() {
            continue;
        }
        let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
        let (api_version, kind) = match (field("apiVersion"), field("kind")) {
            (Some(a), Some(k)) => (a, k),
            (a, _) => {
                return Err(ConfigError::MissingTypeMeta {
                    source_name,
                    document,
                    location: None,
                    missing: if a.is_none() { "apiVersion" } else { "kind" },
                })
            }
        };
        let group = api_version.split('/').next().unwrap_or_default();
        if group != API_GROUP {
            if !COMPONENT_CONFIG_GROUPS.contains(&group) {
                warnings.push(format!(
                    "{source_name}: document {document} ({kind}, {api_version}) is not a kubeadm document; ignoring it"
                ));
            }
            continue;
        }
        let Some(version) = ApiVersion::parse(&api_version) else {
            let hint = match api_version.as_str() {
                "kubeadm.k8s.io/v1beta1" | "kubeadm.k8s.io/v1beta2" => {
                    " (this version was removed from kubeadm; convert the file with `kubeadm config migrate`)"
                }
                _ => "",
            };
            return Err(ConfigError::UnknownApiVersion {
                source_name,
                document,
                kind,
                api_version,
                hint,
            });
        };
        if !matches!(
            kind.as_str(),
            "InitConfiguration" | "JoinConfiguration" | "ClusterConfiguration"
        ) {
            // kubeadm's other kinds (ResetConfiguration, UpgradeConfiguration) do not concern etcd.
            if matches!(kind.as_str(), "ResetConfiguration" | "UpgradeConfiguration") {
                continue;
            }
            return Err(ConfigError::UnknownKind {
                source_name,
                document,
                kind,
                api_version,
            });
        }
        if documents.iter().any(|d: &Document| d.kind == kind) {
            return Err(ConfigError::Duplicate { source_name, kind });
        }
        documents.push(Document {
            index,
            kind,
            api_version: version,
        });
    }

    Ok(documents)
}

impl Ctx<'_> {
    /// The second pass: one document, typed, into `config`.
    fn read_document(
        &self,
        doc: &Document,
        config: &mut KubeadmConfig,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let ctx = self;
        let text = self.text;
        let nth = || {
            serde_yaml::Deserializer::from_str(text)
                .nth(doc.index)
                .expect("document seen in the first pass")
        };
        match (doc.kind.as_str(), doc.api_version) {
            ("InitConfiguration", v) => {
                let init: raw::InitConfiguration = ctx.typed(nth(), doc, warnings)?;
                config.node_kind = Some(NodeKind::InitConfiguration);
                config.node.name = init.node_registration.name.clone();
                config.node.advertise_address =
                    init.local_api_endpoint.advertise_address.map(|ip| ip.0);
                config.patches_directory = ctx.patches(init.patches, doc)?;
                ctx.apply_timeouts(&mut config.timeouts, init.timeouts, doc, v, warnings);
            }
            ("JoinConfiguration", v) => {
                let join: raw::JoinConfiguration = ctx.typed(nth(), doc, warnings)?;
                config.node_kind = Some(NodeKind::JoinConfiguration);
                config.node.name = join.node_registration.name.clone();
                config.node.advertise_address = join
                    .control_plane
                    .as_ref()
                    .and_then(|cp| cp.local_api_endpoint.advertise_address.map(|ip| ip.0));
                config.patches_directory = ctx.patches(join.patches, doc)?;
                ctx.apply_timeouts(&mut config.timeouts, join.timeouts, doc, v, warnings);
            }
            ("ClusterConfiguration", ApiVersion::V1Beta3) => {
                let cluster: raw::ClusterConfiguration<ExtraArgsMap> =
                    ctx.typed(nth(), doc, warnings)?;
                config.api_version = ApiVersion::V1Beta3;
                // kubeadm converts v1beta3's apiServer.timeoutForControlPlane to
                // timeouts.controlPlaneComponentHealthCheck (v1beta3 conversion.go), which
                // sizes the etcd startup probe.
                if let Some(d) = ctx.timeout_for_control_plane(&cluster, doc)? {
                    config.timeouts.control_plane_component_health_check = d;
                }
                config.cluster = ctx.cluster(cluster, doc, warnings)?;
            }
            ("ClusterConfiguration", ApiVersion::V1Beta4) => {
                let cluster: raw::ClusterConfiguration<ExtraArgsList> =
                    ctx.typed(nth(), doc, warnings)?;
                config.api_version = ApiVersion::V1Beta4;
                config.cluster = ctx.cluster(cluster, doc, warnings)?;
            }
            _ => unreachable!("kinds were checked in the first pass"),
        }
        Ok(())
    }

    /// The node's name and advertise address, checked as kubeadm checks them.
    fn check_node(
        &self,
        config: &mut KubeadmConfig,
        documents: &[Document],
    ) -> Result<(), ConfigError> {
        let ctx = self;
        let node_kind = documents
            .iter()
            .find(|d| d.kind != "ClusterConfiguration")
            .map(|d| (d.kind.clone(), d.api_version));
        if let (Some(name), Some((kind, version))) = (&config.node.name, &node_kind) {
            if let Err(message) = validate_node_name(name) {
                return Err(ctx.field_error(kind, *version, "nodeRegistration.name", message));
            }
        }
        // kubeadm reads an unspecified advertise address (0.0.0.0, ::) as "choose one": the
        // address of the default route (`SetAPIEndpointDynamicDefaults`).
        if config
            .node
            .advertise_address
            .is_some_and(|ip| ip.is_unspecified())
        {
            config.node.advertise_address = None;
        }
        if let (Some(ip), Some((kind, version))) = (config.node.advertise_address, &node_kind) {
            if let Err(message) = validate_advertise_address(ip) {
                let field = if kind == "JoinConfiguration" {
                    "controlPlane.localAPIEndpoint.advertiseAddress"
                } else {
                    "localAPIEndpoint.advertiseAddress"
                };
                return Err(ctx.field_error(kind, *version, field, message));
            }
        }
        Ok(())
    }
}

/// Checks a node name the way kubeadm does (a DNS-1123 subdomain), because it becomes the
/// etcd member name and a certificate SAN.
pub fn validate_node_name(name: &str) -> Result<(), String> {
    if is_dns1123_name(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid value {name:?}: a node name must be a lowercase RFC 1123 subdomain (letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)"
        ))
    }
}

/// Checks that an address can be advertised to other members.
pub fn validate_advertise_address(ip: IpAddr) -> Result<(), String> {
    if ip.is_unspecified() || ip.is_multicast() {
        Err(format!(
            "invalid value \"{ip}\": the advertise address must be an address other members can reach, not an unspecified or multicast one"
        ))
    } else {
        Ok(())
    }
}

pub fn is_dns1123_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// serde_yaml appends " at line L column C" to its messages; the location is reported
/// separately, so drop it from the text.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// serde_yaml starts a nested error with the path of the mapping it was in
/// (`localAPIEndpoint: invalid ...`); the field is reported separately, so drop it.
fn strip_path_prefix(message: &str, field: &str) -> String {
    let parts: Vec<&str> = field.split('.').collect();
    for len in (1..=parts.len()).rev() {
        let prefix = format!("{}: ", parts[..len].join("."));
        if let Some(rest) = message.strip_prefix(&prefix) {
            return rest.to_string();
        }
    }
    message.to_string()
}

struct Ctx<'a> {
    text: &'a str,
    source_name: &'a str,
}

impl Ctx<'_> {
    fn typed<T: for<'de> Deserialize<'de>>(
        &self,
        de: serde_yaml::Deserializer<'_>,
        doc: &Document,
        warnings: &mut Vec<String>,
    ) -> Result<T, ConfigError> {
        let mut unknown = Vec::new();
        // serde_ignored writes `?` for every Option it passed through; users know fields, not Options.
        let mut record =
            |path: serde_ignored::Path<'_>| unknown.push(path.to_string().replace("?.", ""));
        let result =
            serde_path_to_error::deserialize(serde_ignored::Deserializer::new(de, &mut record));
        for path in unknown {
            warnings.push(format!(
                "{}: {} ({}): unknown field {path:?}; ignoring it (kubeadm's strict decoding would report it too)",
                self.source_name, doc.kind, doc.api_version
            ));
        }
        result.map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            // serde_yaml places errors on top-level keys at the document start; the key's
            // own line, where the text tells it unambiguously, is what a user wants.
            let location = self.locate(&field).or_else(|| {
                inner.location().map(|l| Location {
                    line: l.line(),
                    column: l.column(),
                })
            });
            ConfigError::Field(Box::new(FieldError {
                source_name: self.source_name.to_string(),
                kind: doc.kind.clone(),
                api_version: doc.api_version.to_string(),
                location,
                message: strip_path_prefix(&strip_location(&inner.to_string()), &field),
                field: if field == "." {
                    "(document)".to_string()
                } else {
                    field
                },
            }))
        })
    }

    /// An error about a field found after decoding.
    fn field_error(
        &self,
        kind: &str,
        version: ApiVersion,
        field: &str,
        message: String,
    ) -> ConfigError {
        ConfigError::Field(Box::new(FieldError {
            source_name: self.source_name.to_string(),
            kind: kind.to_string(),
            api_version: version.to_string(),
            field: field.to_string(),
            location: self.locate(field),
            message,
        }))
    }

    /// The line of a field's last key, found by looking for it in the text: right
    /// whenever that key appears once, and no answer otherwise.
    fn locate(&self, field: &str) -> Option<Location> {
        let key = field.rsplit('.').next().unwrap_or(field);
        let key = key.split('[').next().unwrap_or(key);
        let needle = format!("{key}:");
        let mut hits = self.text.lines().enumerate().filter(|(_, line)| {
            line.trim_start()
                .trim_start_matches("- ")
                .starts_with(&needle)
        });
        match (hits.next(), hits.next()) {
            (Some((n, line)), None) => Some(Location {
                line: n + 1,
                column: line.find(&needle).unwrap_or(0) + 1,
            }),
            _ => None,
        }
    }

    /// kubeadm's `ValidateFeatureGates` for the release emulated: a gate that release does
    /// not know (never had, or removed) is "not a valid feature name", a locked gate set
    /// to the other value is refused, and a deprecated one is accepted with its warning.
    /// One more rule is this tool's: `EtcdLearnerMode: false` is refused, because every
    /// member this tool adds joins as a learner.
    fn feature_gates(
        &self,
        config: &KubeadmConfig,
        doc: &Document,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        use crate::upgrade::feature_gates::{gate_table, GateState, Stage};
        let (release, _) = config.kubeadm_release();
        let minor = release.minor;
        let table = gate_table();
        for (name, &value) in &config.cluster.feature_gates {
            let field = format!("featureGates.{name}");
            let refuse = |message: String| {
                Err(self.field_error(&doc.kind, doc.api_version, &field, message))
            };
            let state = table.gate(name).map(|g| g.state(minor));
            let entry = match state {
                Some(GateState::Available(entry)) => entry,
                Some(GateState::Removed { entry, .. }) => {
                    let note = entry
                        .note
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default();
                    return refuse(format!(
                        "{name} is not a valid feature name: kubeadm removed it in v1.{}{note}; \
                         delete it (emulating kubeadm v1.{minor})",
                        entry.since
                    ));
                }
                Some(GateState::NotYetIntroduced { introduced }) => {
                    return refuse(format!(
                        "{name} is not a valid feature name: kubeadm v1.{minor} does not know it \
                         (it appeared in v1.{introduced})"
                    ));
                }
                None => {
                    let known: Vec<&str> = table
                        .gates
                        .iter()
                        .filter(|g| matches!(g.state(minor), GateState::Available(_)))
                        .map(|g| g.name.as_str())
                        .collect();
                    return refuse(format!(
                        "{name} is not a valid feature name (kubeadm v1.{minor} knows: {})",
                        known.join(", ")
                    ));
                }
            };
            let default = entry.default.unwrap_or(false);
            if entry.locked && value != default {
                return refuse(format!(
                    "{name} is locked to {default} and cannot be set to {value}"
                ));
            }
            if name == "EtcdLearnerMode" && !value {
                return refuse(
                    "EtcdLearnerMode: false asks kubeadm to add members as voters; kubeadm-etcd \
                     only adds members as learners and promotes them once they caught up, so it \
                     does not offer the voter path: remove the gate or set it to true"
                        .into(),
                );
            }
            if entry.stage == Stage::Deprecated {
                warnings.push(format!(
                    "{}: ClusterConfiguration: featureGates.{name} is deprecated in kubeadm v1.{minor}",
                    self.source_name
                ));
            }
        }
        Ok(())
    }

    /// `patches.directory`, which must be absolute when set (kubeadm reads it relative to
    /// nothing else).
    fn patches(&self, raw: raw::Opaque, doc: &Document) -> Result<Option<PathBuf>, ConfigError> {
        let Some(patches) = raw else { return Ok(None) };
        let directory = match patches.get("directory") {
            None | Some(serde_yaml::Value::Null) => return Ok(None),
            Some(serde_yaml::Value::String(s)) if s.is_empty() => return Ok(None),
            Some(serde_yaml::Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(self.field_error(
                    &doc.kind,
                    doc.api_version,
                    "patches.directory",
                    "must be a string: the path of a directory of patch files".into(),
                ))
            }
        };
        Ok(Some(PathBuf::from(directory)))
    }

    /// v1beta3's `apiServer.timeoutForControlPlane`.
    fn timeout_for_control_plane<A: ExtraArgs>(
        &self,
        cluster: &raw::ClusterConfiguration<A>,
        doc: &Document,
    ) -> Result<Option<GoDuration>, ConfigError> {
        let Some(value) = cluster
            .api_server
            .as_ref()
            .and_then(|a| a.get("timeoutForControlPlane"))
        else {
            return Ok(None);
        };
        let field = "apiServer.timeoutForControlPlane";
        let text = value.as_str().ok_or_else(|| {
            self.field_error(
                &doc.kind,
                doc.api_version,
                field,
                "must be a duration like \"4m0s\"".into(),
            )
        })?;
        GoDuration::parse(text)
            .map(Some)
            .map_err(|e| self.field_error(&doc.kind, doc.api_version, field, e.to_string()))
    }

    fn apply_timeouts(
        &self,
        timeouts: &mut Timeouts,
        raw: Option<raw::Timeouts>,
        doc: &Document,
        version: ApiVersion,
        warnings: &mut Vec<String>,
    ) {
        let Some(raw) = raw else { return };
        if version == ApiVersion::V1Beta3 {
            warnings.push(format!(
                "{}: {} ({}): timeouts is a v1beta4 field; ignoring it",
                self.source_name, doc.kind, version
            ));
            return;
        }
        if let Some(d) = raw.etcd_api_call {
            timeouts.etcd_api_call = d;
        }
        if let Some(d) = raw.control_plane_component_health_check {
            timeouts.control_plane_component_health_check = d;
        }
    }

    fn cluster<A: ExtraArgs>(
        &self,
        raw: raw::ClusterConfiguration<A>,
        doc: &Document,
        warnings: &mut Vec<String>,
    ) -> Result<ClusterConfig, ConfigError> {
        let version = doc.api_version;
        let kind = doc.kind.as_str();
        let mut cluster = ClusterConfig::default();

        if let Some(v) = raw.kubernetes_version {
            match crate::versions::parse_kubernetes_version(&v) {
                Ok(parsed) => cluster.kubernetes_semver = Some(parsed),
                Err(e) => {
                    let message = if e.reason.starts_with("Kubernetes versions are") {
                        format!("invalid value {v:?}: {}", e.reason)
                    } else {
                        format!("invalid value {v:?}: expected a Kubernetes version like v1.32.0 (release labels such as \"stable\" are not resolved)")
                    };
                    return Err(self.field_error(kind, version, "kubernetesVersion", message));
                }
            }
            cluster.kubernetes_version = Some(v);
        }
        if let Some(dir) = raw.certificates_dir {
            if !Path::new(&dir).is_absolute() {
                return Err(self.field_error(
                    kind,
                    version,
                    "certificatesDir",
                    format!("invalid value {dir:?}: must be an absolute path"),
                ));
            }
            cluster.certificates_dir = PathBuf::from(dir);
        }
        if let Some(repo) = raw.image_repository.filter(|r| !r.is_empty()) {
            cluster.image_repository = repo;
        }
        if let Some(name) = raw.cluster_name.filter(|n| !n.is_empty()) {
            cluster.cluster_name = name;
        }
        cluster.feature_gates = raw.feature_gates;

        let v1beta4_only: [(&str, bool); 3] = [
            ("encryptionAlgorithm", raw.encryption_algorithm.is_some()),
            (
                "certificateValidityPeriod",
                raw.certificate_validity_period.is_some(),
            ),
            (
                "caCertificateValidityPeriod",
                raw.ca_certificate_validity_period.is_some(),
            ),
        ];
        if version == ApiVersion::V1Beta3 {
            for (field, set) in v1beta4_only {
                if set {
                    warnings.push(format!(
                        "{}: ClusterConfiguration ({version}): {field} is a v1beta4 field; ignoring it",
                        self.source_name
                    ));
                }
            }
        } else {
            if let Some(alg) = raw.encryption_algorithm {
                cluster.encryption_algorithm =
                    EncryptionAlgorithm::parse(&alg).ok_or_else(|| {
                        self.field_error(
                            kind,
                            version,
                            "encryptionAlgorithm",
                            format!(
                                "invalid value {alg:?}: expected one of {}",
                                EncryptionAlgorithm::ALL.map(|a| a.as_str()).join(", ")
                            ),
                        )
                    })?;
            }
            let check_period = |field: &str, d: GoDuration| {
                if d.0.is_zero() {
                    Err(self.field_error(
                        kind,
                        version,
                        field,
                        "invalid value \"0s\": a validity period must be positive".into(),
                    ))
                } else {
                    Ok(d)
                }
            };
            if let Some(d) = raw.certificate_validity_period {
                cluster.certificate_validity_period = check_period("certificateValidityPeriod", d)?;
            }
            if let Some(d) = raw.ca_certificate_validity_period {
                cluster.ca_certificate_validity_period =
                    check_period("caCertificateValidityPeriod", d)?;
            }
        }

        let etcd = raw.etcd.unwrap_or(raw::Etcd {
            local: None,
            external: None,
        });
        cluster.etcd = match (etcd.local, etcd.external) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::LocalAndExternal {
                    source_name: self.source_name.to_string(),
                })
            }
            (_, Some(external)) => Etcd::External(self.external(external, kind, version)?),
            (local, None) => Etcd::Local(match local {
                Some(local) => self.local(local, kind, version, warnings)?,
                None => LocalEtcd::default(),
            }),
        };
        Ok(cluster)
    }

    fn local<A: ExtraArgs>(
        &self,
        raw: raw::LocalEtcd<A>,
        kind: &str,
        version: ApiVersion,
        warnings: &mut Vec<String>,
    ) -> Result<LocalEtcd, ConfigError> {
        let mut local = LocalEtcd::default();
        if let Some(dir) = raw.data_dir {
            if !Path::new(&dir).is_absolute() {
                return Err(self.field_error(
                    kind,
                    version,
                    "etcd.local.dataDir",
                    format!("invalid value {dir:?}: must be an absolute path"),
                ));
            }
            local.data_dir = PathBuf::from(dir);
        }
        local.image_repository = raw.image_repository.filter(|r| !r.is_empty());
        local.image_tag = raw.image_tag.filter(|t| !t.is_empty());
        local.extra_args = raw.extra_args.into_list();
        for (i, arg) in local.extra_args.iter().enumerate() {
            if let Err(message) = validate_extra_arg_name(&arg.name) {
                let field = match version {
                    ApiVersion::V1Beta3 => format!("etcd.local.extraArgs.{}", arg.name),
                    ApiVersion::V1Beta4 => format!("etcd.local.extraArgs[{i}].name"),
                };
                return Err(self.field_error(kind, version, &field, message));
            }
        }
        if version == ApiVersion::V1Beta3 && !raw.extra_envs.is_empty() {
            warnings.push(format!(
                "{}: ClusterConfiguration ({version}): etcd.local.extraEnvs is a v1beta4 field; ignoring it",
                self.source_name
            ));
        } else {
            local.extra_envs = raw.extra_envs;
        }
        local.server_cert_sans = self.sans(
            raw.server_cert_sans,
            "etcd.local.serverCertSANs",
            kind,
            version,
        )?;
        local.peer_cert_sans =
            self.sans(raw.peer_cert_sans, "etcd.local.peerCertSANs", kind, version)?;
        Ok(local)
    }

    /// kubeadm's `ValidateCertSANs`: every entry is an IP address, a DNS-1123 subdomain
    /// or a wildcard one (`*.example.com`); anything else rejects the configuration.
    fn sans(
        &self,
        sans: Vec<String>,
        field: &str,
        kind: &str,
        version: ApiVersion,
    ) -> Result<Vec<String>, ConfigError> {
        for (i, san) in sans.iter().enumerate() {
            let ok = san.parse::<IpAddr>().is_ok()
                || is_dns1123_name(san)
                || san.strip_prefix("*.").is_some_and(is_dns1123_name);
            if !ok {
                return Err(self.field_error(
                    kind,
                    version,
                    &format!("{field}[{i}]"),
                    format!(
                        "invalid value {san:?}: altname is not a valid IP address, DNS label or a DNS label with subdomain wildcards"
                    ),
                ));
            }
        }
        Ok(sans)
    }

    fn external(
        &self,
        raw: raw::ExternalEtcd,
        kind: &str,
        version: ApiVersion,
    ) -> Result<ExternalEtcd, ConfigError> {
        if raw.endpoints.is_empty() {
            return Err(self.field_error(
                kind,
                version,
                "etcd.external.endpoints",
                "no endpoints: list the client URLs of the external etcd members, like https://10.0.0.10:2379".into(),
            ));
        }
        for (i, endpoint) in raw.endpoints.iter().enumerate() {
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                return Err(self.field_error(
                    kind,
                    version,
                    &format!("etcd.external.endpoints[{i}]"),
                    format!(
                        "invalid value {endpoint:?}: expected a URL like https://10.0.0.10:2379"
                    ),
                ));
            }
        }
        Ok(ExternalEtcd {
            endpoints: raw.endpoints,
            ca_file: raw.ca_file,
            cert_file: raw.cert_file,
            key_file: raw.key_file,
        })
    }
}

/// An extraArgs name is a flag name without its dashes.
fn validate_extra_arg_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(
            "empty flag name: each extraArgs entry needs a name, like listen-metrics-urls".into(),
        );
    }
    if name.starts_with('-') {
        return Err(format!(
            "invalid flag name {name:?}: write the name without leading dashes ({:?})",
            name.trim_start_matches('-')
        ));
    }
    if name.contains('=') || name.chars().any(char::is_whitespace) {
        return Err(format!(
            "invalid flag name {name:?}: a name holds no '=' or spaces; put the value in the value field"
        ));
    }
    Ok(())
}
