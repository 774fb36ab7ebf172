//! Every flag of the tool, declared once (ripgrep's `defs.rs` idea), named as kubeadm
//! names them. Phases list the flags they take; the clap arguments and the typed
//! [`FlagValues`] both come from here.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches};
use phases::config::GoDuration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flag {
    Config,
    CertDir,
    NodeName,
    AdvertiseAddress,
    DryRun,
    ManifestDir,
    BackupDir,
    Output,
    Kubeconfig,
    Endpoints,
    EtcdCaFile,
    EtcdCertFile,
    EtcdKeyFile,
    Timeout,
    WipeDataDir,
    MemberId,
    Force,
    FromFile,
    ToFile,
    TargetVersion,
    ApiVersion,
    EnableLearnerMode,
    Hosts,
    OutputDir,
}

impl Flag {
    pub fn arg(self) -> Arg {
        let value = |name: &'static str, value_name: &'static str, help: &'static str| {
            Arg::new(name)
                .long(name)
                .value_name(value_name)
                .help(help)
                .action(ArgAction::Set)
        };
        let switch = |name: &'static str, help: &'static str| {
            Arg::new(name)
                .long(name)
                .help(help)
                .action(ArgAction::SetTrue)
        };
        match self {
            Flag::Config => value("config", "FILE", "Path to a kubeadm configuration file (InitConfiguration, JoinConfiguration, ClusterConfiguration; v1beta3 or v1beta4)")
                .value_parser(clap::value_parser!(PathBuf)),
            Flag::CertDir => value("cert-dir", "DIR", "The path where certificates are stored [default: the configuration's certificatesDir, else /etc/kubernetes/pki]")
                .value_parser(clap::value_parser!(PathBuf)),
            Flag::NodeName => value("node-name", "NAME", "The node name; overrides nodeRegistration.name"),
            Flag::AdvertiseAddress => value("advertise-address", "IP", "The address this member advertises; overrides localAPIEndpoint.advertiseAddress")
                .value_parser(clap::value_parser!(IpAddr)),
            Flag::DryRun => switch("dry-run", "Do not change any state, just output what would be done"),
            Flag::ManifestDir => value("manifest-dir", "DIR", "Where static Pod manifests are written")
                .default_value("/etc/kubernetes/manifests")
                .value_parser(clap::value_parser!(PathBuf)),
            Flag::BackupDir => value("backup-dir", "DIR", "Where replaced files and ConfigMaps are backed up (kubeadm's temporary directory)")
                .default_value("/etc/kubernetes/tmp")
                .value_parser(clap::value_parser!(PathBuf)),
            Flag::Output => value("output", "FORMAT", "Output format")
                .short('o')
                .value_parser(["text", "table", "yaml", "json"]),
            Flag::Kubeconfig => value("kubeconfig", "FILE", "The kubeconfig to reach the API server [default: $KUBECONFIG, ~/.kube/config, then /etc/kubernetes/admin.conf]")
                .value_parser(clap::value_parser!(PathBuf)),
            Flag::Endpoints => value("endpoints", "URLS", "Comma-separated etcd client URLs of existing members")
                .value_delimiter(','),
            Flag::EtcdCaFile => value("etcd-cafile", "FILE", "CA to verify etcd members [default: <cert-dir>/etcd/ca.crt]")
                .value_parser(clap::value_parser!(PathBuf)),
            Flag::EtcdCertFile => value("etcd-certfile", "FILE", "Client certificate for etcd [default: <cert-dir>/etcd/healthcheck-client.crt]")
                .value_parser(clap::value_parser!(PathBuf)),
            Flag::EtcdKeyFile => value("etcd-keyfile", "FILE", "Client key for etcd [default: <cert-dir>/etcd/healthcheck-client.key]")
                .value_parser(clap::value_parser!(PathBuf)),
            Flag::Timeout => value("timeout", "DURATION", "How long to wait, in Go's syntax (90s, 5m0s, 1h) [default: the configuration's timeouts.etcdAPICall; for join-learner and promote at least 10m]")
                .value_parser(|s: &str| GoDuration::parse(s).map_err(|e| e.to_string())),
            Flag::WipeDataDir => switch("wipe-data-dir", "Delete a data directory that belongs to another etcd cluster instead of refusing to join"),
            Flag::MemberId => value("id", "ID", "The etcd member ID, in hex as etcdctl prints it"),
            Flag::Force => switch("force", "Go ahead with a step that the safety checks refuse (read the message first)"),
            Flag::FromFile => value("from-file", "FILE", "Read the ConfigMap from a file (kubectl get cm kubeadm-config -o yaml) instead of the API server")
                .value_parser(clap::value_parser!(PathBuf)),
            Flag::ToFile => value("to-file", "FILE", "With --from-file: write the result here instead of standard output")
                .value_parser(clap::value_parser!(PathBuf)),
            Flag::TargetVersion => value("target-version", "VERSION", "The Kubernetes version being upgraded to, like v1.33.0").required(true),
            Flag::ApiVersion => value("api-version", "VERSION", "Convert the stored ClusterConfiguration to this kubeadm API version")
                .value_parser(["kubeadm.k8s.io/v1beta4", "v1beta4"]),
            Flag::EnableLearnerMode => switch("enable-learner-mode", "Set the EtcdLearnerMode feature gate where the target version needs it set"),
            Flag::Hosts => value("hosts", "NAME=IP,...", "The external etcd hosts, as name=address pairs")
                .value_delimiter(',')
                .required(true),
            Flag::OutputDir => value("output-dir", "DIR", "Where to write one folder per host")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf)),
        }
    }
}

/// The values of whichever flags a command has; a flag the command lacks reads as unset.
#[derive(Debug, Default, Clone)]
pub struct FlagValues {
    pub config: Option<PathBuf>,
    pub cert_dir: Option<PathBuf>,
    pub node_name: Option<String>,
    pub advertise_address: Option<IpAddr>,
    pub dry_run: bool,
    pub manifest_dir: Option<PathBuf>,
    pub backup_dir: Option<PathBuf>,
    pub output: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub endpoints: Vec<String>,
    pub etcd_ca_file: Option<PathBuf>,
    pub etcd_cert_file: Option<PathBuf>,
    pub etcd_key_file: Option<PathBuf>,
    pub timeout: Option<GoDuration>,
    pub wipe_data_dir: bool,
    pub member_id: Option<String>,
    pub force: bool,
    pub from_file: Option<PathBuf>,
    pub to_file: Option<PathBuf>,
    pub target_version: Option<String>,
    pub api_version: Option<String>,
    pub enable_learner_mode: bool,
    pub hosts: Vec<String>,
    pub output_dir: Option<PathBuf>,
    pub skip_phases: Vec<String>,
}

impl FlagValues {
    pub fn from_matches(m: &ArgMatches) -> Self {
        fn one<T: Clone + Send + Sync + 'static>(m: &ArgMatches, id: &str) -> Option<T> {
            m.try_get_one::<T>(id).ok().flatten().cloned()
        }
        fn many(m: &ArgMatches, id: &str) -> Vec<String> {
            m.try_get_many::<String>(id)
                .ok()
                .flatten()
                .map(|v| v.filter(|s| !s.is_empty()).cloned().collect())
                .unwrap_or_default()
        }
        fn switch(m: &ArgMatches, id: &str) -> bool {
            m.try_get_one::<bool>(id)
                .ok()
                .flatten()
                .copied()
                .unwrap_or(false)
        }
        Self {
            config: one(m, "config"),
            cert_dir: one(m, "cert-dir"),
            node_name: one(m, "node-name"),
            advertise_address: one(m, "advertise-address"),
            dry_run: switch(m, "dry-run"),
            manifest_dir: one(m, "manifest-dir"),
            backup_dir: one(m, "backup-dir"),
            output: one(m, "output"),
            kubeconfig: one(m, "kubeconfig"),
            endpoints: many(m, "endpoints"),
            etcd_ca_file: one(m, "etcd-cafile"),
            etcd_cert_file: one(m, "etcd-certfile"),
            etcd_key_file: one(m, "etcd-keyfile"),
            timeout: one(m, "timeout"),
            wipe_data_dir: switch(m, "wipe-data-dir"),
            member_id: one(m, "id"),
            force: switch(m, "force"),
            from_file: one(m, "from-file"),
            to_file: one(m, "to-file"),
            target_version: one(m, "target-version"),
            api_version: one(m, "api-version"),
            enable_learner_mode: switch(m, "enable-learner-mode"),
            hosts: many(m, "hosts"),
            output_dir: one(m, "output-dir"),
            skip_phases: many(m, "skip-phases"),
        }
    }
}
