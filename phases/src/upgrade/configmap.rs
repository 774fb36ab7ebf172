//! Reading and writing `kube-system/kubeadm-config`: live through the API with optimistic
//! concurrency, or offline from a file as `kubectl get -o yaml` prints it.

use std::path::{Path, PathBuf};

use ::kube::api::PostParams;
use ::kube::{Api, Client};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_yaml::Value;

use super::error::UpgradeError;
use super::migrate::{describe, migrate_document, Outcome};
use super::{MigrateOptions, MigrateReport};
use crate::fsutil::{create_dir_all_with_mode, write_atomic};

/// kubeadm's `KubeadmConfigConfigMap`, in kube-system.
pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "kubeadm-config";
/// kubeadm's `ClusterConfigurationConfigMapKey`.
pub const KEY: &str = "ClusterConfiguration";
/// One read-modify-write plus this many retries after a 409 Conflict.
pub const MAX_RETRIES: usize = 5;

const PREFIX: &str = "[upgrade/feature-gates]";

fn live_name() -> String {
    format!("{NAMESPACE}/{NAME}")
}

fn diff(old: &str, new: &str, what: &str, target: &semver::Version) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{what} (current)"),
            &format!("{what} (migrated for Kubernetes v{target})"),
        )
        .to_string()
}

/// Offline: the ConfigMap in `from`, the result to `to` or returned for stdout.
pub(crate) fn migrate_file(
    from: &Path,
    to: Option<&Path>,
    opts: &MigrateOptions,
) -> Result<MigrateReport, UpgradeError> {
    // Checked before any file is touched, so a typo in the version is reported as such.
    super::migrate::parse_target_version(&opts.target_version)?;
    let (text, mut cm, current) = read_configmap_file(from)?;
    let outcome = migrate_document(
        &format!("ClusterConfiguration in {}", from.display()),
        &current,
        opts,
    )?;
    let Outcome {
        yaml,
        mut lines,
        warnings,
        changed,
        target,
    } = outcome;
    let what = format!("{} {KEY}", from.display());
    let mut report = MigrateReport {
        warnings,
        changed,
        ..MigrateReport::default()
    };
    if !changed {
        // A pipeline reads --to-file next, so it always gets one: the ConfigMap as it was
        // read, byte for byte. "Nothing to change" only means no change to the cluster.
        match to {
            Some(path) if !opts.dry_run => {
                write_output(path, text.as_bytes())?;
                lines.push(format!(
                    "{PREFIX} {} left as it is; wrote it unchanged to {}",
                    from.display(),
                    path.display()
                ));
                report.written = Some(path.display().to_string());
            }
            Some(path) => lines.push(format!(
                "[dryrun] {} left as it is; would write it unchanged to {}",
                from.display(),
                path.display()
            )),
            // On standard output "nothing to change" stays silent: the caller kept the
            // input and can read it.
            None => lines.push(format!(
                "{PREFIX} {} left as it is; no output written",
                from.display()
            )),
        }
        report.lines = lines;
        return Ok(report);
    }
    report.diff = Some(diff(&current, &yaml, &what, &target));
    if opts.dry_run {
        lines.push(format!(
            "[dryrun] Would write the migrated ConfigMap {}; nothing written",
            to.map_or_else(
                || "to stdout".to_string(),
                |p| format!("to {}", p.display())
            )
        ));
        report.lines = lines;
        return Ok(report);
    }
    if let Some(data) = cm.get_mut("data").and_then(Value::as_mapping_mut) {
        data.insert(Value::String(KEY.into()), Value::String(yaml));
    }
    let out = crate::yaml::to_string(&cm).map_err(|source| UpgradeError::Serialize {
        what: "the migrated ConfigMap".into(),
        source,
    })?;
    match to {
        Some(path) => {
            write_output(path, out.as_bytes())?;
            lines.push(format!(
                "{PREFIX} Wrote the migrated ConfigMap to {}",
                path.display()
            ));
            report.written = Some(path.display().to_string());
        }
        None => {
            report.written = Some("stdout".into());
            report.output = Some(out);
        }
    }
    report.lines = lines;
    Ok(report)
}

/// The ConfigMap file as text, parsed, and its ClusterConfiguration; anything but a v1
/// ConfigMap with a string under the key is refused.
fn read_configmap_file(from: &Path) -> Result<(String, Value, String), UpgradeError> {
    let text = std::fs::read_to_string(from).map_err(|source| UpgradeError::ReadFile {
        path: from.to_path_buf(),
        source,
    })?;
    let cm: Value =
        serde_yaml::from_str(&text).map_err(|source| UpgradeError::ParseConfigMapFile {
            path: from.to_path_buf(),
            source,
        })?;
    let field = |name: &str| {
        cm.get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    if api_version != "v1" || kind != "ConfigMap" {
        return Err(UpgradeError::NotAConfigMap {
            path: from.to_path_buf(),
            api_version,
            kind,
        });
    }
    let origin = format!("ConfigMap in {}", from.display());
    let current = match cm.get("data").and_then(|d| d.get(KEY)) {
        None => {
            return Err(UpgradeError::KeyMissing {
                origin,
                key: KEY.into(),
            })
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(UpgradeError::KeyNotAString {
                origin,
                key: KEY.into(),
                found: describe(other),
            })
        }
    };
    Ok((text, cm, current))
}

/// `--to-file`: atomically, readable by all like the ConfigMap it copies.
fn write_output(path: &Path, bytes: &[u8]) -> Result<(), UpgradeError> {
    write_atomic(path, bytes, 0o644).map_err(|source| UpgradeError::WriteOutput {
        path: path.to_path_buf(),
        source,
    })
}

/// Live: GET, migrate, back up, PUT with the resourceVersion read; on 409 Conflict read
/// again and redo it all, at most [`MAX_RETRIES`] times.
pub(crate) async fn migrate_live(
    client: Client,
    server: &str,
    opts: &MigrateOptions,
) -> Result<MigrateReport, UpgradeError> {
    super::migrate::parse_target_version(&opts.target_version)?;
    let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
    let origin = format!("ConfigMap {}", live_name());
    let mut retry_lines = Vec::new();
    let attempts = MAX_RETRIES + 1;
    for attempt in 1..=attempts {
        let cm = api
            .get(NAME)
            .await
            .map_err(|e| kube_error(e, "get", server))?;
        let resource_version = cm.metadata.resource_version.clone().unwrap_or_default();
        let current = cm
            .data
            .as_ref()
            .and_then(|d| d.get(KEY))
            .cloned()
            .ok_or_else(|| UpgradeError::KeyMissing {
                origin: origin.clone(),
                key: KEY.into(),
            })?;
        let Outcome {
            yaml,
            lines,
            warnings,
            changed,
            target,
        } = migrate_document(&format!("ClusterConfiguration in {origin}"), &current, opts)?;
        let mut report = MigrateReport {
            lines: retry_lines.clone(),
            warnings,
            changed,
            ..MigrateReport::default()
        };
        report.lines.extend(lines);
        if !changed {
            report.lines.push(format!(
                "{PREFIX} ConfigMap {} left as it is; nothing written",
                live_name()
            ));
            return Ok(report);
        }
        report.diff = Some(diff(
            &current,
            &yaml,
            &format!("{} {KEY}", live_name()),
            &target,
        ));
        if opts.dry_run {
            report.lines.push(format!(
                "[dryrun] Would update ConfigMap {} (resourceVersion {resource_version}); nothing written",
                live_name()
            ));
            return Ok(report);
        }
        if cm.immutable == Some(true) {
            return Err(UpgradeError::Immutable {
                namespace: NAMESPACE.into(),
                name: NAME.into(),
            });
        }

        let backup = backup(&cm, &resource_version, &opts.backup_dir)?;
        report.lines.push(format!(
            "{PREFIX} Backed up ConfigMap {} to {}",
            live_name(),
            backup.display()
        ));

        let mut updated = cm.clone();
        updated
            .data
            .get_or_insert_with(Default::default)
            .insert(KEY.into(), yaml);
        match api.replace(NAME, &PostParams::default(), &updated).await {
            Ok(written) => {
                let new_version = written.metadata.resource_version.unwrap_or_default();
                report.lines.push(format!(
                    "{PREFIX} Updated ConfigMap {} (resourceVersion {resource_version} -> {new_version})",
                    live_name()
                ));
                report.written = Some(format!("ConfigMap {}", live_name()));
                return Ok(report);
            }
            Err(::kube::Error::Api(status)) if status.is_conflict() && attempt < attempts => {
                retry_lines.push(format!(
                    "{PREFIX} ConfigMap {} changed since it was read at resourceVersion {resource_version} \
                     (409 Conflict); reading it again (attempt {} of {attempts})",
                    live_name(),
                    attempt + 1
                ));
            }
            Err(::kube::Error::Api(status)) if status.is_conflict() => break,
            Err(e) => return Err(kube_error(e, "update", server)),
        }
    }
    Err(UpgradeError::ConflictRetriesExhausted {
        namespace: NAMESPACE.into(),
        name: NAME.into(),
        attempts,
    })
}

/// Saves the ConfigMap as read to `<dir>/kubeadm-config-<resourceVersion>.yaml`, atomically
/// and readable by root only; the name has no timestamp so that a rerun on an unchanged
/// ConfigMap rewrites the same file instead of piling up copies.
fn backup(cm: &ConfigMap, resource_version: &str, dir: &Path) -> Result<PathBuf, UpgradeError> {
    let safe: String = resource_version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{NAME}-{safe}.yaml"));
    let to_err = |source| UpgradeError::Backup {
        namespace: NAMESPACE.into(),
        name: NAME.into(),
        path: path.clone(),
        source,
    };
    let yaml = serde_yaml::to_value(cm)
        .and_then(|v| crate::yaml::to_string(&v))
        .map_err(|source| UpgradeError::Serialize {
            what: format!("ConfigMap {} for its backup", live_name()),
            source,
        })?;
    create_dir_all_with_mode(dir, 0o700).map_err(to_err)?;
    write_atomic(&path, yaml.as_bytes(), 0o600).map_err(to_err)?;
    Ok(path)
}

fn kube_error(error: ::kube::Error, verb: &'static str, server: &str) -> UpgradeError {
    match error {
        ::kube::Error::Api(status) if status.is_not_found() => UpgradeError::ConfigMapNotFound {
            namespace: NAMESPACE.into(),
            name: NAME.into(),
        },
        ::kube::Error::Api(status) if status.is_forbidden() => UpgradeError::Forbidden {
            verb,
            namespace: NAMESPACE.into(),
            name: NAME.into(),
            message: status.message.clone(),
        },
        source @ (::kube::Error::HyperError(_) | ::kube::Error::Service(_)) => {
            UpgradeError::Unreachable {
                server: server.to_string(),
                verb,
                namespace: NAMESPACE.into(),
                name: NAME.into(),
                source: Box::new(source),
            }
        }
        source => UpgradeError::Api {
            verb,
            namespace: NAMESPACE.into(),
            name: NAME.into(),
            source: Box::new(source),
        },
    }
}
