//! The etcd version kubeadm deploys for each Kubernetes minor (kubeadm's
//! `constants.SupportedEtcdVersion` and `EtcdSupportedVersion`), kept as data.
//!
//! kubeadm upgrades etcd with the kubeadm binary of the *target* version, and that binary
//! looks its own minor up in its own map. So the tag that matters for "Kubernetes v1.X"
//! is entry `X` of the map in the last release of branch `release-1.X`, which is what
//! [`SUPPORTED_ETCD_VERSIONS`] records.

use std::fmt;

use semver::Version;

/// `(Kubernetes minor, etcd image tag)` for Kubernetes 1.22 to 1.36, ordered by minor.
///
/// Where each row comes from (kubernetes/kubernetes PRs that set the tag in the
/// `release-1.X` branch, or kubeadm's constants.go as cited):
/// - 1.22: 3.5.6-0. k/k#113101 (closed with "etcd has been updated to 3.5.6 in
///   release-1.22 branch").
/// - 1.23, 1.24: 3.5.6-0. k/k#114107 and k/k#114106 (cherry picks of #114093, "use etcd
///   3.5.6-0 after promotion").
/// - 1.25: 3.5.6-0. Inferred: the #114093 series covered the then supported branches and
///   the 3.5.10 cherry pick to release-1.25 (k/k#121701) was closed unmerged. Not
///   confirmed against the final release-1.25 constants.go.
/// - 1.26: 3.5.10-0. k/k#121803 (cherry pick of #121566 to release-1.26).
/// - 1.27: 3.5.12-0. Inferred: release-1.28's map listed `27: "3.5.12-0"` before
///   k/k#126399; the release-1.27 cherry pick itself was not found.
/// - 1.28: 3.5.15-0. k/k#126399 (cherry pick of #126240 to release-1.28).
/// - 1.29: 3.5.15-0. k/k#126397 (release-1.29); later cherry picks (3.5.17: k/k#129671)
///   were closed unmerged. A 3.5.16 cherry pick to release-1.29 was not found.
/// - 1.30: 3.5.15-0. k/k#126395 (release-1.30); 3.5.17 (k/k#129673) and 3.5.21
///   (k/k#131960, "1.30 is end of life") were closed unmerged.
/// - 1.31, 1.32, 1.33: 3.5.24-0. k/k#135020, #135019, #135018 (cherry picks of #134861,
///   "Bump supported etcd version to v3.5.24 for release v1.31, v1.32, and v1.33").
/// - 1.34, 1.35, 1.36: 3.6.9-0. kubeadm constants.go on master after k/k#137956 ("etcd:
///   update etcd image to v3.6.9": `34: "3.6.9-0", 35: "3.6.9-0", 36: "3.6.9-0"`).
pub const SUPPORTED_ETCD_VERSIONS: &[(u64, &str)] = &[
    (22, "3.5.6-0"),
    (23, "3.5.6-0"),
    (24, "3.5.6-0"),
    (25, "3.5.6-0"),
    (26, "3.5.10-0"),
    (27, "3.5.12-0"),
    (28, "3.5.15-0"),
    (29, "3.5.15-0"),
    (30, "3.5.15-0"),
    (31, "3.5.24-0"),
    (32, "3.5.24-0"),
    (33, "3.5.24-0"),
    (34, "3.6.9-0"),
    (35, "3.6.9-0"),
    (36, "3.6.9-0"),
];

/// The etcd image tag kubeadm v`k8s` deploys (for example `"3.5.24-0"`), and a warning
/// when `k8s`'s minor is not in [`SUPPORTED_ETCD_VERSIONS`] and the nearest entry (the
/// oldest or the newest) was used instead, as kubeadm's `EtcdSupportedVersion` does.
///
/// Only the minor is looked up: kubeadm keys its map by minor and so does this table. A
/// major other than 1 counts as older or newer than every entry.
pub fn etcd_version_for_kubernetes(k8s: &Version) -> (String, Option<String>) {
    let (first_minor, first_tag) = SUPPORTED_ETCD_VERSIONS[0];
    let (last_minor, last_tag) = SUPPORTED_ETCD_VERSIONS[SUPPORTED_ETCD_VERSIONS.len() - 1];
    let nearest = match k8s.major {
        0 => Some(first_tag),
        1 if k8s.minor < first_minor => Some(first_tag),
        1 if k8s.minor > last_minor => Some(last_tag),
        1 => None,
        _ => Some(last_tag),
    };
    if let Some(tag) = nearest {
        let warning = format!(
            "could not find officially supported version of etcd for Kubernetes v{}.{}.{}, \
             falling back to the nearest etcd version ({tag}); this tool knows Kubernetes \
             v1.{first_minor} to v1.{last_minor}",
            k8s.major, k8s.minor, k8s.patch
        );
        return (tag.to_string(), Some(warning));
    }
    let tag = SUPPORTED_ETCD_VERSIONS
        .iter()
        .find(|(minor, _)| *minor == k8s.minor)
        .map(|(_, tag)| *tag)
        .expect("the table covers every minor between its first and last entry");
    (tag.to_string(), None)
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
    fn the_table_is_contiguous_and_every_tag_parses() {
        for pair in SUPPORTED_ETCD_VERSIONS.windows(2) {
            assert_eq!(pair[0].0 + 1, pair[1].0, "{pair:?}");
        }
        for (minor, tag) in SUPPORTED_ETCD_VERSIONS {
            let etcd = etcd_semver_from_tag(tag).unwrap();
            assert!(etcd >= v("3.5.0"), "1.{minor}: {tag}");
        }
    }

    #[test]
    fn known_minors_use_their_final_tag() {
        let cases = [
            ("1.22.0", "3.5.6-0"),
            ("1.26.15", "3.5.10-0"),
            ("1.28.3", "3.5.15-0"),
            ("1.31.0", "3.5.24-0"),
            ("1.32.7", "3.5.24-0"),
            ("1.33.1", "3.5.24-0"),
            ("1.34.0", "3.6.9-0"),
            ("1.36.2", "3.6.9-0"),
        ];
        for (k8s, tag) in cases {
            assert_eq!(
                etcd_version_for_kubernetes(&v(k8s)),
                (tag.to_string(), None),
                "{k8s}"
            );
        }
    }

    #[test]
    fn unknown_minors_fall_back_to_the_nearest_with_a_warning() {
        let (tag, warning) = etcd_version_for_kubernetes(&v("1.37.0"));
        assert_eq!(tag, "3.6.9-0");
        assert_eq!(
            warning.unwrap(),
            "could not find officially supported version of etcd for Kubernetes v1.37.0, \
             falling back to the nearest etcd version (3.6.9-0); this tool knows Kubernetes \
             v1.22 to v1.36"
        );
        let (tag, warning) = etcd_version_for_kubernetes(&v("1.21.14"));
        assert_eq!(tag, "3.5.6-0");
        assert!(warning.unwrap().contains("v1.21.14"));
        assert_eq!(etcd_version_for_kubernetes(&v("2.0.0")).0, "3.6.9-0");
        assert_eq!(etcd_version_for_kubernetes(&v("0.9.0")).0, "3.5.6-0");
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
