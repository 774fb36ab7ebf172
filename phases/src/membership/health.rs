//! `phase etcd check-health`: is there quorum, and what could go wrong next.
//!
//! Quorum-based like kubeadm since kubernetes#138403: the cluster is healthy when a
//! majority of its voters answer Status without errors and know a leader, so a five-member
//! cluster with two members down still counts as available (and can be repaired).

use super::cluster::Cluster;
use super::status::{self, ClusterStatus};
use super::{member_label, quorum, Result};

/// The verdict and what it is based on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// A majority of the voters is healthy.
    pub healthy: bool,
    pub voters: usize,
    pub healthy_voters: usize,
    /// How many healthy voters quorum needs.
    pub quorum: usize,
    /// How many more voters may fail before quorum is lost.
    pub failures_tolerated: usize,
    pub learners: usize,
    /// Problems that do not cost quorum now but deserve attention.
    pub warnings: Vec<String>,
    /// Why the cluster is unhealthy, when it is.
    pub problems: Vec<String>,
    /// The cluster's active alarms as the members report them (`NOSPACE`, `CORRUPT`),
    /// each once; any alarm makes the cluster unhealthy.
    pub alarms: Vec<String>,
    #[serde(skip)]
    pub status: ClusterStatus,
}

/// Collects the status of every member and judges it.
pub async fn check<C: Cluster>(client: &C) -> Result<HealthReport> {
    Ok(evaluate(status::collect(client).await?))
}

/// Judges a status report.
pub fn evaluate(status: ClusterStatus) -> HealthReport {
    let needed = quorum(status.voters);
    let mut warnings = Vec::new();
    let mut problems = Vec::new();
    for m in &status.members {
        let who = member_label(m.id, &m.name);
        match (m.role, m.healthy) {
            ("voter", false) => {
                let why = if !m.started {
                    "has never started".to_string()
                } else {
                    m.errors
                        .iter()
                        .chain(&m.alarms)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                warnings.push(format!("voting member {who} is unhealthy: {why}"));
            }
            ("learner", healthy) => {
                let state = if !m.started {
                    "has not started".to_string()
                } else if !healthy {
                    format!("is not healthy ({})", m.errors.join("; "))
                } else {
                    match m.learner_progress {
                        Some(p) => format!("is at {p}% of the leader's log"),
                        None => "is running".to_string(),
                    }
                };
                warnings.push(format!(
                    "member {who} is a learner and {state}; it does not vote until promoted (kubeadm-etcd phase etcd promote --id {}), or roll it back (kubeadm-etcd phase etcd remove-member --id {})",
                    m.id, m.id
                ));
            }
            _ => {}
        }
    }
    warnings.extend(status::version_warnings(&status.members));
    if status.voters > 0 && status.voters.is_multiple_of(2) {
        warnings.push(format!(
            "the cluster has an even number of voting members ({}): it tolerates no more failures than {} would, with one more member to fail",
            status.voters,
            status.voters - 1
        ));
    }
    warnings.extend(size_warnings(&status.members));
    let alarms = alarm_kinds(&status.members);
    for alarm in &alarms {
        problems.push(match alarm.as_str() {
            "NOSPACE" => "alarm NOSPACE: a member's database reached its quota and the cluster refuses writes; compact and defragment, then disarm (kubeadm-etcd phase etcd alarm disarm --compact-and-defrag; alarm list says more)".to_string(),
            "CORRUPT" => "alarm CORRUPT: members hold different data and the cluster refuses writes; do not disarm it before the diverged member is replaced (kubeadm-etcd phase etcd alarm list says how)".to_string(),
            other => format!("alarm {other}: see kubeadm-etcd phase etcd alarm list"),
        });
    }
    // Voters that answer and know a leader but report an alarm are not lost: the alarm
    // is the problem, said above, not quorum.
    let answering = status
        .members
        .iter()
        .filter(|m| {
            m.role == "voter" && (m.healthy || (m.errors.is_empty() && !m.alarms.is_empty()))
        })
        .count();
    if status.voters == 0 {
        problems.push("the member list has no voting member".to_string());
    } else if !status.quorum && (answering < needed || alarms.is_empty()) {
        problems.push(format!(
            "no quorum: {} of {} voting members are healthy, {} are needed",
            status.healthy_voters, status.voters, needed
        ));
    }
    if !status.member_list_linearizable {
        problems.push(
            "the member list could not be read through the leader; it is one member's view"
                .to_string(),
        );
    }
    HealthReport {
        healthy: problems.is_empty(),
        voters: status.voters,
        healthy_voters: status.healthy_voters,
        quorum: needed,
        failures_tolerated: status.healthy_voters.saturating_sub(needed),
        learners: status.learners,
        warnings,
        problems,
        alarms,
        status,
    }
}

/// The alarm types the members report (`memberID:... alarm:NOSPACE`), each once.
fn alarm_kinds(members: &[super::status::MemberRow]) -> Vec<String> {
    let mut kinds: Vec<String> = members
        .iter()
        .flat_map(|m| &m.alarms)
        .filter_map(|a| a.split("alarm:").nth(1))
        .map(|k| k.trim().to_string())
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// The share of the quota from which a database size is a warning.
const QUOTA_WARNING: f64 = 0.8;
/// Free pages worth a defragmentation: at least half the file and this many bytes.
const FREE_WARNING_BYTES: i64 = 64 << 20;

/// Databases near their quota (etcd 3.6 and newer report it) and files that are mostly
/// free pages.
fn size_warnings(members: &[super::status::MemberRow]) -> Vec<String> {
    let mut warnings = Vec::new();
    for m in members {
        let who = member_label(m.id, &m.name);
        if let (Some(size), Some(quota)) = (m.db_size, m.db_size_quota) {
            if quota > 0 && size as f64 >= quota as f64 * QUOTA_WARNING {
                warnings.push(format!(
                    "the database of {who} is {} of its {} quota ({:.0}%): at the quota etcd raises NOSPACE and refuses writes; compact and defragment (kubeadm-etcd phase etcd defrag --cluster) or raise --quota-backend-bytes",
                    status::human_bytes(size),
                    status::human_bytes(quota),
                    size as f64 * 100.0 / quota as f64
                ));
            }
        }
        if let (Some(size), Some(in_use)) = (m.db_size, m.db_size_in_use) {
            let free = size - in_use;
            if free >= FREE_WARNING_BYTES && free * 2 >= size {
                warnings.push(format!(
                    "{} of the {} database file of {who} is free pages: kubeadm-etcd phase etcd defrag gives them back",
                    status::human_bytes(free),
                    status::human_bytes(size)
                ));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::super::status::MemberRow;
    use super::super::MemberId;
    use super::*;

    fn row(id: u64, role: &'static str, healthy: bool) -> MemberRow {
        MemberRow {
            id: MemberId(id),
            name: format!("n{id}"),
            peer_urls: vec![],
            client_urls: vec![],
            role,
            started: true,
            is_leader: id == 1,
            version: None,
            db_size: None,
            db_size_in_use: None,
            db_size_quota: None,
            storage_version: None,
            raft_term: None,
            raft_index: None,
            raft_applied_index: None,
            learner_progress: Some(50.0),
            errors: if healthy {
                vec![]
            } else {
                vec!["connection refused".into()]
            },
            alarms: vec![],
            healthy,
        }
    }

    fn cluster(members: Vec<MemberRow>) -> ClusterStatus {
        let voters = members.iter().filter(|m| m.role == "voter").count();
        let healthy_voters = members
            .iter()
            .filter(|m| m.role == "voter" && m.healthy)
            .count();
        ClusterStatus {
            cluster_id: "1".into(),
            member_list_linearizable: true,
            member_list_served_by: String::new(),
            leader: Some(MemberId(1)),
            voters,
            healthy_voters,
            learners: members.len() - voters,
            quorum: healthy_voters >= quorum(voters),
            members,
            warnings: vec![],
        }
    }

    #[test]
    fn five_voters_with_two_down_keep_quorum() {
        let r = evaluate(cluster(vec![
            row(1, "voter", true),
            row(2, "voter", true),
            row(3, "voter", true),
            row(4, "voter", false),
            row(5, "voter", false),
        ]));
        assert!(r.healthy);
        assert_eq!((r.quorum, r.failures_tolerated), (3, 0));
        assert_eq!(r.warnings.len(), 2);
    }

    #[test]
    fn even_voter_counts_and_learners_are_warnings() {
        let r = evaluate(cluster(vec![
            row(1, "voter", true),
            row(2, "voter", true),
            row(3, "learner", true),
        ]));
        assert!(r.healthy);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("even number of voting members (2)")),
            "{:?}",
            r.warnings
        );
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("is a learner and is at 50% ")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn lost_quorum_is_unhealthy() {
        let r = evaluate(cluster(vec![row(1, "voter", true), row(2, "voter", false)]));
        assert!(!r.healthy);
        assert_eq!(
            r.problems,
            ["no quorum: 1 of 2 voting members are healthy, 2 are needed"]
        );
    }

    #[test]
    fn an_alarm_is_the_problem_not_quorum_and_a_full_database_is_a_warning() {
        let alarmed = |id| MemberRow {
            errors: vec![],
            alarms: vec![format!("memberID:{id} alarm:NOSPACE")],
            healthy: false,
            db_size: Some(900),
            db_size_in_use: Some(850),
            db_size_quota: Some(1000),
            ..row(id, "voter", true)
        };
        let r = evaluate(cluster(vec![alarmed(1), alarmed(2), row(3, "voter", true)]));
        assert!(!r.healthy);
        assert_eq!(r.alarms, ["NOSPACE"]);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(
            r.problems[0].starts_with("alarm NOSPACE: ")
                && r.problems[0].contains("alarm disarm --compact-and-defrag"),
            "{:?}",
            r.problems
        );
        assert!(
            r.warnings
                .iter()
                .any(|w| w.starts_with("the database of 1 (n1) is 900 B of its 1.0 kB quota (90%)")),
            "{:?}",
            r.warnings
        );
    }
}
