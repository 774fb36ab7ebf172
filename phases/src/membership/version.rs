//! Which etcd versions can take a learner.

use super::{MembershipError, Result};

/// Learners (MemberAdd with `isLearner`, MemberPromote) arrived in etcd 3.4.
pub const MIN_LEARNER_VERSION: semver::Version = semver::Version::new(3, 4, 0);

/// Checks that the member at `endpoint`, which reported `version` in its Status, supports
/// learners. A version that does not parse is refused too: guessing would mean adding a
/// member to a cluster that may not understand what a learner is.
pub fn check_learner_support(endpoint: &str, version: &str) -> Result<semver::Version> {
    let refuse = || MembershipError::UnsupportedVersion {
        endpoint: endpoint.to_string(),
        version: version.to_string(),
    };
    let parsed = parse_etcd_version(version).ok_or_else(refuse)?;
    if parsed < MIN_LEARNER_VERSION {
        return Err(refuse());
    }
    Ok(parsed)
}

/// Whether etcd `v` refuses every member add, a learner's included, unless the member
/// serving it has been connected to every voting member for 5 s (`isConnectedFullySince`
/// in `mayAddMember`): all of 3.4, 3.5 before 3.5.30 and 3.6 before 3.6.11, which count
/// a quorum instead (etcd#21669, #21667).
pub fn add_needs_every_voter(v: &semver::Version) -> bool {
    match (v.major, v.minor) {
        (3, 0..=4) => true,
        (3, 5) => v.patch < 30,
        (3, 6) => v.patch < 11,
        _ => false,
    }
}

/// etcd reports `3.5.1`; images are tagged `3.5.1-0` and people write `v3.5.1`.
pub fn parse_etcd_version(version: &str) -> Option<semver::Version> {
    let v = version.trim().trim_start_matches('v');
    let v = v.split_once('-').map_or(v, |(core, _)| core);
    semver::Version::parse(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_older_than_3_4_is_refused() {
        for version in ["3.3.27", "3.2.0", "2.3.8", "", "banana"] {
            let err = check_learner_support("https://10.0.0.1:2379", version).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("https://10.0.0.1:2379: etcd learner mode is not supported by this etcd version ({version})")
            );
        }
    }

    #[test]
    fn releases_before_the_quorum_based_add_check_need_every_voter() {
        for (version, strict) in [
            ("3.4.23", true),
            ("3.5.1", true),
            ("3.5.29", true),
            ("3.5.30", false),
            ("3.6.10", true),
            ("3.6.11", false),
            ("3.7.0", false),
        ] {
            let v = parse_etcd_version(version).unwrap();
            assert_eq!(add_needs_every_voter(&v), strict, "{version}");
        }
    }

    #[test]
    fn etcd_3_4_and_newer_is_accepted() {
        for version in ["3.4.0", "3.4.23", "3.5.1", "3.6.9-0", "v3.5.24"] {
            assert!(
                check_learner_support("https://10.0.0.1:2379", version).is_ok(),
                "{version}"
            );
        }
    }
}
