//! What kubeadm does, release by release, as data: the etcd image it deploys for each
//! Kubernetes minor, and how it renders the etcd static Pod. Everything that differs
//! between kubeadm releases is decided here, once, from the kubeadm release being emulated.
//!
//! The kubeadm release is the minor of `kubernetesVersion` (kubeadm upgrades and
//! initialises a control plane with the kubeadm binary of that version) unless the caller
//! names another one ([`KubeadmRelease::select`]): version skew is real, kubeadm 1.35
//! deploys etcd 3.5.24-0 for Kubernetes 1.34 while kubeadm 1.34 deploys 3.6.x for it.
//!
//! Each kubeadm minor is emulated as its newest patch release known here; where a patch
//! release changed something (the etcd tag, mostly), the entry says which.

use std::fmt;

use semver::Version;

/// The oldest and newest kubeadm minors this tool models; outside them the nearest one is
/// used, with a warning.
pub const OLDEST_KUBEADM_MINOR: u64 = 29;
pub const NEWEST_KUBEADM_MINOR: u64 = 37;

/// The probes kubeadm puts on the etcd container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeStyle {
    /// Liveness `/health?exclude=NOSPACE&serializable=true`, startup
    /// `/health?serializable=false`, no readiness probe (k/k#110744, up to kubeadm 1.30),
    /// whatever the etcd tag.
    Health,
    /// Liveness `/livez`, readiness and startup `/readyz` (k/k#124465, from kubeadm 1.31).
    LivezReadyz,
}

/// How kubeadm spells the two etcd flags etcd 3.6 graduated
/// (`--experimental-initial-corrupt-check`, `--experimental-watch-progress-notify-interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagSpelling {
    /// Always `--experimental-initial-corrupt-check=true` and
    /// `--experimental-watch-progress-notify-interval=5s`.
    Experimental,
    /// kubeadm's `version.ParseSemantic(imageTag)` then `.AtLeast("3.6.0")`: the new
    /// spelling (`--feature-gates=InitialCorruptCheck=true`,
    /// `--watch-progress-notify-interval=5s`) from 3.6.0, the old one below *and for a tag
    /// that does not parse*. Go's semantic versions read `-0` as a pre-release, so
    /// `3.6.0-0` is older than 3.6.0 and gets the old spelling, while `3.6.5-0` gets the
    /// new one.
    ByImageTag,
    /// Always the new spelling.
    Graduated,
}

/// One kubeadm minor release, as far as the etcd phases see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubeadmRelease {
    pub minor: u64,
    /// kubeadm's `constants.SupportedEtcdVersion` in this release: `(Kubernetes minor,
    /// etcd image tag)`, ordered by minor.
    pub supported_etcd: &'static [(u64, &'static str)],
    pub probes: ProbeStyle,
    /// The container declares `ports: [{name: probe-port, containerPort: <probe port>,
    /// protocol: TCP}]` and the probes use `port: probe-port` (k/k#132776, from 1.34).
    pub named_probe_port: bool,
    /// `metadata.creationTimestamp: null` in the written manifest: client-go's
    /// `metav1.Time` marshalled a zero time as `null` until Kubernetes 1.34 dropped it
    /// (k/k#130989).
    pub creation_timestamp_null: bool,
    pub flag_spelling: FlagSpelling,
    /// Where the entry comes from.
    pub source: &'static str,
}

/// kubeadm 1.29 to 1.37.
///
/// The `supported_etcd` maps: only part of them could be read at the release; each entry's
/// `source` says which part is read and which is inferred. The tag of the release's own
/// minor is the one every row was checked for.
pub const KUBEADM_RELEASES: &[KubeadmRelease] = &[
    KubeadmRelease {
        minor: 29,
        supported_etcd: &[(27, "3.5.12-0"), (28, "3.5.15-0"), (29, "3.5.15-0")],
        probes: ProbeStyle::Health,
        named_probe_port: false,
        creation_timestamp_null: true,
        flag_spelling: FlagSpelling::Experimental,
        source: "29: 3.5.15-0 from k/k#126397 (release-1.29; the 3.5.17 pick k/k#129671 was \
                 closed unmerged); 28 from k/k#126399; 27 inferred (not read at v1.29.15). \
                 Probes: staticpod/utils.go before k/k#124465.",
    },
    KubeadmRelease {
        minor: 30,
        supported_etcd: &[(28, "3.5.15-0"), (29, "3.5.15-0"), (30, "3.5.15-0")],
        probes: ProbeStyle::Health,
        named_probe_port: false,
        creation_timestamp_null: true,
        flag_spelling: FlagSpelling::Experimental,
        source: "30: 3.5.15-0 from k/k#126395 (release-1.30; 3.5.17 k/k#129673 and 3.5.21 \
                 k/k#131960 closed unmerged); 28, 29 inferred from the #126240 series. \
                 Probes: before k/k#124465.",
    },
    KubeadmRelease {
        minor: 31,
        supported_etcd: &[(29, "3.5.24-0"), (30, "3.5.24-0"), (31, "3.5.24-0")],
        probes: ProbeStyle::LivezReadyz,
        named_probe_port: false,
        creation_timestamp_null: true,
        flag_spelling: FlagSpelling::Experimental,
        source: "31: 3.5.24-0 from k/k#135020 (pick of #134861 to release-1.31); 29, 30 \
                 inferred (the pick bumps the whole map). Probes: k/k#124465 (1.31).",
    },
    KubeadmRelease {
        minor: 32,
        supported_etcd: &[
            (29, "3.5.24-0"),
            (30, "3.5.24-0"),
            (31, "3.5.24-0"),
            (32, "3.5.24-0"),
        ],
        probes: ProbeStyle::LivezReadyz,
        named_probe_port: false,
        creation_timestamp_null: true,
        flag_spelling: FlagSpelling::Experimental,
        source: "release-1.32 constants.go after k/k#135019: 29-32 all 3.5.24-0.",
    },
    KubeadmRelease {
        minor: 33,
        supported_etcd: &[(31, "3.5.24-0"), (32, "3.5.24-0"), (33, "3.5.24-0")],
        probes: ProbeStyle::LivezReadyz,
        named_probe_port: false,
        creation_timestamp_null: true,
        flag_spelling: FlagSpelling::Experimental,
        source: "33: 3.5.24-0 from k/k#135018 (pick of #134861 to release-1.33); 31, 32 \
                 inferred. Flags: local.go of release-1.33 writes the experimental spelling \
                 unconditionally.",
    },
    KubeadmRelease {
        minor: 34,
        supported_etcd: &[
            (31, "3.5.24-0"),
            (32, "3.5.24-0"),
            (33, "3.5.24-0"),
            (34, "3.6.5-0"),
        ],
        probes: ProbeStyle::LivezReadyz,
        named_probe_port: true,
        creation_timestamp_null: false,
        flag_spelling: FlagSpelling::ByImageTag,
        source: "A copy of release-1.34's constants.go read here has 31-33: 3.5.24-0, 34: \
                 3.6.5-0 (v1.34.0 shipped 3.6.4-0); k/k#134861 (31-33 to 3.5.24-0) is in \
                 v1.34.2. No pick of the 3.6.10/3.6.11 bumps (k/k#138392, #138746, merged on \
                 master for 1.37; their notes name the map's keys 34-36) to release-1.34 was \
                 found, so the 3.6.11-0 backport issue 12 reports is not followed. \
                 Flags: local.go's ParseSemantic(tag).AtLeast(\"3.6.0\") (read in a copy of \
                 the 1.34 code). Named port: k/k#132776 (merged July 2025, 1.34).",
    },
    KubeadmRelease {
        minor: 35,
        supported_etcd: &[(33, "3.5.24-0"), (34, "3.5.24-0"), (35, "3.6.6-0")],
        probes: ProbeStyle::LivezReadyz,
        named_probe_port: true,
        creation_timestamp_null: false,
        flag_spelling: FlagSpelling::ByImageTag,
        source: "34: 3.5.24-0 from k/k#134779 (master during the 1.35 cycle: 32-34 to \
                 3.5.24-0); 35: 3.6.6-0 (k/k#135271, in v1.35.0-rc.1); no later etcd change \
                 found in v1.35.1-v1.35.7 nor a pick of k/k#138746 (see 1.34). Not read at \
                 the tag.",
    },
    KubeadmRelease {
        minor: 36,
        supported_etcd: &[(34, "3.6.8-0"), (35, "3.6.8-0"), (36, "3.6.8-0")],
        probes: ProbeStyle::LivezReadyz,
        named_probe_port: true,
        creation_timestamp_null: false,
        flag_spelling: FlagSpelling::Graduated,
        source: "34-36: 3.6.8-0 (k/k#137107, in the 1.36 pre-releases; the 3.6.9 bump \
                 k/k#137956 closed unmerged; 3.6.10 k/k#138392 waited for the post-branch \
                 thaw, so master only; no pick of 3.6.11 k/k#138746 found; v1.36.1-v1.36.4 \
                 changed no etcd). Not read at the tag. Flags: local.go at k/k 0009808f \
                 writes the new spelling unconditionally.",
    },
    KubeadmRelease {
        minor: 37,
        supported_etcd: &[(35, "3.6.11-0"), (36, "3.6.11-0"), (37, "3.7.0-0")],
        probes: ProbeStyle::LivezReadyz,
        named_probe_port: true,
        creation_timestamp_null: false,
        flag_spelling: FlagSpelling::Graduated,
        source: "37: etcd 3.7.0 (k/k#141032's thread: 3.7.0 was in before the 1.37 code \
                 freeze, 3.7.1 was left for later); 35, 36 inferred. Not read at v1.37.0.",
    },
];

impl KubeadmRelease {
    /// The modelled release for kubeadm `1.minor`, or the nearest one and a warning.
    pub fn for_minor(minor: u64) -> (&'static KubeadmRelease, Option<String>) {
        let first = &KUBEADM_RELEASES[0];
        let last = &KUBEADM_RELEASES[KUBEADM_RELEASES.len() - 1];
        if let Some(release) = KUBEADM_RELEASES.iter().find(|r| r.minor == minor) {
            return (release, None);
        }
        let nearest = if minor < first.minor { first } else { last };
        (
            nearest,
            Some(format!(
                "kubeadm v1.{minor} is not modelled by this tool (it knows v1.{} to v1.{}); \
                 rendering as kubeadm v1.{} does",
                first.minor, last.minor, nearest.minor
            )),
        )
    }

    /// The kubeadm release to emulate: `requested` (the caller's choice of kubeadm minor)
    /// wins, else the minor of `kubernetes_version`, else the newest release modelled.
    pub fn select(
        requested: Option<u64>,
        kubernetes_version: Option<&Version>,
    ) -> (&'static KubeadmRelease, Option<String>) {
        match (requested, kubernetes_version) {
            (Some(minor), _) => Self::for_minor(minor),
            (None, Some(k8s)) if k8s.major == 1 => Self::for_minor(k8s.minor),
            (None, Some(k8s)) => {
                let (release, _) = Self::for_minor(NEWEST_KUBEADM_MINOR);
                (
                    release,
                    Some(format!(
                        "Kubernetes v{k8s} is not a 1.x release; rendering as kubeadm v1.{} does",
                        release.minor
                    )),
                )
            }
            (None, None) => Self::for_minor(NEWEST_KUBEADM_MINOR),
        }
    }

    /// `v1.37`, for messages.
    pub fn name(&self) -> String {
        format!("v1.{}", self.minor)
    }

    /// kubeadm's `EtcdSupportedVersion(SupportedEtcdVersion, kubernetesVersion)` in this
    /// release: the tag for `k8s`'s minor, else the nearest entry (the oldest or the
    /// newest) and kubeadm's warning.
    pub fn etcd_tag_for(&self, k8s: &Version) -> (&'static str, Option<String>) {
        let map = self.supported_etcd;
        let (first_minor, first_tag) = map[0];
        let (last_minor, last_tag) = map[map.len() - 1];
        let nearest = match k8s.major {
            0 => Some(first_tag),
            1 if k8s.minor < first_minor => Some(first_tag),
            1 if k8s.minor > last_minor => Some(last_tag),
            1 => None,
            _ => Some(last_tag),
        };
        if let Some(tag) = nearest {
            return (
                tag,
                Some(format!(
                    "could not find officially supported version of etcd for Kubernetes v{}.{}.{}, \
                     falling back to the nearest etcd version ({tag}); kubeadm v1.{} knows \
                     Kubernetes v1.{first_minor} to v1.{last_minor}",
                    k8s.major, k8s.minor, k8s.patch, self.minor
                )),
            );
        }
        let tag = map
            .iter()
            .find(|(minor, _)| *minor == k8s.minor)
            .map(|(_, tag)| *tag)
            .expect("each map covers every minor between its first and last entry");
        (tag, None)
    }

    /// kubeadm's `DefaultEtcdVersion`: the tag of the release's own minor.
    pub fn default_etcd_tag(&self) -> &'static str {
        self.supported_etcd[self.supported_etcd.len() - 1].1
    }

    /// Whether kubeadm of this release writes the graduated spelling of etcd's flags for
    /// the image tag `tag`.
    pub fn graduated_flags_for(&self, tag: &str) -> bool {
        match self.flag_spelling {
            FlagSpelling::Experimental => false,
            FlagSpelling::Graduated => true,
            FlagSpelling::ByImageTag => go_semantic_at_least_3_6_0(tag),
        }
    }
}

/// k8s.io/apimachinery's `version.ParseSemantic(tag)` followed by
/// `.AtLeast(MustParseSemantic("3.6.0"))`: a leading `v` is allowed, the version needs
/// exactly three numeric parts, and a pre-release (`-0`, `-rc.1`) sorts below the release
/// (semver's rule, which the `semver` crate follows). A tag that does not parse is false,
/// as in kubeadm.
fn go_semantic_at_least_3_6_0(tag: &str) -> bool {
    let bare = tag.strip_prefix('v').unwrap_or(tag);
    Version::parse(bare).is_ok_and(|v| v >= Version::new(3, 6, 0))
}

/// The etcd image tag kubeadm v`k8s` deploys for its own minor (the upgrade and init
/// paths run the kubeadm of the target version), with kubeadm's warning when the minor is
/// outside the map of the nearest kubeadm release modelled.
pub fn etcd_version_for_kubernetes(k8s: &Version) -> (String, Option<String>) {
    // Only the map's own fallback is worth a warning here: which release was modelled is
    // the renderer's concern, and its map covers the minors around it.
    let (release, _) = KubeadmRelease::select(None, Some(k8s));
    let (tag, warning) = release.etcd_tag_for(k8s);
    (tag.to_string(), warning)
}

/// Why a Kubernetes version is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Kubernetes version {input:?}: {reason}")]
pub struct KubernetesVersionError {
    pub input: String,
    pub reason: String,
}

/// A Kubernetes version as users and kubeadm write it: `v1.33.2`, `1.33.2`,
/// `v1.34.0-rc.1`. Release labels (`stable`, `latest`) are not resolved.
pub fn parse_kubernetes_version(input: &str) -> Result<Version, KubernetesVersionError> {
    let err = |reason: String| KubernetesVersionError {
        input: input.to_string(),
        reason,
    };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(err("it is empty".into()));
    }
    let bare = trimmed.strip_prefix('v').unwrap_or(trimmed);
    let version = Version::parse(bare).map_err(|e| err(e.to_string()))?;
    if version.major != 1 {
        return Err(err(format!(
            "Kubernetes versions are 1.x, not {}.x",
            version.major
        )));
    }
    Ok(version)
}

/// Why an etcd image tag is not a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTagError {
    /// The tag as given.
    pub tag: String,
    /// What was wrong with it.
    pub reason: String,
}

impl fmt::Display for EtcdTagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "etcd image tag {:?} is not an etcd version: {} (expected a tag like \"3.5.16-0\" or \"v3.4.23\")",
            self.tag, self.reason
        )
    }
}

impl std::error::Error for EtcdTagError {}

/// The etcd release an image tag stands for: `"3.5.16-0"` → 3.5.16, `"v3.4.23"` → 3.4.23.
///
/// NB: the `-N` of registry.k8s.io tags is the image revision, not a semver
/// pre-release; kept, it would sort `3.5.16-0` *below* 3.5.16. Anything after the
/// `X.Y.Z` (`-0`, `-custom`, `+build`) is therefore dropped.
pub fn etcd_semver_from_tag(tag: &str) -> Result<Version, EtcdTagError> {
    let err = |reason: &str| EtcdTagError {
        tag: tag.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = tag.trim();
    let without_v = trimmed.strip_prefix('v').unwrap_or(trimmed);
    let core = without_v
        .split(['-', '+'])
        .next()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| err("it is empty"))?;
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 {
        return Err(err("it does not have the form MAJOR.MINOR.PATCH"));
    }
    let mut numbers = [0u64; 3];
    for (slot, part) in numbers.iter_mut().zip(&parts) {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("MAJOR, MINOR and PATCH must be numbers"));
        }
        *slot = part
            .parse()
            .map_err(|_| err("a version number is too large"))?;
    }
    Ok(Version::new(numbers[0], numbers[1], numbers[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn the_releases_are_contiguous_and_every_map_is_too() {
        assert_eq!(KUBEADM_RELEASES[0].minor, OLDEST_KUBEADM_MINOR);
        assert_eq!(
            KUBEADM_RELEASES[KUBEADM_RELEASES.len() - 1].minor,
            NEWEST_KUBEADM_MINOR
        );
        for pair in KUBEADM_RELEASES.windows(2) {
            assert_eq!(pair[0].minor + 1, pair[1].minor);
        }
        for release in KUBEADM_RELEASES {
            // kubeadm's map always ends at its own minor.
            assert_eq!(
                release.supported_etcd.last().unwrap().0,
                release.minor,
                "{release:?}"
            );
            for pair in release.supported_etcd.windows(2) {
                assert_eq!(pair[0].0 + 1, pair[1].0, "{release:?}");
            }
            for (_, tag) in release.supported_etcd {
                assert!(etcd_semver_from_tag(tag).unwrap() >= v("3.5.11"), "{tag}");
            }
        }
    }

    /// The differences issue 12's audit found, one assertion per kubeadm source.
    #[test]
    fn each_release_renders_as_its_source_says() {
        let r = |minor| KubeadmRelease::for_minor(minor).0;
        // k/k#124465: /livez and /readyz from 1.31.
        assert_eq!(r(30).probes, ProbeStyle::Health);
        assert_eq!(r(31).probes, ProbeStyle::LivezReadyz);
        // k/k#132776: the named probe port from 1.34.
        assert!(!r(33).named_probe_port);
        assert!(r(34).named_probe_port);
        // k/k#130989: no creationTimestamp from 1.34.
        assert!(r(33).creation_timestamp_null);
        assert!(!r(34).creation_timestamp_null);
        // local.go per release: 1.31-1.33 old, 1.34/1.35 by tag, 1.36+ new.
        assert!(!r(33).graduated_flags_for("3.6.5-0"));
        assert!(r(34).graduated_flags_for("3.6.5-0"));
        assert!(
            !r(34).graduated_flags_for("3.6.0-0"),
            "3.6.0-0 is a pre-release"
        );
        assert!(r(35).graduated_flags_for("v3.6.0"));
        assert!(!r(35).graduated_flags_for("3.5.24-0"));
        assert!(
            !r(35).graduated_flags_for("latest"),
            "unparsable: old spelling"
        );
        assert!(r(36).graduated_flags_for("3.5.24-0"));
    }

    #[test]
    fn skew_follows_the_kubeadm_release() {
        let k8s_134 = v("1.34.3");
        let (kubeadm_134, _) = KubeadmRelease::for_minor(34);
        let (kubeadm_135, _) = KubeadmRelease::for_minor(35);
        assert_eq!(kubeadm_134.etcd_tag_for(&k8s_134), ("3.6.5-0", None));
        assert_eq!(kubeadm_135.etcd_tag_for(&k8s_134), ("3.5.24-0", None));
        let (tag, warning) = kubeadm_135.etcd_tag_for(&v("1.36.0"));
        assert_eq!(tag, "3.6.6-0");
        assert_eq!(
            warning.unwrap(),
            "could not find officially supported version of etcd for Kubernetes v1.36.0, \
             falling back to the nearest etcd version (3.6.6-0); kubeadm v1.35 knows \
             Kubernetes v1.33 to v1.35"
        );
        // kubeadm 1.37 deploys master's 3.6.11-0 (k/k#138746) for the skewed 1.36.
        let (kubeadm_137, _) = KubeadmRelease::for_minor(37);
        assert_eq!(kubeadm_137.etcd_tag_for(&v("1.36.2")), ("3.6.11-0", None));
    }

    #[test]
    fn the_release_is_the_requested_one_else_kubernetes_version_else_the_newest() {
        let k8s = v("1.31.2");
        assert_eq!(KubeadmRelease::select(Some(33), Some(&k8s)).0.minor, 33);
        assert_eq!(KubeadmRelease::select(None, Some(&k8s)).0.minor, 31);
        assert_eq!(
            KubeadmRelease::select(None, None).0.minor,
            NEWEST_KUBEADM_MINOR
        );
        let (release, warning) = KubeadmRelease::select(None, Some(&v("1.26.0")));
        assert_eq!(release.minor, 29);
        assert_eq!(
            warning.unwrap(),
            "kubeadm v1.26 is not modelled by this tool (it knows v1.29 to v1.37); rendering as kubeadm v1.29 does"
        );
        assert_eq!(KubeadmRelease::select(Some(40), None).0.minor, 37);
    }

    #[test]
    fn known_minors_use_their_own_release() {
        let cases = [
            ("1.29.0", "3.5.15-0"),
            ("1.30.14", "3.5.15-0"),
            ("1.31.0", "3.5.24-0"),
            ("1.33.1", "3.5.24-0"),
            ("1.34.0", "3.6.5-0"),
            ("1.35.2", "3.6.6-0"),
            ("1.36.2", "3.6.8-0"),
            ("1.37.0", "3.7.0-0"),
        ];
        for (k8s, tag) in cases {
            assert_eq!(
                etcd_version_for_kubernetes(&v(k8s)),
                (tag.to_string(), None),
                "{k8s}"
            );
        }
        let (tag, warning) = etcd_version_for_kubernetes(&v("1.38.0"));
        assert_eq!(tag, "3.7.0-0");
        assert!(warning.unwrap().contains("v1.38.0"));
    }

    #[test]
    fn kubernetes_versions_parse_once_for_everyone() {
        assert_eq!(parse_kubernetes_version("v1.33.2").unwrap(), v("1.33.2"));
        assert_eq!(
            parse_kubernetes_version(" 1.34.0-rc.1").unwrap(),
            v("1.34.0-rc.1")
        );
        let err = parse_kubernetes_version("stable").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid Kubernetes version \"stable\": unexpected character 's' while parsing major version number"
        );
        assert_eq!(
            parse_kubernetes_version("2.0.0").unwrap_err().reason,
            "Kubernetes versions are 1.x, not 2.x"
        );
        assert_eq!(
            parse_kubernetes_version("").unwrap_err().reason,
            "it is empty"
        );
    }

    #[test]
    fn tags_parse_to_the_etcd_release() {
        assert_eq!(etcd_semver_from_tag("3.5.16-0").unwrap(), v("3.5.16"));
        assert_eq!(etcd_semver_from_tag("v3.4.23").unwrap(), v("3.4.23"));
        assert_eq!(etcd_semver_from_tag("3.6.9").unwrap(), v("3.6.9"));
        assert_eq!(etcd_semver_from_tag("3.5.9-custom.1").unwrap(), v("3.5.9"));
        assert_eq!(etcd_semver_from_tag("v3.3.10+git").unwrap(), v("3.3.10"));
        // The image revision must not make 3.4.0-0 sort below 3.4.0.
        assert!(etcd_semver_from_tag("3.4.0-0").unwrap() >= v("3.4.0"));
    }

    #[test]
    fn bad_tags_are_errors_that_name_the_tag() {
        let cases = [
            ("latest", "it does not have the form MAJOR.MINOR.PATCH"),
            ("", "it is empty"),
            ("v", "it is empty"),
            ("3.5", "it does not have the form MAJOR.MINOR.PATCH"),
            ("3.x.1", "MAJOR, MINOR and PATCH must be numbers"),
            ("3.5.99999999999999999999", "a version number is too large"),
        ];
        for (tag, reason) in cases {
            let err = etcd_semver_from_tag(tag).unwrap_err();
            assert_eq!(err.reason, reason, "{tag:?}");
            assert_eq!(
                err.to_string(),
                format!(
                    "etcd image tag {tag:?} is not an etcd version: {reason} (expected a tag like \"3.5.16-0\" or \"v3.4.23\")"
                )
            );
        }
    }
}
