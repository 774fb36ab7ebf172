//! Which etcd versions can take a learner.

use super::{quorum, MembershipError, Result};

/// Learners (MemberAdd with `isLearner`, MemberPromote) arrived in etcd 3.4. The one
/// place this is written: the manifest and upgrade checks use it too.
pub const MIN_LEARNER_VERSION: semver::Version = semver::Version::new(3, 4, 0);

/// Whether etcd `v` has learners.
/// Major, minor and patch only: an image tag's pre-release part (`3.4.0-0`) does not make
/// a release older.
pub fn supports_learners(v: &semver::Version) -> bool {
    let min = MIN_LEARNER_VERSION;
    (v.major, v.minor, v.patch) >= (min.major, min.minor, min.patch)
}

/// Checks that the member at `endpoint`, which reported `version` in its Status, supports
/// learners. A version that does not parse is refused too: guessing would mean adding a
/// member to a cluster that may not understand what a learner is.
pub fn check_learner_support(endpoint: &str, version: &str) -> Result<semver::Version> {
    let refuse = || MembershipError::UnsupportedVersion {
        endpoint: endpoint.to_string(),
        version: version.to_string(),
    };
    let parsed = parse_etcd_version(version).ok_or_else(refuse)?;
    if !supports_learners(&parsed) {
        return Err(refuse());
    }
    Ok(parsed)
}

/// etcd's rule for accepting a member add, a learner's included, under its default
/// `--strict-reconfig-check` (`mayAddMember` in `server/etcdserver/server.go`). Only voting
/// members count (`s.cluster.VotingMembers()`), and "connected" means the member that
/// serves the add has had a working peer connection to it for the last 5 s
/// (`HealthInterval`); it counts itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddRule {
    /// Connected to every voting member (`isConnectedFullySince`): all of 3.4, 3.5
    /// before 3.5.30 and 3.6 before 3.6.11 (`server.go` at v3.5.29 and v3.6.10).
    EveryVoter,
    /// Connected to voting members that make a quorum of the cluster grown by the new
    /// member, and always on a one-voter cluster
    /// (`isConnectedToQuorumAfterAddingNewMemberSince` in `server/etcdserver/util.go` at
    /// v3.5.30, v3.6.11 and v3.7.1; etcd#21669, #21667).
    QuorumAfterAdd,
}

impl AddRule {
    /// The rule etcd `v` applies.
    pub fn of(v: &semver::Version) -> Self {
        let every = match (v.major, v.minor) {
            (0..=2, _) | (3, 0..=4) => true,
            (3, 5) => v.patch < 30,
            (3, 6) => v.patch < 11,
            _ => false,
        };
        if every {
            Self::EveryVoter
        } else {
            Self::QuorumAfterAdd
        }
    }

    /// How many of `voters` voting members (the serving one included) must be connected
    /// for etcd to accept an add.
    pub fn needed(self, voters: usize) -> usize {
        match self {
            Self::EveryVoter => voters,
            Self::QuorumAfterAdd if voters <= 1 => voters,
            Self::QuorumAfterAdd => quorum(voters + 1),
        }
    }

    /// Whether etcd accepts an add with `connected` of `voters` voting members connected.
    pub fn accepts(self, voters: usize, connected: usize) -> bool {
        connected >= self.needed(voters)
    }

    /// The rule in words, for messages.
    pub fn describe(self, voters: usize) -> String {
        match self {
            Self::EveryVoter => "refuses every member add, even a learner's, until all voting members answer (relaxed in 3.5.30 and 3.6.11)".to_string(),
            Self::QuorumAfterAdd => format!(
                "accepts a member add only while the voting members it is connected to, itself included, make a quorum of the grown cluster: {} of {}",
                self.needed(voters),
                voters + 1
            ),
        }
    }
}

/// Whether etcd `v` refuses every member add while a voting member is down.
pub fn add_needs_every_voter(v: &semver::Version) -> bool {
    AddRule::of(v) == AddRule::EveryVoter
}

/// Whether etcd `v` reads the learner limit from `--max-learners` (3.6 and newer,
/// `membership.DefaultMaxLearners` = 1 in `api/membership/cluster_opts.go` at v3.6.14);
/// before, it is the constant `maxLearners = 1` (`api/membership/cluster.go` at v3.5.30).
/// No RPC reports the value.
pub fn learner_limit_configurable(v: &semver::Version) -> bool {
    (v.major, v.minor) >= (3, 6)
}

/// etcd 3.5.1 to 3.5.19 recorded a learner's promotion in the v2 store only (etcd#19557,
/// fixed by #19563 in 3.5.20). 3.6 reads membership from the v3 store, so after an
/// upgrade such a voter can come back as a learner, and two of them stop the cluster
/// with "too many learner members".
pub fn loses_promotions_on_upgrade(v: &semver::Version) -> bool {
    v.major == 3 && v.minor == 5 && (1..=19).contains(&v.patch)
}

/// The 3.5 release to move to before 3.6: etcd asks for 3.5.20 at least
/// (etcd.io/blog/2025/upgrade_from_3.5_to_3.6_issue); 3.5.24 also repairs a member that
/// took a snapshot from a 3.5.19-or-older one during a rolling upgrade (etcd#20793, #20797),
/// and is the oldest etcd kubeadm 1.33 accepts.
pub const RELEASE_BEFORE_3_6: &str = "3.5.24";

/// The warning for members on 3.5.1–3.5.19 (`who`: "<member> runs etcd <version>"), or
/// `None`.
pub fn promotion_persistence_warning(who: &[String]) -> Option<String> {
    if who.is_empty() {
        return None;
    }
    Some(format!(
        "{}: etcd 3.5.1 to 3.5.19 does not persist learner promotions to the v3 store (etcd#19557), so upgraded to 3.6 from there, voting members can turn back into learners and the upgrade fails with \"too many learner members\". Upgrade every member to {RELEASE_BEFORE_3_6} or newer first, then to 3.6",
        who.join(", ")
    ))
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
    fn from_3_5_30_an_add_needs_a_quorum_of_the_grown_cluster() {
        let rule = |v: &str| AddRule::of(&parse_etcd_version(v).unwrap());
        let relaxed = rule("3.5.30");
        assert_eq!(relaxed, AddRule::QuorumAfterAdd);
        assert_eq!(rule("3.7.1"), AddRule::QuorumAfterAdd);
        // (voters, connected, accepted)
        for (voters, connected, accepted) in [
            (1, 1, true),
            (2, 1, false),
            (3, 2, false),
            (4, 3, true),
            (5, 4, true),
            (5, 3, false),
            (7, 5, true),
        ] {
            assert_eq!(
                relaxed.accepts(voters, connected),
                accepted,
                "{connected} of {voters}"
            );
        }
        let strict = rule("3.6.10");
        assert!(strict.accepts(5, 5) && !strict.accepts(5, 4) && strict.accepts(1, 1));
    }

    #[test]
    fn promotions_are_lost_on_upgrade_from_3_5_1_to_3_5_19() {
        for (v, lost) in [
            ("3.5.0", false),
            ("3.5.1", true),
            ("3.5.19", true),
            ("3.5.20", false),
            ("3.4.23", false),
            ("3.6.0", false),
        ] {
            assert_eq!(
                loses_promotions_on_upgrade(&parse_etcd_version(v).unwrap()),
                lost,
                "{v}"
            );
        }
        assert!(supports_learners(
            &semver::Version::parse("3.4.0-0").unwrap()
        ));
        assert!(!supports_learners(&semver::Version::new(3, 3, 27)));
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
