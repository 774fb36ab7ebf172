//! `phase etcd status`: every member with what it says about itself.

use super::cluster::Cluster;
use super::version::{
    loses_promotions_on_upgrade, parse_etcd_version, promotion_persistence_warning,
};
use super::{member_label, quorum, MemberId, MemberInfo, MemberStatus, Result};

/// One row of the status report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRow {
    pub id: MemberId,
    /// Empty until the member has started.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    /// `voter` or `learner`.
    pub role: &'static str,
    pub started: bool,
    pub is_leader: bool,
    /// The rest is from the member's Status RPC, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_size: Option<i64>,
    /// The part of the database file in use (the rest is free pages a defragmentation
    /// would return).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_size_in_use: Option<i64>,
    /// The backend quota the member applies (reported from etcd 3.6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_size_quota: Option<i64>,
    /// The version of the data on disk (reported from etcd 3.6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft_term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft_applied_index: Option<u64>,
    /// A learner's applied index as a percentage of the leader's raft index; etcd
    /// promotes from 90%.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learner_progress: Option<f64>,
    /// Errors the member reported (`etcdserver: no leader`) or why it did not answer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Alarms the member reported (`memberID:... alarm:NOSPACE`); any alarm makes it
    /// unhealthy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
    /// Whether it answered Status, reported no error and knows a leader.
    pub healthy: bool,
}

/// The whole cluster as seen now.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// In hex, as etcdctl prints it.
    pub cluster_id: String,
    /// Whether the member list came from a linearizable read (needs a leader); otherwise
    /// it is one member's possibly stale view.
    pub member_list_linearizable: bool,
    /// The client URL whose member list this is.
    pub member_list_served_by: String,
    pub leader: Option<MemberId>,
    pub voters: usize,
    pub healthy_voters: usize,
    pub learners: usize,
    /// healthy voters >= quorum(voters).
    pub quorum: bool,
    pub members: Vec<MemberRow>,
    /// What deserves attention: lost quorum (who is down, how many must come back), a
    /// member list that is one member's view, releases with known membership bugs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Asks for the member list and every member's Status.
pub async fn collect<C: Cluster>(client: &C) -> Result<ClusterStatus> {
    // Without a leader the linearizable list is unavailable, and a report is most needed
    // exactly then: fall back to one member's own view and say so.
    let (membership, linearizable) = match client.member_list().await {
        Ok(m) => (m, true),
        Err(_) => (client.member_list_local().await?, false),
    };
    let statuses = client.statuses(&membership.members).await;
    let mut report = build(
        membership.cluster_id,
        linearizable,
        &membership.members,
        statuses,
    );
    report.member_list_served_by = membership.served_by;
    if !linearizable {
        report.warnings.push(format!(
            "no leader: the member list is {}'s own view (a serializable read), which may miss the latest membership changes",
            report.member_list_served_by
        ));
    }
    Ok(report)
}

/// Builds the report from the member list and each member's Status (same order).
pub fn build(
    cluster_id: u64,
    linearizable: bool,
    members: &[MemberInfo],
    statuses: Vec<std::result::Result<MemberStatus, super::RpcError>>,
) -> ClusterStatus {
    // The leader is whoever the healthy members agree on; a lone member that lost touch
    // may still name an old leader, so take the most frequent answer.
    let mut votes: Vec<(MemberId, usize)> = Vec::new();
    for s in statuses.iter().flatten().filter(|s| s.healthy()) {
        match votes.iter_mut().find(|(id, _)| *id == s.leader) {
            Some((_, n)) => *n += 1,
            None => votes.push((s.leader, 1)),
        }
    }
    let leader = votes.iter().max_by_key(|(_, n)| *n).map(|(id, _)| *id);
    let leader_index = leader
        .and_then(|l| statuses.iter().flatten().find(|s| s.member_id == l))
        .map(|s| s.raft_index);

    let rows: Vec<MemberRow> = members
        .iter()
        .zip(statuses)
        .map(|(m, s)| {
            let mut row = MemberRow {
                id: m.id,
                name: m.name.clone(),
                peer_urls: m.peer_urls.clone(),
                client_urls: m.client_urls.clone(),
                role: m.role(),
                started: m.started(),
                is_leader: leader == Some(m.id),
                version: None,
                db_size: None,
                db_size_in_use: None,
                db_size_quota: None,
                storage_version: None,
                raft_term: None,
                raft_index: None,
                raft_applied_index: None,
                learner_progress: None,
                errors: Vec::new(),
                alarms: Vec::new(),
                healthy: false,
            };
            match s {
                Ok(s) => {
                    row.healthy = s.healthy();
                    if s.leader.0 == 0 && s.errors.is_empty() {
                        row.errors.push("no leader".to_string());
                    }
                    if m.is_learner {
                        row.learner_progress =
                            leader_index.map(|li| progress_percent(s.raft_applied_index, li));
                    } else if s.is_learner {
                        // etcd 3.5 before 3.5.20 could lose a promotion on restart
                        // (etcd#19563): the list says voter, the member says learner.
                        row.errors.push(
                            "the member list says voter, the member itself says learner"
                                .to_string(),
                        );
                        row.healthy = false;
                    }
                    row.version = Some(s.version);
                    row.db_size = Some(s.db_size);
                    row.db_size_in_use = Some(s.db_size_in_use);
                    row.db_size_quota = (s.db_size_quota > 0).then_some(s.db_size_quota);
                    row.storage_version =
                        (!s.storage_version.is_empty()).then_some(s.storage_version);
                    row.raft_term = Some(s.raft_term);
                    row.raft_index = Some(s.raft_index);
                    row.raft_applied_index = Some(s.raft_applied_index);
                    let (alarms, errors): (Vec<String>, Vec<String>) =
                        s.errors.into_iter().partition(|e| e.contains("alarm:"));
                    row.errors.extend(errors);
                    row.alarms = alarms.iter().map(|a| a.trim().to_string()).collect();
                }
                Err(e) => row.errors.push(e.to_string()),
            }
            row
        })
        .collect();
    let voters = rows.iter().filter(|r| r.role == "voter").count();
    let healthy_voters = rows
        .iter()
        .filter(|r| r.role == "voter" && r.healthy)
        .count();
    let has_quorum = voters > 0 && healthy_voters >= quorum(voters);
    let mut warnings = Vec::new();
    if voters > 0 && !has_quorum {
        let down: Vec<String> = rows
            .iter()
            .filter(|r| r.role == "voter" && !r.healthy)
            .map(|r| member_label(r.id, &r.name))
            .collect();
        let missing = quorum(voters) - healthy_voters;
        warnings.push(format!(
            "quorum lost: {healthy_voters} of {voters} voting members are healthy, {} are needed; nothing can be written and no membership change can commit until {missing} more {} (unhealthy: {})",
            quorum(voters),
            if missing == 1 { "is" } else { "are" },
            down.join(", ")
        ));
    }
    warnings.extend(version_warnings(&rows));
    ClusterStatus {
        cluster_id: format!("{cluster_id:x}"),
        member_list_linearizable: linearizable,
        member_list_served_by: String::new(),
        leader,
        voters,
        healthy_voters,
        learners: rows.len() - voters,
        quorum: has_quorum,
        members: rows,
        warnings,
    }
}

/// Warnings about the releases the members run: 3.5.1 to 3.5.19 lose learner promotions
/// on the way to 3.6.
pub fn version_warnings(rows: &[MemberRow]) -> Vec<String> {
    let affected: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let version = r.version.as_deref()?;
            loses_promotions_on_upgrade(&parse_etcd_version(version)?)
                .then(|| format!("member {} runs etcd {version}", member_label(r.id, &r.name)))
        })
        .collect();
    promotion_persistence_warning(&affected)
        .into_iter()
        .collect()
}

/// `applied` as a percentage of `leader_index`, capped at 100, one decimal.
pub fn progress_percent(applied: u64, leader_index: u64) -> f64 {
    if leader_index == 0 {
        return 0.0;
    }
    let p = applied as f64 * 100.0 / leader_index as f64;
    (p.min(100.0) * 10.0).floor() / 10.0
}

/// Human-readable bytes, as etcdctl's table prints them (`20 kB`).
pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EtcdErrorKind, RpcError};
    use super::*;

    fn member(id: u64, name: &str, learner: bool) -> MemberInfo {
        MemberInfo {
            id: MemberId(id),
            name: name.to_string(),
            peer_urls: vec![format!("https://10.0.0.{id}:2380")],
            client_urls: if name.is_empty() {
                vec![]
            } else {
                vec![format!("https://10.0.0.{id}:2379")]
            },
            is_learner: learner,
        }
    }

    fn status(id: u64, leader: u64, index: u64, learner: bool) -> MemberStatus {
        MemberStatus {
            endpoint: format!("https://10.0.0.{id}:2379"),
            member_id: MemberId(id),
            cluster_id: 7,
            version: "3.5.1".to_string(),
            db_size: 20480,
            db_size_in_use: 16384,
            leader: MemberId(leader),
            raft_index: index,
            raft_term: 2,
            raft_applied_index: index,
            is_learner: learner,
            errors: vec![],
            storage_version: String::new(),
            db_size_quota: 0,
        }
    }

    #[test]
    fn report_counts_voters_and_learner_progress() {
        let members = [
            member(1, "a", false),
            member(2, "b", false),
            member(3, "c", true),
            member(4, "", true),
        ];
        let down = RpcError {
            kind: EtcdErrorKind::Unavailable,
            message: "connection refused".into(),
        };
        let report = build(
            0xabc,
            true,
            &members,
            vec![
                Ok(status(1, 1, 200, false)),
                Err(down.clone()),
                Ok(status(3, 1, 150, true)),
                Err(down),
            ],
        );
        assert_eq!(report.cluster_id, "abc");
        assert_eq!(report.leader, Some(MemberId(1)));
        assert_eq!(
            (report.voters, report.healthy_voters, report.learners),
            (2, 1, 2)
        );
        assert!(!report.quorum);
        assert!(report.members[0].is_leader);
        assert_eq!(report.members[2].learner_progress, Some(75.0));
        assert!(!report.members[3].started);
        assert_eq!(report.members[1].errors, ["connection refused"]);
    }

    #[test]
    fn percentages_and_sizes() {
        assert_eq!(progress_percent(9, 10), 90.0);
        assert_eq!(progress_percent(12, 10), 100.0);
        assert_eq!(progress_percent(5, 0), 0.0);
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(20480), "20.5 kB");
    }
}
