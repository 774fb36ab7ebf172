//! The etcd container command: kubeadm's `getEtcdCommand` and `ArgumentsToCommand`
//! (`cmd/kubeadm/app/phases/etcd/local.go`, `cmd/kubeadm/app/util/arguments.go`), with the
//! flags a given etcd release understands.

use std::net::IpAddr;
use std::path::Path;

use crate::config::Arg;
use crate::pki::CertId;
use crate::versions::KubeadmRelease;

use super::{client_url, peer_url, Member};

/// kubeadm's `EtcdMetricsPort`.
pub const METRICS_PORT: u16 = 2381;

/// What decides the etcd container's command and probes: the etcd release in the image
/// (what it understands) and the kubeadm release emulated (how kubeadm words it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdProfile {
    pub version: semver::Version,
    /// kubeadm's spelling of the graduated flags for this image tag
    /// ([`crate::versions::KubeadmRelease::graduated_flags_for`]).
    pub graduated_flags: bool,
    pub release: &'static KubeadmRelease,
}

impl EtcdProfile {
    /// The profile kubeadm `release` renders for the image tag `tag` (etcd `version`),
    /// except where etcd could not start with kubeadm's spelling: etcd before 3.6 knows
    /// only the experimental flags and etcd 3.7 only the graduated ones (3.7 removed the
    /// `--experimental-*` spellings). There this tool writes what etcd runs, and
    /// [`EtcdProfile::deviation`] says so.
    pub fn new(release: &'static KubeadmRelease, tag: &str, version: semver::Version) -> Self {
        let kubeadm = release.graduated_flags_for(tag);
        let v = (version.major, version.minor);
        let graduated_flags = if v < (3, 6) {
            false
        } else if v >= (3, 7) {
            true
        } else {
            kubeadm
        };
        Self {
            graduated_flags,
            version,
            release,
        }
    }

    /// Why the flags differ from what kubeadm `release` writes, when they do.
    pub fn deviation(&self, tag: &str) -> Option<String> {
        let kubeadm = self.release.graduated_flags_for(tag);
        (kubeadm != self.graduated_flags).then(|| {
            let (theirs, ours) = if kubeadm {
                ("--feature-gates=InitialCorruptCheck=true and --watch-progress-notify-interval", "the --experimental-* spellings")
            } else {
                ("--experimental-initial-corrupt-check and --experimental-watch-progress-notify-interval", "the graduated spellings")
            };
            format!(
                "kubeadm {} writes {theirs} for etcd {tag}, which etcd {} does not accept; writing {ours} instead",
                self.release.name(),
                self.version
            )
        })
    }

    /// Major, minor, patch only: an image tag's pre-release part (`3.6.0-rc.1`) must not
    /// make a 3.6 release look like 3.5.
    fn at_least(&self, major: u64, minor: u64, patch: u64) -> bool {
        (self.version.major, self.version.minor, self.version.patch) >= (major, minor, patch)
    }

    /// `--experimental-watch-progress-notify-interval` appeared in etcd 3.4.11 (etcd PR
    /// #12216, CHANGELOG-3.4); older 3.4 releases exit on the unknown flag. kubeadm always
    /// passes it; this tool leaves it out for those releases (a deliberate deviation: the
    /// alternative is an etcd that never starts).
    pub fn knows_watch_progress_notify_interval(&self) -> bool {
        self.at_least(3, 4, 11)
    }

    /// `/livez` and `/readyz` exist from etcd 3.5.11 (kubeadm's probes need them from 1.31).
    pub fn serves_livez_readyz(&self) -> bool {
        self.at_least(3, 5, 11)
    }

    /// `/readyz` answers 503 while the member is a learner from etcd 3.5.19 (and in every
    /// 3.6 and 3.7 release).
    pub fn readyz_refuses_learners(&self) -> bool {
        self.at_least(3, 5, 19)
    }

    /// Learners, which every join relies on, exist from etcd 3.4.
    pub fn supports_learners(&self) -> bool {
        crate::membership::version::supports_learners(&self.version)
    }
}

/// Everything [`etcd_command`] depends on.
#[derive(Debug, Clone)]
pub struct CommandInput<'a> {
    pub node_name: &'a str,
    pub advertise_address: IpAddr,
    pub data_dir: &'a Path,
    pub cert_dir: &'a Path,
    /// `None` for the first member of a new cluster.
    pub initial_cluster: Option<&'a [Member]>,
    pub extra_args: &'a [Arg],
    pub profile: &'a EtcdProfile,
}

/// The localhost address of the advertise address's family, as kubeadm picks it.
pub fn localhost_for(advertise_address: IpAddr) -> &'static str {
    if advertise_address.is_ipv6() {
        "::1"
    } else {
        "127.0.0.1"
    }
}

/// kubeadm's default arguments for this member, before extraArgs.
pub fn default_args(input: &CommandInput<'_>) -> Vec<Arg> {
    let arg = |name: &str, value: String| Arg {
        name: name.to_string(),
        value,
    };
    let path = |p: std::path::PathBuf| p.display().to_string();
    let adv = input.advertise_address;
    let localhost: IpAddr = localhost_for(adv).parse().expect("a literal address");
    let profile = input.profile;

    let mut args = vec![arg("name", input.node_name.to_string())];
    if profile.graduated_flags {
        args.push(arg("feature-gates", "InitialCorruptCheck=true".into()));
    } else {
        args.push(arg("experimental-initial-corrupt-check", "true".into()));
    }
    args.extend([
        arg(
            "listen-client-urls",
            format!("{},{}", client_url(localhost), client_url(adv)),
        ),
        arg("advertise-client-urls", client_url(adv)),
        arg("listen-peer-urls", peer_url(adv)),
        arg("initial-advertise-peer-urls", peer_url(adv)),
        arg("data-dir", input.data_dir.display().to_string()),
        arg(
            "cert-file",
            path(CertId::EtcdServer.cert_path(input.cert_dir)),
        ),
        arg(
            "key-file",
            path(CertId::EtcdServer.key_path(input.cert_dir)),
        ),
        arg(
            "trusted-ca-file",
            path(CertId::EtcdCa.cert_path(input.cert_dir)),
        ),
        arg("client-cert-auth", "true".into()),
        arg(
            "peer-cert-file",
            path(CertId::EtcdPeer.cert_path(input.cert_dir)),
        ),
        arg(
            "peer-key-file",
            path(CertId::EtcdPeer.key_path(input.cert_dir)),
        ),
        arg(
            "peer-trusted-ca-file",
            path(CertId::EtcdCa.cert_path(input.cert_dir)),
        ),
        arg("peer-client-cert-auth", "true".into()),
        arg("snapshot-count", "10000".into()),
        arg(
            "listen-metrics-urls",
            format!(
                "http://{}",
                std::net::SocketAddr::new(localhost, METRICS_PORT)
            ),
        ),
    ]);
    if profile.graduated_flags {
        args.push(arg("watch-progress-notify-interval", "5s".into()));
    } else if profile.knows_watch_progress_notify_interval() {
        args.push(arg(
            "experimental-watch-progress-notify-interval",
            "5s".into(),
        ));
    }

    match input.initial_cluster {
        None => args.push(arg(
            "initial-cluster",
            format!("{}={}", input.node_name, peer_url(adv)),
        )),
        Some(members) => {
            let list: Vec<String> = members
                .iter()
                .map(|m| format!("{}={}", m.name, m.peer_url))
                .collect();
            args.push(arg("initial-cluster", list.join(",")));
            args.push(arg("initial-cluster-state", "existing".into()));
        }
    }
    args
}

/// The container command: `etcd` followed by the default arguments merged with extraArgs.
pub fn etcd_command(input: &CommandInput<'_>) -> Vec<String> {
    let mut command = vec!["etcd".to_string()];
    command.extend(arguments_to_command(&default_args(input), input.extra_args));
    command
}

/// kubeadm's `ArgumentsToCommand`: every override is kept (a v1beta4 list may repeat a
/// name), a name that appears among the overrides drops *all* base arguments of that
/// name, and the result is sorted by name, then value, as `--name=value`.
pub fn arguments_to_command(base: &[Arg], overrides: &[Arg]) -> Vec<String> {
    let mut args: Vec<&Arg> = overrides.iter().collect();
    args.extend(
        base.iter()
            .filter(|b| !overrides.iter().any(|o| o.name == b.name)),
    );
    args.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.value.cmp(&b.value)));
    args.into_iter()
        .map(|a| format!("--{}={}", a.name, a.value))
        .collect()
}

/// The value kubeadm's `GetArgValue(args, name, -1)` finds: the *last* entry of that name.
pub fn last_arg_value<'a>(args: &'a [Arg], name: &str) -> Option<&'a str> {
    args.iter()
        .rev()
        .find(|a| a.name == name)
        .map(|a| a.value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(name: &str, value: &str) -> Arg {
        Arg {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn overrides_replace_every_default_of_the_name_and_keep_duplicates() {
        let base = [arg("b", "1"), arg("a", "x"), arg("a", "y"), arg("c", "3")];
        let overrides = [arg("a", "z"), arg("d", "2"), arg("a", "m")];
        assert_eq!(
            arguments_to_command(&base, &overrides),
            ["--a=m", "--a=z", "--b=1", "--c=3", "--d=2"]
        );
    }

    #[test]
    fn the_last_entry_of_a_name_wins_lookups() {
        let args = [
            arg("listen-metrics-urls", "http://a:1"),
            arg("listen-metrics-urls", "http://b:2"),
        ];
        assert_eq!(
            last_arg_value(&args, "listen-metrics-urls"),
            Some("http://b:2")
        );
        assert_eq!(last_arg_value(&args, "x"), None);
    }

    #[test]
    fn profiles_follow_etcd_releases() {
        let release = KubeadmRelease::for_minor(36).0;
        let p = |v: &str| EtcdProfile::new(release, v, semver::Version::parse(v).unwrap());
        assert!(!p("3.4.10").knows_watch_progress_notify_interval());
        assert!(p("3.4.11").knows_watch_progress_notify_interval());
        assert!(!p("3.5.10").serves_livez_readyz());
        assert!(p("3.5.11").serves_livez_readyz());
        assert!(!p("3.5.18").readyz_refuses_learners());
        assert!(p("3.5.19").readyz_refuses_learners());
        assert!(p("3.7.1").readyz_refuses_learners());
        assert!(!p("3.3.15").supports_learners());
        assert!(p("3.4.0").supports_learners());
    }

    #[test]
    fn flags_etcd_cannot_run_are_not_written_and_the_deviation_is_told() {
        let v = |s: &str| semver::Version::parse(s).unwrap();
        // kubeadm 1.36 always writes the graduated spelling; etcd 3.5 exits on it.
        let p = EtcdProfile::new(KubeadmRelease::for_minor(36).0, "3.5.24-0", v("3.5.24"));
        assert!(!p.graduated_flags);
        assert!(p
            .deviation("3.5.24-0")
            .unwrap()
            .contains("etcd 3.5.24 does not accept"));
        // kubeadm 1.33 always writes the experimental spelling; etcd 3.7 removed it.
        let p = EtcdProfile::new(KubeadmRelease::for_minor(33).0, "3.7.0-0", v("3.7.0"));
        assert!(p.graduated_flags);
        assert!(p.deviation("3.7.0-0").is_some());
        // etcd 3.6 takes both: kubeadm's rule stands, 3.6.0-0 being a pre-release.
        let p = EtcdProfile::new(KubeadmRelease::for_minor(34).0, "3.6.0-0", v("3.6.0"));
        assert!(!p.graduated_flags);
        assert_eq!(p.deviation("3.6.0-0"), None);
    }
}
