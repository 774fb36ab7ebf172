//! Every flag of the tool, declared once (ripgrep's `defs.rs` idea), named as kubeadm
//! names them.
//!
//! A [`Flag`] is the flag's only name in the code: phases list the flags they take by
//! it, the clap argument comes from [`Flag::arg`], and a phase reads the value back
//! through [`crate::context::Context`]'s accessors keyed by the same [`Flag`]. There is
//! no second spelling of an id to get wrong, and reading a flag that the phase did not
//! declare panics instead of reading as unset.

use std::collections::BTreeSet;
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
    SnapshotDir,
    Keep,
    Etcdutl,
    /// The snapshot file, positional.
    SnapshotFile,
    EtcdVersion,
    /// The kubeadm release to emulate, when it is not the minor of kubernetesVersion.
    KubeadmVersion,
    /// How close to expiry a certificate fails `check-expiration`.
    WarnWithin,
    /// An external bundle's output directory (`phase etcd external-bundle --output-dir`).
    BundleDir,
    /// `renew`'s positional: a certificate name or `all`.
    RenewTarget,
    /// Taken by every workflow, not by phases.
    SkipPhases,
    /// `join-learner`: remove this node's dead member first.
    Replace,
    /// `promote`: remove a learner that never made it.
    RollbackOnTimeout,
    /// `promote`: how long a learner may make no progress.
    StallTimeout,
    /// `defrag`: every member, one at a time.
    Cluster,
    /// `move-leader`: the member to hand leadership to.
    To,
    /// `alarm disarm`: compact and defragment before disarming NOSPACE.
    CompactAndDefrag,
    /// `alarm disarm`: the operator has repaired what CORRUPT reported.
    CorruptResolved,
}

impl Flag {
    /// Every flag, for tests that check all of them.
    #[cfg(test)]
    pub const ALL: [Flag; 41] = [
        Flag::Config,
        Flag::CertDir,
        Flag::NodeName,
        Flag::AdvertiseAddress,
        Flag::DryRun,
        Flag::ManifestDir,
        Flag::BackupDir,
        Flag::Output,
        Flag::Kubeconfig,
        Flag::Endpoints,
        Flag::EtcdCaFile,
        Flag::EtcdCertFile,
        Flag::EtcdKeyFile,
        Flag::Timeout,
        Flag::WipeDataDir,
        Flag::MemberId,
        Flag::Force,
        Flag::FromFile,
        Flag::ToFile,
        Flag::TargetVersion,
        Flag::ApiVersion,
        Flag::EnableLearnerMode,
        Flag::Hosts,
        Flag::OutputDir,
        Flag::SnapshotDir,
        Flag::Keep,
        Flag::Etcdutl,
        Flag::SnapshotFile,
        Flag::EtcdVersion,
        Flag::KubeadmVersion,
        Flag::WarnWithin,
        Flag::BundleDir,
        Flag::RenewTarget,
        Flag::SkipPhases,
        Flag::Replace,
        Flag::RollbackOnTimeout,
        Flag::StallTimeout,
        Flag::Cluster,
        Flag::To,
        Flag::CompactAndDefrag,
        Flag::CorruptResolved,
    ];

    /// The long name on the command line (`cert-dir`), which is also the clap id.
    pub fn id(self) -> &'static str {
        match self {
            Flag::Config => "config",
            Flag::CertDir => "cert-dir",
            Flag::NodeName => "node-name",
            Flag::AdvertiseAddress => "advertise-address",
            Flag::DryRun => "dry-run",
            Flag::ManifestDir => "manifest-dir",
            Flag::BackupDir => "backup-dir",
            Flag::Output => "output",
            Flag::Kubeconfig => "kubeconfig",
            Flag::Endpoints => "endpoints",
            Flag::EtcdCaFile => "etcd-cafile",
            Flag::EtcdCertFile => "etcd-certfile",
            Flag::EtcdKeyFile => "etcd-keyfile",
            Flag::Timeout => "timeout",
            Flag::WipeDataDir => "wipe-data-dir",
            Flag::MemberId => "id",
            Flag::Force => "force",
            Flag::FromFile => "from-file",
            Flag::ToFile => "to-file",
            Flag::TargetVersion => "target-version",
            Flag::ApiVersion => "api-version",
            Flag::EnableLearnerMode => "enable-learner-mode",
            Flag::Hosts => "hosts",
            Flag::OutputDir => "output-dir",
            Flag::SnapshotDir => "dir",
            Flag::Keep => "keep",
            Flag::Etcdutl => "etcdutl",
            Flag::SnapshotFile => "snapshot",
            Flag::EtcdVersion => "etcd-version",
            Flag::KubeadmVersion => "kubeadm-version",
            Flag::WarnWithin => "warn-within",
            Flag::BundleDir => "bundle-dir",
            Flag::RenewTarget => "certificate",
            Flag::SkipPhases => "skip-phases",
            Flag::Replace => "replace",
            Flag::RollbackOnTimeout => "rollback-on-timeout",
            Flag::StallTimeout => "stall-timeout",
            Flag::Cluster => "cluster",
            Flag::To => "to",
            Flag::CompactAndDefrag => "compact-and-defrag",
            Flag::CorruptResolved => "corrupt-resolved",
        }
    }

    /// The clap argument: help, value name, parser, default.
    pub fn arg(self) -> Arg {
        let id = self.id();
        let value = |value_name: &'static str, help: &'static str| {
            Arg::new(id)
                .long(id)
                .value_name(value_name)
                .help(help)
                .action(ArgAction::Set)
        };
        let switch =
            |help: &'static str| Arg::new(id).long(id).help(help).action(ArgAction::SetTrue);
        let path = clap::value_parser!(PathBuf);
        match self {
            Flag::Config => value("FILE", "Path to a kubeadm configuration file (InitConfiguration, JoinConfiguration, ClusterConfiguration; v1beta3 or v1beta4)")
                .value_parser(path),
            Flag::CertDir => value("DIR", "The path where certificates are stored [default: the configuration's certificatesDir, else /etc/kubernetes/pki]")
                .value_parser(path),
            Flag::NodeName => value("NAME", "The node name; overrides nodeRegistration.name"),
            Flag::AdvertiseAddress => value("IP", "The address this member advertises; overrides localAPIEndpoint.advertiseAddress")
                .value_parser(clap::value_parser!(IpAddr)),
            Flag::DryRun => switch("Do not change any state, just output what would be done"),
            Flag::ManifestDir => value("DIR", "Where static Pod manifests are written")
                .default_value(phases::manifest::DEFAULT_MANIFEST_DIR)
                .value_parser(path),
            Flag::BackupDir => value("DIR", "Where replaced files and ConfigMaps are backed up (kubeadm's temporary directory)")
                .default_value(phases::manifest::DEFAULT_BACKUP_DIR)
                .value_parser(path),
            Flag::Output => value("FORMAT", "Output format")
                .short('o')
                .value_parser(["text", "table", "yaml", "json"]),
            Flag::Kubeconfig => value("FILE", "The kubeconfig to reach the API server. etcd phases: only if given, to find the members from the etcd Pods when --endpoints and etcd.external.endpoints are unset. migrate-feature-gates: [default: $KUBECONFIG, ~/.kube/config, then /etc/kubernetes/admin.conf]")
                .value_parser(path),
            Flag::Endpoints => value("URLS", "Comma-separated etcd client URLs of existing members")
                .value_delimiter(','),
            Flag::EtcdCaFile => value("FILE", "CA to verify etcd members [default: <cert-dir>/etcd/ca.crt]")
                .value_parser(path),
            Flag::EtcdCertFile => value("FILE", "Client certificate for etcd [default: <cert-dir>/etcd/healthcheck-client.crt]")
                .value_parser(path),
            Flag::EtcdKeyFile => value("FILE", "Client key for etcd [default: <cert-dir>/etcd/healthcheck-client.key]")
                .value_parser(path),
            Flag::Timeout => value("DURATION", "How long to wait, in Go's syntax (90s, 5m0s, 1h) [default: the configuration's timeouts.etcdAPICall; for join-learner and promote at least 10m]")
                .value_parser(|s: &str| GoDuration::parse(s).map_err(|e| e.to_string())),
            Flag::WipeDataDir => switch("Delete a data directory that belongs to another etcd cluster instead of refusing to join"),
            Flag::MemberId => value("ID", "The etcd member ID, in hex as etcdctl prints it"),
            Flag::Force => switch("Go ahead with a step that the safety checks refuse (read the message first)"),
            Flag::FromFile => value("FILE", "Read the ConfigMap from a file (kubectl get cm kubeadm-config -o yaml) instead of the API server")
                .value_parser(path),
            Flag::ToFile => value("FILE", "With --from-file: write the result here instead of standard output")
                .value_parser(path),
            Flag::TargetVersion => value("VERSION", "The Kubernetes version being upgraded to, like v1.33.0 (required by migrate-feature-gates and the upgrade workflow; upgrade etcd: the etcd release kubeadm deploys for it, unless --etcd-version)"),
            Flag::ApiVersion => value("VERSION", "Convert the stored ClusterConfiguration to this kubeadm API version")
                .value_parser(["kubeadm.k8s.io/v1beta4", "v1beta4"]),
            Flag::EnableLearnerMode => switch("Set the EtcdLearnerMode feature gate where the target version needs it set"),
            Flag::Hosts => value("NAME=IP,...", "The external etcd hosts, as name=address pairs")
                .value_delimiter(',')
                .required(true),
            Flag::OutputDir => value("DIR", "Where to write one folder per host")
                .required(true)
                .value_parser(path),
            Flag::SnapshotDir => value("DIR", "Where snapshots are written (created 0700)")
                .default_value(phases::snapshot::DEFAULT_SNAPSHOT_DIR)
                .value_parser(path),
            Flag::Keep => value("N", "After a successful snapshot, keep the newest N of this tool's snapshots in the directory and remove older ones")
                .value_parser(clap::value_parser!(usize)),
            Flag::Etcdutl => value("PATH", "The etcdutl binary to use (etcd 3.4: etcdctl) [default: etcdutl found on $PATH, matching the etcd release in use]")
                .value_parser(path),
            Flag::SnapshotFile => Arg::new(id)
                .value_name("FILE")
                .help("The snapshot file")
                .required(true)
                .action(ArgAction::Set)
                .value_parser(path),
            Flag::EtcdVersion => value("VERSION", "The etcd release to move this member to: an image tag (3.6.14-0) or a release (v3.6.14)"),
            Flag::KubeadmVersion => value("1.N", "Render, sign and check as this kubeadm release does (1.29-1.37), for a kubeadm binary whose minor differs from kubernetesVersion's [default: the minor of kubernetesVersion]")
                .value_parser(parse_kubeadm_minor),
            Flag::WarnWithin => value("DURATION", "Fail when a certificate expires within this time: Go's syntax (720h, 90m) or days (30d)")
                .default_value("30d")
                .value_parser(parse_warn_within),
            Flag::BundleDir => value("DIR", "Every host folder of an external bundle (the --output-dir of phase etcd external-bundle) instead of this node's certificates; its CA key is read from DIR/ca")
                .value_parser(path),
            Flag::RenewTarget => Arg::new(id)
                .value_name("CERTIFICATE")
                .help("The certificate to renew, or all")
                .required(true)
                .action(ArgAction::Set)
                .value_parser(renew_targets()),
            Flag::Replace => switch("This node replaces the member that has its name (or its peer URL and has run): remove that member first, only when it is down (no answer on its client URL, no raft connection from any other member) and its removal keeps quorum, then join"),
            Flag::RollbackOnTimeout => switch("When promote gives up (--timeout or --stall-timeout), remove the learner so that it does not block the next join; never a voter"),
            Flag::StallTimeout => value("DURATION", "Give up on a learner that makes no progress for this long (does not start, its applied index does not move and no snapshot arrives, or it does not answer), in Go's syntax (2m) [default: only --timeout]")
                .value_parser(|s: &str| GoDuration::parse(s).map_err(|e| e.to_string())),
            Flag::SkipPhases => value("PHASES", "Comma-separated phases to skip, named as listed below (certs/etcd-peer)")
                .value_delimiter(',')
                .action(ArgAction::Append),
            Flag::Cluster => switch("Every member of the cluster, one at a time (learners, then followers, the leader last), instead of this node's"),
            Flag::To => value("NAME|ID", "The member to hand leadership to: its name, or its ID in hex as etcdctl prints it")
                .required(true),
            Flag::CompactAndDefrag => switch("For NOSPACE: compact to the current revision and defragment every member (one at a time) before disarming"),
            Flag::CorruptResolved => switch("Disarm a CORRUPT alarm: the diverged member has been replaced or the cluster restored, and the members' hashes agree"),
        }
    }

    /// Whether clap always gives this flag a value (it has a default or is required),
    /// so that reading it can never find it unset.
    pub fn always_set(self) -> bool {
        let arg = self.arg();
        arg.is_required_set() || !arg.get_default_values().is_empty()
    }

    fn is_switch(self) -> bool {
        matches!(self.arg().get_action(), ArgAction::SetTrue)
    }
}

/// `renew`'s names: kubeadm's, without the CA (kubeadm never renews a CA), and `all`.
fn renew_targets() -> Vec<&'static str> {
    let mut names = vec!["all"];
    names.extend(
        phases::pki::CertId::ALL
            .iter()
            .filter(|id| !id.is_ca())
            .map(|id| id.phase_name()),
    );
    names
}

/// `--warn-within`: a Go duration, or a whole number of days (`30d`), which Go's syntax
/// lacks and which is how certificate lifetimes are thought of.
fn parse_warn_within(input: &str) -> Result<GoDuration, String> {
    if let Some(days) = input.strip_suffix('d') {
        return days
            .parse::<u64>()
            .map(|d| GoDuration(std::time::Duration::from_secs(d * 24 * 3600)))
            .map_err(|_| format!("expected a duration like 30d or 720h, got {input:?}"));
    }
    GoDuration::parse(input).map_err(|e| e.to_string())
}

/// `--kubeadm-version`: `1.34`, `v1.34` or a whole release (`v1.34.2`), as the minor of a
/// kubeadm release this tool models.
fn parse_kubeadm_minor(input: &str) -> Result<u64, String> {
    let trimmed = input.trim();
    let version = trimmed.strip_prefix('v').unwrap_or(trimmed);
    let mut parts = version.split('.');
    let minor = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("1"), Some(minor), patch, None)
            if patch.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) =>
        {
            minor.parse::<u64>().ok()
        }
        _ => None,
    };
    let releases = phases::versions::KUBEADM_RELEASES;
    let (oldest, newest) = (releases[0].minor, releases[releases.len() - 1].minor);
    match minor {
        Some(minor) if releases.iter().any(|r| r.minor == minor) => Ok(minor),
        Some(minor) => Err(format!(
            "kubeadm v1.{minor} is not modelled by this tool: it renders as kubeadm v1.{oldest} to v1.{newest} do"
        )),
        None => Err(format!(
            "expected a kubeadm release like 1.34 or v1.34.2, got {input:?}"
        )),
    }
}

/// The parsed command line of one command, with the flags that command takes. Reading
/// a flag the command does not take panics: it is a wiring bug, not an unset flag.
pub struct FlagValues {
    matches: ArgMatches,
    flags: BTreeSet<Flag>,
}

impl FlagValues {
    pub fn new(matches: ArgMatches, flags: impl IntoIterator<Item = Flag>) -> Self {
        Self {
            matches,
            flags: flags.into_iter().collect(),
        }
    }

    /// Whether the command takes `flag` (given or not).
    pub fn takes(&self, flag: Flag) -> bool {
        self.flags.contains(&flag)
    }

    fn check(&self, flag: Flag) {
        assert!(
            self.takes(flag),
            "--{} is read, but the command does not take it: declare Flag::{flag:?} in the phase's flags",
            flag.id()
        );
    }

    /// The value of a flag that takes one; `None` when it was not given. A `T` other
    /// than the flag's parser produces panics (clap checks it).
    pub fn one<T: Clone + Send + Sync + 'static>(&self, flag: Flag) -> Option<T> {
        self.check(flag);
        assert!(
            !flag.is_switch(),
            "--{} is a switch: read it with switch()",
            flag.id()
        );
        self.matches.get_one::<T>(flag.id()).cloned()
    }

    /// The values of a comma-separated flag, empty items dropped.
    pub fn many(&self, flag: Flag) -> Vec<String> {
        self.check(flag);
        self.matches
            .get_many::<String>(flag.id())
            .map(|v| v.filter(|s| !s.is_empty()).cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a switch (`--dry-run`) was given.
    pub fn switch(&self, flag: Flag) -> bool {
        self.check(flag);
        assert!(
            flag.is_switch(),
            "--{} takes a value: read it with one()",
            flag.id()
        );
        self.matches.get_flag(flag.id())
    }
}
