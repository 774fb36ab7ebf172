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
    if status.voters == 0 {
        problems.push("the member list has no voting member".to_string());
    } else if !status.quorum {
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
        status,
    }
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
}
