//! The preflight of `upgrade etcd`, as a pure function of what the cluster reported: the
//! member list, each voter's Status, this node's peer URL and the target release.

use semver::Version;

use super::UpgradeEtcdError;
use crate::membership::{MemberId, MemberInfo, MemberStatus, RpcError};

/// The release every member must run before the cluster may move to a minor: `(target
/// major, target minor, minimum release of the minor below)`.
///
/// - 3.6 needs every 3.5 member on **3.5.26** or newer. etcd's "Avoiding Zombie Cluster
///   Members When Upgrading to etcd v3.6" (etcd.io blog, 2025-12-17): 3.5.26 syncs the v3
///   store's membership from the v2 store (etcd PR #20995, CHANGELOG-3.5 v3.5.26, "Fix
///   zombie members in v3store"), because 3.6 takes membership from the v3 store and
///   members removed long ago come back otherwise; "We are unable to provide a safe
///   workaround path for users who have some obstacle preventing updating to v3.5.26".
///   It also covers the 3.5.20 fix for voters turning into learners on upgrade ("too many
///   learner members", etcd #19557/#19563) and 3.5.24's (#20797).
/// - 3.7 needs every 3.6 member on **3.6.11** or newer: "Upgrade etcd from v3.6 to v3.7"
///   (etcd-io/website `content/en/docs/v3.7/upgrades/upgrade_3_7.md`): "make sure that all
///   of your 3.6 members are updated to 3.6.11 or later. Earlier 3.6 patch releases may
///   not be compatible with a rolling upgrade to 3.7."
/// - 3.5 from 3.4: no minimum in etcd's upgrade guide beyond 3.4 itself.
pub const MINOR_UPGRADE_MINIMUMS: &[(u64, u64, Version)] = &[
    (3, 6, Version::new(3, 5, 26)),
    (3, 7, Version::new(3, 6, 11)),
];

/// etcd's current 3.5 → 3.6 guide (website commit 5a5c2009, 2026-08-03) recommends
/// **3.5.32**, whose additions are about the v2 store (`--v2-deprecation=write-only-skip-check`,
/// and `etcdutl check v2store` reading the WAL too). kubeadm never enables the v2 API, so
/// the hard floor stays 3.5.26 and members below this one get a warning. The check itself
/// runs on each member's node ([`super::check_data_dir`]), reading its WAL and v2 snapshot.
pub const RECOMMENDED_BEFORE_3_6: Version = Version::new(3, 5, 32);

/// Why a minimum exists, for the refusal.
fn why(minor: u64) -> &'static str {
    match minor {
        6 => "etcd's upgrade guide and its \"zombie members\" notice: 3.5.26 repairs the membership that etcd 3.6 reads, and 3.5.20/3.5.24 fix voters coming back as learners (\"too many learner members\")",
        7 => "etcd's 3.6 to 3.7 upgrade guide: earlier 3.6 releases may not be compatible with a rolling upgrade to 3.7",
        _ => "etcd's upgrade guide",
    }
}

/// What kind of change this member's upgrade is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    /// This member runs the target already.
    AlreadyThere,
    /// A newer patch release of the same minor.
    Patch,
    /// The next minor.
    Minor,
}

/// What preflight found, when it allows the upgrade.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub member: MemberInfo,
    /// This member's Status.
    pub status: MemberStatus,
    #[serde(serialize_with = "crate::snapshot::tools::as_string")]
    pub from: Version,
    #[serde(serialize_with = "crate::snapshot::tools::as_string")]
    pub to: Version,
    pub step: Step,
    pub voters: usize,
    pub leader: MemberId,
    /// Where the leadership goes first, when this member leads and is not alone.
    pub transfer_to: Option<MemberId>,
    /// Every voter's Status, in member-list order.
    pub statuses: Vec<MemberStatus>,
    /// Worth showing, not blocking.
    pub warnings: Vec<String>,
}

/// One member's etcd release, read from its Status.
fn version_of(member: &MemberInfo, status: &MemberStatus) -> Result<Version, UpgradeEtcdError> {
    crate::versions::etcd_semver_from_tag(&status.version).map_err(|_| {
        UpgradeEtcdError::VersionUnknown {
            id: member.id,
            name: member.display_name(),
            version: status.version.clone(),
        }
    })
}

/// The preflight: refuses (with nothing changed) unless every voter is healthy, no
/// learner is in flight, and the version path from every member's release to `to` is one
/// etcd supports.
pub fn evaluate(
    members: &[MemberInfo],
    statuses: &[Result<MemberStatus, RpcError>],
    peer_url: &str,
    to: &Version,
) -> Result<Plan, UpgradeEtcdError> {
    assert_eq!(members.len(), statuses.len(), "one status per member");
    let Some(index) = members.iter().position(|m| m.has_peer_url(peer_url)) else {
        return Err(UpgradeEtcdError::NotAMember {
            peer_url: peer_url.to_string(),
            members: members
                .iter()
                .map(|m| format!("{} ({}) {}", m.display_name(), m.id, m.peer_urls.join(",")))
                .collect::<Vec<_>>()
                .join("; "),
        });
    };
    if let Some(learner) = members.iter().find(|m| m.is_learner) {
        return Err(UpgradeEtcdError::LearnerInFlight {
            id: learner.id,
            name: learner.display_name(),
        });
    }
    let mut down = Vec::new();
    let mut healthy = Vec::new();
    for (m, s) in members.iter().zip(statuses) {
        match s {
            Ok(s) if s.healthy() => healthy.push(s.clone()),
            Ok(s) => down.push((
                m.id,
                m.display_name(),
                if s.errors.is_empty() {
                    "it knows no leader".to_string()
                } else {
                    s.errors.join(", ")
                },
            )),
            Err(e) => down.push((m.id, m.display_name(), e.to_string())),
        }
    }
    if !down.is_empty() {
        return Err(UpgradeEtcdError::VotersDown { down });
    }
    let member = &members[index];
    let status = healthy[index].clone();
    let from = version_of(member, &status)?;
    let mut versions = Vec::new();
    for (m, s) in members.iter().zip(&healthy) {
        versions.push((m, version_of(m, s)?));
    }
    let step = check_path(member, &from, &versions, to)?;
    if step == Step::Minor && (to.major, to.minor) == (3, 7) {
        check_storage_version(members, &healthy)?;
    }
    let mut warnings = Vec::new();
    if step == Step::Minor && (to.major, to.minor) == (3, 6) {
        for (m, v) in &versions {
            if (v.major, v.minor) == (3, 5) && *v < RECOMMENDED_BEFORE_3_6 {
                warnings.push(format!(
                    "member {} ({}) runs etcd {v}: etcd's current 3.5 to 3.6 guide recommends {RECOMMENDED_BEFORE_3_6} or newer for clusters that ever enabled the v2 API (--enable-v2; kubeadm never does). The preflight on each member's node reads its data directory for v2 content etcd 3.6 refuses, as `etcdutl check v2store` of {RECOMMENDED_BEFORE_3_6} does",
                    m.display_name(),
                    m.id
                ));
            }
        }
    }
    let leader = status.leader;
    let transfer_to = if leader == member.id && members.len() > 1 {
        // The voter furthest along takes over with the shortest election.
        members
            .iter()
            .zip(&healthy)
            .filter(|(m, _)| m.id != member.id)
            .max_by_key(|(m, s)| (s.raft_applied_index, std::cmp::Reverse(m.id)))
            .map(|(m, _)| m.id)
    } else {
        None
    };
    Ok(Plan {
        member: member.clone(),
        status,
        from,
        to: to.clone(),
        step,
        voters: members.len(),
        leader,
        transfer_to,
        statuses: healthy,
        warnings,
    })
}

/// Before 3.7, the data on every member must be at storage version 3.6. etcd 3.6 writes
/// it once the cluster version is 3.6, that is once every member runs 3.6: its version
/// monitor moves the storage version to the cluster version every few seconds
/// (`UpdateStorageVersionIfNeeded`, server/etcdserver/version/monitor.go at v3.6.14). A
/// member still reporting none (or 3.5) means the cluster has not finished its move to
/// 3.6; etcd 3.7 would then migrate the data two steps at once at start
/// (server/storage/schema/schema.go at v3.7.1 reads a missing storage version as 3.5).
fn check_storage_version(
    members: &[MemberInfo],
    statuses: &[MemberStatus],
) -> Result<(), UpgradeEtcdError> {
    for (m, s) in members.iter().zip(statuses) {
        let at_least_3_6 =
            Version::parse(&s.storage_version).is_ok_and(|v| (v.major, v.minor) >= (3, 6));
        if !at_least_3_6 {
            return Err(UpgradeEtcdError::StorageVersionBehind {
                id: m.id,
                name: m.display_name(),
                storage_version: s.storage_version.clone(),
            });
        }
    }
    Ok(())
}

/// The version rules alone. `versions` holds every member, this one included.
pub fn check_path(
    this: &MemberInfo,
    from: &Version,
    versions: &[(&MemberInfo, Version)],
    to: &Version,
) -> Result<Step, UpgradeEtcdError> {
    let core = |v: &Version| Version::new(v.major, v.minor, v.patch);
    let (from, to) = (core(from), core(to));
    if to < from {
        return Err(UpgradeEtcdError::Downgrade {
            id: this.id,
            name: this.display_name(),
            from: from.to_string(),
            to: to.to_string(),
        });
    }
    if to.major != from.major || to.minor > from.minor + 1 {
        return Err(UpgradeEtcdError::MinorSkipped {
            id: this.id,
            name: this.display_name(),
            next: format!("{}.{}", from.major, from.minor + 1),
            from: from.to_string(),
            to: to.to_string(),
        });
    }
    // Every member must be on the minor below the target or newer: a rolling upgrade
    // never spans more than two minors.
    let floor_minor = to.minor.saturating_sub(1);
    if let Some((m, v)) = versions
        .iter()
        .find(|(_, v)| v.major != to.major || v.minor < floor_minor)
    {
        return Err(UpgradeEtcdError::MemberBehind {
            id: m.id,
            name: m.display_name(),
            version: v.to_string(),
            to: to.to_string(),
            needed: format!("{}.{floor_minor}", to.major),
        });
    }
    if let Some((_, _, minimum)) = MINOR_UPGRADE_MINIMUMS
        .iter()
        .find(|(major, minor, _)| (*major, *minor) == (to.major, to.minor))
    {
        let below: Vec<_> = versions
            .iter()
            .filter(|(_, v)| v.minor == minimum.minor && core(v) < *minimum)
            .map(|(m, v)| (m.id, m.display_name(), v.to_string()))
            .collect();
        if !below.is_empty() {
            return Err(UpgradeEtcdError::BelowMinimum {
                to: to.to_string(),
                minimum: minimum.to_string(),
                members: below,
                why: why(minimum.minor + 1),
            });
        }
    }
    Ok(if to == from {
        Step::AlreadyThere
    } else if to.minor == from.minor {
        Step::Patch
    } else {
        Step::Minor
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::EtcdErrorKind;

    fn member(n: u64) -> MemberInfo {
        MemberInfo {
            id: MemberId(0xa0 + n),
            name: format!("node{n}"),
            peer_urls: vec![format!("https://127.0.0.{n}:2380")],
            client_urls: vec![format!("https://127.0.0.{n}:2379")],
            is_learner: false,
        }
    }

    fn status(n: u64, version: &str, leader: u64) -> Result<MemberStatus, RpcError> {
        Ok(MemberStatus {
            endpoint: format!("https://127.0.0.{n}:2379"),
            member_id: MemberId(0xa0 + n),
            cluster_id: 1,
            version: version.to_string(),
            db_size: 1,
            db_size_in_use: 1,
            leader: MemberId(0xa0 + leader),
            raft_index: 100,
            raft_term: 2,
            raft_applied_index: 100 + n,
            is_learner: false,
            errors: vec![],
            // etcd 3.6 and newer report the data's storage version; set once the whole
            // cluster runs 3.6.
            storage_version: if version.starts_with("3.6") || version.starts_with("3.7") {
                "3.6.0".to_string()
            } else {
                String::new()
            },
            db_size_quota: 0,
        })
    }

    /// A three-member cluster whose members run `versions`; node1 leads.
    fn cluster(versions: [&str; 3]) -> (Vec<MemberInfo>, Vec<Result<MemberStatus, RpcError>>) {
        let members = (1..=3).map(member).collect();
        let statuses = (1..=3)
            .map(|n| status(n, versions[n as usize - 1], 1))
            .collect();
        (members, statuses)
    }

    fn plan(versions: [&str; 3], to: &str) -> Result<Plan, UpgradeEtcdError> {
        let (members, statuses) = cluster(versions);
        evaluate(
            &members,
            &statuses,
            "https://127.0.0.1:2380",
            &Version::parse(to).unwrap(),
        )
    }

    #[test]
    fn below_3_5_26_is_refused_for_3_6() {
        let err = plan(["3.5.16", "3.5.30", "3.5.30"], "3.6.14").unwrap_err();
        assert!(
            matches!(err, UpgradeEtcdError::BelowMinimum { .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with("refusing to upgrade to etcd 3.6.14: member node1 (a1) runs etcd 3.5.16; upgrade it to 3.5.26 or newer first"),
            "{text}"
        );
        // Another member below the floor blocks this one's upgrade too.
        let err = plan(["3.5.30", "3.5.30", "3.5.25"], "3.6.14").unwrap_err();
        assert!(
            err.to_string().contains("node3 (a3) runs etcd 3.5.25"),
            "{err}"
        );
    }

    #[test]
    fn a_skipped_minor_is_refused() {
        let err = plan(["3.5.30", "3.5.30", "3.5.30"], "3.7.1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing to upgrade member node1 (a1) from etcd 3.5.30 to 3.7.1: etcd upgrades one minor at a time; upgrade every member to the newest 3.6 release first, then to 3.7.1"
        );
    }

    #[test]
    fn a_downgrade_is_refused_with_etcds_procedure() {
        let err = plan(["3.6.14", "3.6.14", "3.6.14"], "3.5.30").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, UpgradeEtcdError::Downgrade { .. }), "{text}");
        assert!(text.contains("from etcd 3.6.14 to 3.5.30"), "{text}");
        assert!(text.contains("etcdctl downgrade validate"), "{text}");
        assert!(text.contains(super::super::DOWNGRADE_DOC), "{text}");
    }

    #[test]
    fn a_voter_down_is_refused_and_named() {
        let (members, mut statuses) = cluster(["3.5.30", "3.5.30", "3.5.30"]);
        statuses[2] = Err(RpcError {
            kind: EtcdErrorKind::Unavailable,
            message: "tcp connect error: Connection refused".to_string(),
        });
        let err = evaluate(
            &members,
            &statuses,
            "https://127.0.0.1:2380",
            &Version::new(3, 6, 14),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("node3 (a3): tcp connect error"), "{text}");
        assert!(text.contains("remove-member --id a3"), "{text}");
    }

    #[test]
    fn a_learner_in_flight_is_refused() {
        let (mut members, statuses) = cluster(["3.5.30", "3.5.30", "3.5.30"]);
        members[1].is_learner = true;
        let err = evaluate(
            &members,
            &statuses,
            "https://127.0.0.1:2380",
            &Version::new(3, 6, 14),
        )
        .unwrap_err();
        assert!(err.to_string().contains("phase etcd promote"), "{err}");
    }

    #[test]
    fn a_member_two_minors_behind_blocks_the_next_minor() {
        let err = plan(["3.5.30", "3.5.30", "3.4.23"], "3.6.14").unwrap_err();
        assert!(
            err.to_string().contains("member node3 (a3) runs etcd 3.4.23, more than one minor behind; upgrade it to the newest 3.5 release first"),
            "{err}"
        );
    }

    #[test]
    fn allowed_paths() {
        let p = plan(["3.5.30", "3.5.30", "3.5.30"], "3.6.14").unwrap();
        assert_eq!(p.step, Step::Minor);
        // node1 leads: the leadership goes to the voter furthest along (node3).
        assert_eq!(p.transfer_to, Some(MemberId(0xa3)));
        assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
        // Mixed 3.5/3.6 during a rolling upgrade.
        let p = plan(["3.6.14", "3.7.1", "3.6.14"], "3.7.1").unwrap();
        assert_eq!(p.step, Step::Minor);
        assert!(p.warnings.is_empty());
        assert_eq!(
            plan(["3.6.14", "3.6.11", "3.6.14"], "3.7.1").unwrap().step,
            Step::Minor
        );
        assert!(plan(["3.6.14", "3.6.10", "3.6.14"], "3.7.1").is_err());
        assert_eq!(
            plan(["3.5.16", "3.5.16", "3.5.16"], "3.5.30").unwrap().step,
            Step::Patch
        );
        assert_eq!(
            plan(["3.4.23", "3.4.23", "3.4.23"], "3.5.30").unwrap().step,
            Step::Minor
        );
        let p = plan(["3.6.14", "3.6.14", "3.6.14"], "3.6.14").unwrap();
        assert_eq!(p.step, Step::AlreadyThere);
    }

    #[test]
    fn this_member_must_be_in_the_cluster() {
        let (members, statuses) = cluster(["3.5.30", "3.5.30", "3.5.30"]);
        let err = evaluate(
            &members,
            &statuses,
            "https://127.0.0.9:2380",
            &Version::new(3, 6, 14),
        )
        .unwrap_err();
        assert!(matches!(err, UpgradeEtcdError::NotAMember { .. }), "{err}");
    }

    #[test]
    fn to_3_7_only_once_the_storage_version_is_3_6() {
        let (members, mut statuses) = cluster(["3.6.14", "3.6.14", "3.6.14"]);
        if let Ok(s) = &mut statuses[1] {
            s.storage_version = String::new();
        }
        let err = evaluate(
            &members,
            &statuses,
            "https://127.0.0.1:2380",
            &Version::parse("3.7.1").unwrap(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                UpgradeEtcdError::StorageVersionBehind {
                    id: MemberId(0xa2),
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().starts_with(
                "refusing to upgrade to etcd 3.7: member node2 (a2) reports storage version none"
            ),
            "{err}"
        );
        // A patch release within 3.6 does not care.
        assert_eq!(
            evaluate(
                &members,
                &statuses,
                "https://127.0.0.1:2380",
                &Version::parse("3.6.15").unwrap(),
            )
            .unwrap()
            .step,
            Step::Patch
        );
    }

    /// A member's WAL that cannot be read is a refusal that names the directory and what
    /// to do, never a pass: an unread WAL could hold what the next minor refuses to replay.
    #[test]
    fn an_unreadable_wal_refuses_the_minor_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("etcd");
        let manifest = dir.path().join("etcd.yaml");
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd:3.6.14-0\n    command:\n    - etcd\n    - --data-dir={}\n",
                data_dir.display()
            ),
        )
        .unwrap();
        let minor = plan(["3.6.14", "3.6.14", "3.6.14"], "3.7.1").unwrap();
        let wal_dir = data_dir.join("member").join("wal");

        let err = super::super::check_data_dir(&minor, &manifest).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                UpgradeEtcdError::DataDirUnreadable {
                    source: super::super::wal::WalError::Read { .. },
                    ..
                }
            ),
            "{text}"
        );
        assert!(
            text.starts_with(&format!(
                "cannot check what etcd 3.7.1 would replay from member node1 (a1)'s data directory: cannot read {}:",
                wal_dir.display()
            )),
            "{text}"
        );
        assert!(
            text.ends_with(
                "run this on that member's node, as a user that can read its data directory (root)"
            ),
            "{text}"
        );

        // A directory without WAL files is not taken for an empty log.
        std::fs::create_dir_all(&wal_dir).unwrap();
        let err = super::super::check_data_dir(&minor, &manifest).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("{} holds no WAL file (*.wal)", wal_dir.display())),
            "{err}"
        );

        // A patch step reads nothing.
        let patch = plan(["3.6.14", "3.6.14", "3.6.14"], "3.6.15").unwrap();
        super::super::check_data_dir(&patch, &manifest).unwrap();
    }
}
