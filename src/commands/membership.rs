//! `phase etcd join-learner | promote | status | check-health | remove-member`: the
//! learner lifecycle. Each turns the flags and the configuration into a call of
//! `phases::membership` and shows its events: a progress bar on a terminal, plain lines
//! otherwise (logs, CI).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use phases::config::{Etcd, GoDuration, KubeadmConfig};
use phases::manifest::{self, WriteOutcome};
use phases::membership::discovery::{self, EndpointSource};
use phases::membership::health::HealthReport;
use phases::membership::join::{self, AddOutcome, JoinOptions, Joined, ManifestStep};
use phases::membership::liveness::LocalLearner;
use phases::membership::promote::{self, PromoteOptions, PromoteOutcome, Promoted};
use phases::membership::remove::{self, RemoveOptions, RemoveOutcome};
use phases::membership::status::{self, human_bytes, ClusterStatus, MemberRow};
use phases::membership::{
    default_timeout, health, member_label, EtcdClient, EtcdTls, Event, MemberId, RetryReason,
    Selector, DEFAULT_RPC_TIMEOUT,
};

use crate::context::{hidden_bar, say, warn, Context};
use crate::flags::Flag::{self, *};
use crate::phase::Phase;

pub fn join_learner() -> Phase {
    const FLAGS: &[Flag] = &[
        Config,
        KubeadmVersion,
        CertDir,
        NodeName,
        AdvertiseAddress,
        Endpoints,
        Kubeconfig,
        EtcdCaFile,
        EtcdCertFile,
        EtcdKeyFile,
        Timeout,
        WipeDataDir,
        Replace,
        ManifestDir,
        BackupDir,
        DryRun,
    ];
    Phase::leaf("join-learner", "Add this node to the etcd cluster as a learner and write its static Pod manifest", FLAGS, run_join_learner)
        .long("Add this node to an existing etcd cluster as a learner (a non-voting member, so quorum is untouched) and write its static Pod manifest with --initial-cluster listing every member and --initial-cluster-state=existing. Checks first that the cluster has quorum, runs etcd 3.4 or newer, does not use this node's name for another member, and that the data directory is empty or this member's own. Idempotent: a member with this peer URL is reused. Waits (bounded by --timeout) while another member is joining. A node re-imaged under the same name passes --replace: the member that stands for it (its name with another peer URL, or its peer URL after it has run) is removed first, only when it is down (no answer on its client URL, and no other member has a raft connection to it, on two looks a second apart) and the voters keep quorum before and after; refused otherwise, naming the check. Finds the cluster through --endpoints, else etcd.external.endpoints, else the etcd Pods through --kubeconfig.")
        .example("  kubeadm-etcd phase etcd join-learner --config join.yaml --endpoints https://10.0.0.1:2379\n  kubeadm-etcd phase etcd join-learner --config join.yaml --endpoints https://10.0.0.1:2379 --replace")
}

pub fn promote() -> Phase {
    const FLAGS: &[Flag] = &[
        Config,
        CertDir,
        NodeName,
        AdvertiseAddress,
        Flag::MemberId,
        Endpoints,
        Kubeconfig,
        EtcdCaFile,
        EtcdCertFile,
        EtcdKeyFile,
        Timeout,
        StallTimeout,
        RollbackOnTimeout,
        ManifestDir,
        DryRun,
    ];
    Phase::leaf("promote", "Promote this node's etcd learner to a voting member once it has caught up", FLAGS, run_promote)
        .long("Wait until the learner has started and caught up with the leader (progress from the Status RPC), check that it is alive (it answers on its client URL or, on its own node, its metrics listener from --manifest-dir's etcd.yaml reports its member ID: a learner taking in a large snapshot answers only there), then promote it to a voting member and wait until the cluster is healthy with it. The learner is this node's member (by peer URL), or --node-name / --id. --timeout defaults to the configuration's timeouts.etcdAPICall but at least 10m, for large databases; on timeout the error says whether the learner never started, is stuck, or does not answer, and how to roll it back. --stall-timeout gives up earlier on a learner that makes no progress (it does not start, does not catch up, or, on its own node, runs but receives neither log nor snapshot from the leader); --rollback-on-timeout then removes it (after checking it is still a learner), so that the next join is not blocked.")
        .example("  kubeadm-etcd phase etcd promote --config join.yaml --endpoints https://10.0.0.1:2379\n  kubeadm-etcd phase etcd promote --id 8e9e05c52164694d --endpoints https://10.0.0.1:2379 --timeout 30m\n  kubeadm-etcd phase etcd promote --config join.yaml --stall-timeout 2m --rollback-on-timeout")
}

/// What `status` and `check-health` take: how to reach the cluster, and the format.
const INSPECT_FLAGS: &[Flag] = &[
    Config,
    CertDir,
    Endpoints,
    Kubeconfig,
    EtcdCaFile,
    EtcdCertFile,
    EtcdKeyFile,
    Output,
];

pub fn status() -> Phase {
    Phase::leaf("status", "Show every etcd member and its state", INSPECT_FLAGS, run_status)
        .long("Every member with its ID (hex), name, peer and client URLs, role, whether it started, leader, version, storage version (etcd 3.6+), DB size, size in use and quota (3.6+), raft term, raft and applied index, a learner's progress against the leader, alarms and errors. Without quorum the member list is one member's view, and says so; warnings (lost quorum, releases with known membership bugs) go to standard error.")
        .example("  kubeadm-etcd phase etcd status --endpoints https://10.0.0.1:2379 -o json")
}

pub fn check_health() -> Phase {
    Phase::leaf("check-health", "Check that the etcd cluster has quorum", INSPECT_FLAGS, run_check_health)
        .long("Quorum-based health: healthy when a majority of the voting members answer without errors and know a leader. Warns about learners, unhealthy voters and an even number of voters. Exits non-zero when unhealthy.")
        .example("  kubeadm-etcd phase etcd check-health --endpoints https://10.0.0.1:2379")
}

pub fn remove_member() -> Phase {
    const FLAGS: &[Flag] = &[
        Config,
        CertDir,
        NodeName,
        Flag::MemberId,
        Endpoints,
        Kubeconfig,
        EtcdCaFile,
        EtcdCertFile,
        EtcdKeyFile,
        Timeout,
        Force,
        DryRun,
    ];
    Phase::leaf("remove-member", "Remove a member from the etcd cluster without losing quorum", FLAGS, run_remove_member)
        .long("Remove a member by --node-name or --id (hex). A learner can always be removed (it does not vote): this is how a failed join is rolled back. A voting member is refused when the healthy voters that would remain could not keep quorum, unless --force. A voting member that leads hands leadership to the most up-to-date voting member that serves first (MoveLeader: one quick election, rather than none until an election timeout). Idempotent: a member that is gone already is success.")
        .example("  kubeadm-etcd phase etcd remove-member --id 8e9e05c52164694d --endpoints https://10.0.0.1:2379")
}

const PREFIX: &str = "etcd";
/// How often "waiting for the learner to start" is shown again.
const START_LINE_EVERY: Duration = Duration::from_secs(5);
/// How often an unchanged "retrying" answer is shown again.
const RETRY_LINE_EVERY: Duration = Duration::from_secs(3);

/// `phase etcd join-learner`: the add (or the reuse of this node's member), then the
/// manifest.
fn run_join_learner(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let dry_run = ctx.dry_run();
    let name = cfg.require_node_name()?.to_string();
    let peer_url = manifest::peer_url(cfg.require_advertise_address()?);
    let local = cfg.require_local_etcd()?;
    let (client, _) = connect(ctx, cfg)?;
    let opts = JoinOptions {
        name: name.clone(),
        peer_url: peer_url.clone(),
        data_dir: local.data_dir.clone(),
        wipe_data_dir: ctx.switch(WipeDataDir),
        replace: ctx.switch(Replace),
        timeout: timeout(ctx, cfg),
        dry_run,
    };
    let mut printer = Printer::new(dry_run);
    let joined = ctx.block_on(join::add_learner(&client, &opts, &mut |e| printer.event(e)));
    printer.finish();
    let joined = joined?;
    report_added(dry_run, &joined, &name, &peer_url);
    let step = join::write_manifest(
        cfg,
        &ctx.cert_dir()?,
        &ctx.required::<PathBuf>(ManifestDir),
        &ctx.required::<PathBuf>(BackupDir),
        &joined,
        dry_run,
    )?;
    report_manifest(dry_run, step);
    Ok(())
}

fn report_added(dry_run: bool, joined: &Joined, name: &str, peer_url: &str) {
    match (&joined.outcome, joined.member_id) {
        (AddOutcome::WouldAdd, _) => progress(
            dry_run,
            "dryrun",
            format!("Would add {name} ({peer_url}) to the etcd cluster as a learner"),
        ),
        (AddOutcome::Added, Some(id)) => progress(
            dry_run,
            PREFIX,
            format!(
                "Announced new etcd member {} joining the cluster as a learner",
                member_label(id, name)
            ),
        ),
        (
            AddOutcome::Reused {
                is_learner,
                started,
            },
            Some(id),
        ) => progress(
            dry_run,
            PREFIX,
            format!(
                "etcd member {id} with peer URL {peer_url} already exists ({}, {}); reusing it",
                if *is_learner { "learner" } else { "voter" },
                if *started {
                    "started"
                } else {
                    "not started yet"
                }
            ),
        ),
        _ => {}
    }
}

fn report_manifest(dry_run: bool, step: ManifestStep) {
    match step {
        ManifestStep::Kept { path } => progress(
            dry_run,
            PREFIX,
            format!(
                "The member has run before; keeping its static Pod manifest {:?}",
                path.display().to_string()
            ),
        ),
        ManifestStep::WouldWrite { path, yaml } => {
            progress(
                dry_run,
                "dryrun",
                format!(
                    "Would write the static Pod manifest for etcd to {:?}:",
                    path.display().to_string()
                ),
            );
            print!("{yaml}");
        }
        ManifestStep::Written { path, outcome } => {
            let what = match outcome {
                WriteOutcome::Unchanged => "is up to date".to_string(),
                WriteOutcome::Created => "was written".to_string(),
                WriteOutcome::Replaced { backup } => {
                    format!("was replaced (the old one is in {})", backup.display())
                }
            };
            progress(
                dry_run,
                PREFIX,
                format!(
                    "The static Pod manifest for the etcd member {:?} {what}",
                    path.display().to_string()
                ),
            );
            progress(dry_run, PREFIX, "The kubelet starts the member from it; `kubeadm-etcd phase etcd promote` waits for it to catch up");
        }
    }
}

/// A progress line; in a dry run on standard error, so that standard output carries
/// exactly the manifest that would be written.
fn progress(dry_run: bool, prefix: &str, message: impl std::fmt::Display) {
    if dry_run {
        eprintln!("[{prefix}] {message}");
    } else {
        say(prefix, message);
    }
}

/// `phase etcd promote`
fn run_promote(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let (client, _) = connect(ctx, cfg)?;
    let opts = PromoteOptions {
        selectors: learner_selectors(ctx, cfg)?,
        timeout: timeout(ctx, cfg),
        health_timeout: promote::HEALTH_TIMEOUT,
        stall_timeout: ctx.value::<GoDuration>(StallTimeout).map(|d| d.0),
        rollback_on_timeout: ctx.switch(RollbackOnTimeout),
        local: local_learner(ctx, cfg),
    };
    if ctx.dry_run() {
        let member = ctx.block_on(promote::find_member(&client, &opts.selectors))?;
        say(
            "dryrun",
            format!(
                "Would wait for {} {} to catch up and promote it",
                member.role(),
                member.id
            ),
        );
        return Ok(());
    }
    let mut printer = Printer::new(false);
    let result = ctx.block_on(promote::promote(&client, &opts, &mut |e| printer.event(e)));
    printer.finish();
    match result {
        Ok(promoted) => {
            report_promoted(&promoted);
            Ok(())
        }
        Err(e) => {
            if let Some(id) = e.rollback_id() {
                eprintln!(
                    "To roll the learner back, run:\n\n\t{}\n\nor rerun promote with --rollback-on-timeout (and --stall-timeout <duration> to give up sooner on a learner that makes no progress): it removes a learner it gives up on, never a voter.\n",
                    rollback_command(ctx, id)
                );
            }
            Err(e.into())
        }
    }
}

/// This node's etcd manifest, for the learner's metrics listener and data directory
/// (used only when it runs the learner being promoted). A manifest that cannot be read
/// only costs speed: the client URL stays the evidence.
fn local_learner(ctx: &Context, cfg: &KubeadmConfig) -> Option<LocalLearner> {
    let path = manifest::manifest_path(&ctx.required::<PathBuf>(ManifestDir));
    match LocalLearner::from_manifest(&path, cfg.node.advertise_address) {
        Ok(local) => local,
        Err(e) => {
            warn(format!(
                "{e}; the learner counts as alive only when it answers on its client URL"
            ));
            None
        }
    }
}

/// Which member to promote: `--id`; else `--node-name` and this node's peer URL (a
/// learner that has not started has no name yet; its peer URL is known from the first
/// moment); else the configuration's node name.
fn learner_selectors(ctx: &Context, cfg: &KubeadmConfig) -> anyhow::Result<Vec<Selector>> {
    if let Some(id) = member_id_flag(ctx)? {
        return Ok(vec![Selector::Id(id)]);
    }
    let mut selectors = Vec::new();
    let node_name: Option<String> = ctx.value(NodeName);
    if let Some(name) = &node_name {
        selectors.push(Selector::Name(name.clone()));
    }
    if let Some(ip) = cfg.node.advertise_address {
        selectors.push(Selector::PeerUrl(manifest::peer_url(ip)));
    } else if node_name.is_none() {
        if let Some(name) = &cfg.node.name {
            selectors.push(Selector::Name(name.clone()));
        }
    }
    if selectors.is_empty() {
        bail!("which learner? pass --id, --node-name, or a configuration (or --advertise-address) naming this node's advertise address");
    }
    Ok(selectors)
}

fn report_promoted(p: &Promoted) {
    let name = if p.name.is_empty() {
        p.id.to_string()
    } else {
        p.name.clone()
    };
    match p.outcome {
        PromoteOutcome::AlreadyVoter => say(
            PREFIX,
            format!(
                "etcd member {} is already a voting member",
                member_label(p.id, &name)
            ),
        ),
        PromoteOutcome::Promoted | PromoteOutcome::PromotedAfterError => say(
            PREFIX,
            format!(
                "Promoted etcd learner {} to a voting member after {}",
                member_label(p.id, &name),
                seconds(p.waited)
            ),
        ),
    }
    say(
        PREFIX,
        "The etcd cluster is healthy with the new voting member",
    );
}

/// `phase etcd status`
fn run_status(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let (client, _) = connect(ctx, cfg)?;
    let report = ctx.block_on(status::collect(&client))?;
    match ctx.value::<String>(Output).as_deref() {
        Some("json") => println!("{}", serde_json::to_string_pretty(&report)?),
        Some("yaml") => print!("{}", serde_yaml::to_string(&report)?),
        _ => {
            print!("{}", status_table(&report));
            for warning in &report.warnings {
                warn(warning);
            }
        }
    }
    Ok(())
}

/// `phase etcd check-health`
fn run_check_health(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let (client, _) = connect(ctx, cfg)?;
    let mut report = ctx.block_on(health::check(&client))?;
    // Expired, not yet valid or soon expiring server and peer certificates, as served.
    let served = super::certs::served_certificate_warnings(&report.status.members, &tls(ctx, cfg)?);
    report.warnings.extend(served);
    match ctx.value::<String>(Output).as_deref() {
        Some("json") => println!("{}", serde_json::to_string_pretty(&report)?),
        Some("yaml") => print!("{}", serde_yaml::to_string(&report)?),
        _ => print_health(&report),
    }
    if !report.healthy {
        bail!(
            "the etcd cluster is not healthy: {}",
            report.problems.join("; ")
        );
    }
    Ok(())
}

/// `phase etcd remove-member`
fn run_remove_member(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let selector = match (member_id_flag(ctx)?, ctx.value::<String>(NodeName)) {
        (Some(id), None) => Selector::Id(id),
        (None, Some(name)) => Selector::Name(name),
        (Some(_), Some(_)) => bail!("pass either --id or --node-name, not both"),
        (None, None) => bail!("which member? pass --id (hex, as etcdctl prints it) or --node-name"),
    };
    let (client, _) = connect(ctx, cfg)?;
    let opts = RemoveOptions {
        selector,
        force: ctx.switch(Force),
        dry_run: ctx.dry_run(),
        // Only an election is waited out; kubeadm's bound for etcd calls.
        timeout: ctx
            .value::<GoDuration>(Timeout)
            .map_or(cfg.timeouts.etcd_api_call.0, |t| t.0),
    };
    let role = |was_learner: bool| {
        if was_learner {
            "learner"
        } else {
            "voting member"
        }
    };
    let removed = ctx.block_on(remove::remove_reporting(&client, &opts, &mut |e| {
        super::maintenance::show(false, e)
    }))?;
    match removed {
        RemoveOutcome::Removed {
            id,
            name,
            was_learner,
        } => say(
            PREFIX,
            format!(
                "Removed {} {} from the etcd cluster",
                role(was_learner),
                member_label(id, &name)
            ),
        ),
        RemoveOutcome::WouldRemove {
            id,
            name,
            was_learner,
        } => say(
            "dryrun",
            format!(
                "Would remove {} {} from the etcd cluster",
                role(was_learner),
                member_label(id, &name)
            ),
        ),
        RemoveOutcome::NotAMember { selector } => say(
            PREFIX,
            format!("No etcd member matches {selector}; nothing to remove"),
        ),
    }
    Ok(())
}

fn member_id_flag(ctx: &Context) -> anyhow::Result<Option<MemberId>> {
    ctx.value::<String>(Flag::MemberId)
        .as_deref()
        .map(|s| {
            s.parse::<MemberId>()
                .map_err(|e| anyhow::anyhow!("--id: {e}"))
        })
        .transpose()
}

/// `--timeout`, else the generous default derived from `timeouts.etcdAPICall`.
pub(crate) fn timeout(ctx: &Context, cfg: &KubeadmConfig) -> Duration {
    ctx.value::<GoDuration>(Timeout)
        .map(|d| d.0)
        .unwrap_or_else(|| default_timeout(cfg.timeouts.etcd_api_call.0))
}

/// The client TLS files: `--etcd-*file`, else the external etcd files of the
/// configuration, else kubeadm's healthcheck client under the certificate directory.
pub(crate) fn tls(ctx: &Context, cfg: &KubeadmConfig) -> anyhow::Result<EtcdTls> {
    let mut tls = EtcdTls::from_cert_dir(&ctx.cert_dir()?);
    if let Etcd::External(ext) = &cfg.cluster.etcd {
        let file = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
        tls = tls.with_overrides(
            file(&ext.ca_file),
            file(&ext.cert_file),
            file(&ext.key_file),
        );
    }
    Ok(tls.with_overrides(
        ctx.value(EtcdCaFile),
        ctx.value(EtcdCertFile),
        ctx.value(EtcdKeyFile),
    ))
}

pub(crate) fn connect(
    ctx: &Context,
    cfg: &KubeadmConfig,
) -> anyhow::Result<(EtcdClient, EndpointSource)> {
    let kubeconfig: Option<PathBuf> = ctx.value(Kubeconfig);
    // Discovery through the API server only with a kubeconfig given, as kubeadm asks
    // the API server only when it has a client (the --kubeconfig help says so).
    let (endpoints, source) = ctx.block_on(discovery::resolve(
        &ctx.list(Endpoints),
        cfg,
        kubeconfig.is_some(),
        kubeconfig.as_deref(),
    ))?;
    tracing::info!("etcd endpoints from {source}: {}", endpoints.join(","));
    let client = EtcdClient::new(&endpoints, &tls(ctx, cfg)?, DEFAULT_RPC_TIMEOUT)?;
    Ok((client, source))
}

/// The command that removes the learner again, with the flags this run was given.
fn rollback_command(ctx: &Context, id: MemberId) -> String {
    let mut cmd = format!("kubeadm-etcd phase etcd remove-member --id {id}");
    let endpoints = ctx.list(Endpoints);
    if !endpoints.is_empty() {
        cmd.push_str(&format!(" --endpoints {}", endpoints.join(",")));
    }
    for flag in [
        Config,
        CertDir,
        Kubeconfig,
        EtcdCaFile,
        EtcdCertFile,
        EtcdKeyFile,
    ] {
        if let Some(value) = ctx.value::<PathBuf>(flag) {
            cmd.push_str(&format!(" --{} {}", flag.id(), value.display()));
        }
    }
    cmd
}

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// The status as a table, one member per row, then one line about the cluster. A column
/// a member did not report (an older etcd, or no answer) shows `-`: etcd 3.6 added the
/// storage version and the quota to Status.
fn status_table(report: &ClusterStatus) -> String {
    let headers = [
        "ID",
        "NAME",
        "PEER URLS",
        "CLIENT URLS",
        "ROLE",
        "STARTED",
        "LEADER",
        "VERSION",
        "STORAGE",
        "DB SIZE",
        "IN USE",
        "QUOTA",
        "RAFT TERM",
        "RAFT INDEX",
        "APPLIED INDEX",
        "PROGRESS",
        "ALARMS",
        "ERRORS",
    ];
    let rows: Vec<Vec<String>> = report.members.iter().map(status_row).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out.push_str(&format!(
        "\ncluster {}: {} voting member(s), {} healthy, quorum {}; {} learner(s)\n",
        report.cluster_id,
        report.voters,
        report.healthy_voters,
        if report.quorum { "yes" } else { "NO" },
        report.learners
    ));
    if !report.member_list_linearizable {
        out.push_str(&format!(
            "member list: {}'s own view (no leader to confirm it)\n",
            report.member_list_served_by
        ));
    }
    out
}

fn status_row(m: &MemberRow) -> Vec<String> {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    let list = |items: &[String], separator: &str| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(separator)
        }
    };
    vec![
        m.id.to_string(),
        if m.name.is_empty() {
            "-".to_string()
        } else {
            m.name.clone()
        },
        m.peer_urls.join(","),
        list(&m.client_urls, ","),
        m.role.to_string(),
        m.started.to_string(),
        m.is_leader.to_string(),
        opt(m.version.clone()),
        opt(m.storage_version.clone()),
        opt(m.db_size.map(human_bytes)),
        opt(m.db_size_in_use.map(human_bytes)),
        opt(m.db_size_quota.map(human_bytes)),
        opt(m.raft_term.map(|v| v.to_string())),
        opt(m.raft_index.map(|v| v.to_string())),
        opt(m.raft_applied_index.map(|v| v.to_string())),
        opt(m.learner_progress.map(|p| format!("{p}%"))),
        list(&m.alarms, ","),
        list(&m.errors, "; "),
    ]
}

fn print_health(report: &HealthReport) {
    say(
        PREFIX,
        format!(
            "{} of {} voting members are healthy (quorum needs {}; {} more may fail); {} learner(s)",
            report.healthy_voters, report.voters, report.quorum, report.failures_tolerated, report.learners
        ),
    );
    for w in &report.warnings {
        warn(w);
    }
    if report.healthy {
        say(PREFIX, "The etcd cluster is healthy");
    }
}

/// Shows the events of a long operation: kubeadm-style lines, and the learner's catch-up
/// as a progress bar on a terminal or, in logs, a line per 10% (or per 5 s).
struct Printer {
    /// Lines go to standard error (a dry run prints the manifest on standard output).
    stderr: bool,
    bar: Option<indicatif::ProgressBar>,
    terminal: bool,
    last_retry: Option<(String, Instant)>,
    last_start_line: Option<Instant>,
    last_line: Option<(f64, Instant)>,
    /// A snapshot streaming into the learner: its own bar, or a line per 10% (or 5 s).
    snapshot_bar: Option<indicatif::ProgressBar>,
    last_snapshot_line: Option<(f64, Instant)>,
}

impl Printer {
    fn new(stderr: bool) -> Self {
        Self {
            stderr,
            bar: None,
            terminal: std::io::stdout().is_terminal(),
            last_retry: None,
            last_start_line: None,
            last_line: None,
            snapshot_bar: None,
            last_snapshot_line: None,
        }
    }

    fn line(&self, message: String) {
        match self.bar.as_ref().or(self.snapshot_bar.as_ref()) {
            Some(bar) => bar.println(format!("[{PREFIX}] {message}")),
            None => progress(self.stderr, PREFIX, message),
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Endpoints { endpoints } => tracing::info!("etcd endpoints (voters): {}", endpoints.join(",")),
            Event::ClusterHealthy { voters, healthy, learners } => self.line(format!(
                "Checked the etcd cluster: {healthy} of {voters} voting members healthy, {learners} learner(s)"
            )),
            Event::VoterDown { id, name, reason } => warn(format!(
                "etcd voting member {} is unhealthy: {reason}. The join continues despite it: this etcd accepts the add while the voting members it reaches are a quorum of the grown cluster",
                member_label(id, &name)
            )),
            Event::DataDirWiped { path, reason } => warn(format!("wiped the etcd data directory {}: it {reason}", path.display())),
            Event::StaleMemberRemoved { id, name, was_learner, evidence, dry_run } => {
                let role = if was_learner { "learner" } else { "voting member" };
                let what = format!("{role} {} (--replace): it is down: {evidence}", member_label(id, &name));
                if dry_run {
                    progress(true, "dryrun", format!("Would remove the {what}"));
                } else {
                    self.line(format!("Removed the {what}"));
                }
            }
            Event::MemberReused { .. } | Event::LearnerAdded { .. } => {}
            Event::Retrying { reason, message, elapsed } => {
                let what = match reason {
                    RetryReason::OtherLearner { .. } => "Another member is joining",
                    RetryReason::Unhealthy => "etcd refuses membership changes for now",
                    RetryReason::Unavailable => "etcd did not answer",
                    RetryReason::LearnerNotReady => "etcd says the learner is not in sync yet",
                };
                // etcd gives the same answer for seconds (about 5 s after a promotion):
                // one line when it changes, then one every few seconds.
                let repeat = self
                    .last_retry
                    .as_ref()
                    .is_some_and(|(m, t)| *m == message && t.elapsed() < RETRY_LINE_EVERY);
                if !repeat {
                    self.line(format!("{what} ({message}); retrying [{}]", seconds(elapsed)));
                    self.last_retry = Some((message, Instant::now()));
                }
            }
            Event::WaitingForStart { id, elapsed } => {
                // The library reports every second; a log needs a line every few.
                let due = self.last_start_line.is_none_or(|t| t.elapsed() >= START_LINE_EVERY);
                if due {
                    self.last_start_line = Some(Instant::now());
                    self.line(format!(
                        "Waiting for the etcd learner {id} to start (is its static Pod running?) [{}]",
                        seconds(elapsed)
                    ));
                }
            }
            Event::Started { id, name, client_url } => {
                self.line(format!("etcd learner {} is running at {client_url}", member_label(id, &name)))
            }
            Event::Progress { id, applied, leader_index, percent } => {
                self.finish_snapshot();
                self.progress(id, applied, leader_index, percent)
            }
            Event::SnapshotProgress { id, received, total, bytes_per_sec, complete } => {
                self.snapshot(id, received, total, bytes_per_sec, complete)
            }
            Event::LearnerNotAnswering { id, url, reason } => {
                // A learner taking in a large log can be too busy to answer for a while;
                // a dead one never answers again. Either way it is not promoted until it does.
                self.line(format!("etcd learner {id} does not answer on {url} ({reason}); waiting: it is promoted only once it is seen alive"))
            }
            Event::AlreadyVoter { .. } => {}
            Event::Promoted { id, after_error, since_ready } => {
                self.finish();
                self.line(format!(
                    "etcd learner {id} promoted{} {}ms after it was seen ready",
                    if after_error { " (the call failed, but the promotion landed)" } else { "" },
                    since_ready.as_millis()
                ));
            }
            Event::WaitingForHealth { voters, healthy } => self.line(format!(
                "Waiting for the etcd cluster to be healthy with the new voting member ({healthy} of {voters} healthy)"
            )),
        }
    }

    fn progress(&mut self, id: MemberId, applied: u64, leader_index: u64, percent: f64) {
        if self.terminal {
            let message = format!("{percent:.1}% ({applied}/{leader_index})");
            let position = (percent * 10.0) as u64;
            if let Some(bar) = &self.bar {
                bar.set_position(position);
                bar.set_message(message);
            } else {
                // Filled while hidden, so that the first frame is complete; short enough
                // for an 80-column terminal (a wrapped bar redraws as garbage).
                let bar = hidden_bar(1000, "[etcd] learner catching up [{bar:30}] {msg}");
                bar.set_position(position);
                bar.set_message(message);
                bar.set_draw_target(indicatif::ProgressDrawTarget::stdout());
                self.bar = Some(bar);
            }
            return;
        }
        let due = self.last_line.is_none_or(|(p, t)| {
            percent - p >= 10.0
                || t.elapsed() >= Duration::from_secs(5)
                || percent >= 100.0 && p < 100.0
        });
        if due {
            self.last_line = Some((percent, Instant::now()));
            progress(self.stderr, PREFIX, format!("etcd learner {id} catching up: {percent:.1}% (applied index {applied} of the leader's {leader_index})"));
        }
    }

    /// The snapshot the learner receives, in bytes against the leader's database size,
    /// with a rate and an estimate of the time left.
    fn snapshot(
        &mut self,
        id: MemberId,
        received: u64,
        total: u64,
        rate: Option<f64>,
        complete: bool,
    ) {
        if self.terminal {
            let bar = self.snapshot_bar.get_or_insert_with(|| {
                let bar = hidden_bar(
                    total.max(1),
                    "[etcd] learner receiving the database [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
                );
                bar.set_position(received);
                bar.set_draw_target(indicatif::ProgressDrawTarget::stdout());
                bar
            });
            bar.set_length(total.max(received).max(1));
            bar.set_position(received);
            bar.set_message(if complete {
                "applying".to_string()
            } else {
                String::new()
            });
            return;
        }
        let percent = if total == 0 {
            0.0
        } else {
            received as f64 * 100.0 / total as f64
        };
        let due = self.last_snapshot_line.is_none_or(|(p, t)| {
            percent - p >= 10.0 || t.elapsed() >= Duration::from_secs(5) || complete && p < 100.0
        });
        if !due {
            return;
        }
        self.last_snapshot_line = Some((if complete { 100.0 } else { percent }, Instant::now()));
        let size = |n: u64| human_bytes(n as i64);
        let message = if complete {
            format!(
                "etcd learner {id} received the database snapshot ({}); applying it",
                size(received)
            )
        } else {
            let of = if total == 0 {
                String::new()
            } else {
                format!(" of {} ({percent:.0}%)", size(total))
            };
            let pace = match rate.filter(|r| *r > 0.0) {
                Some(r) => {
                    let left = total.saturating_sub(received) as f64 / r;
                    format!(", {}/s, about {left:.0}s left", size(r as u64))
                }
                None => String::new(),
            };
            format!(
                "etcd learner {id} receiving the database snapshot: {}{of}{pace}",
                size(received)
            )
        };
        progress(self.stderr, PREFIX, message);
    }

    fn finish_snapshot(&mut self) {
        if let Some(bar) = self.snapshot_bar.take() {
            bar.finish_and_clear();
        }
    }

    fn finish(&mut self) {
        self.finish_snapshot();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phases::membership::MemberId;

    fn row(id: u64, name: &str) -> MemberRow {
        MemberRow {
            id: MemberId(id),
            name: name.into(),
            peer_urls: vec![format!("https://10.0.0.{id}:2380")],
            client_urls: vec![format!("https://10.0.0.{id}:2379")],
            role: "voter",
            started: true,
            is_leader: false,
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
            healthy: true,
        }
    }

    #[test]
    fn the_table_shows_what_etcd_3_6_reports_and_dashes_what_older_releases_do_not() {
        let new = MemberRow {
            is_leader: true,
            version: Some("3.6.14".into()),
            storage_version: Some("3.6.0".into()),
            db_size: Some(4 * 1024 * 1024),
            db_size_in_use: Some(1024 * 1024),
            db_size_quota: Some(2 * 1024 * 1024 * 1024),
            alarms: vec!["NOSPACE".into()],
            ..row(1, "cp-1")
        };
        let old = MemberRow {
            version: Some("3.5.30".into()),
            db_size: Some(4 * 1024 * 1024),
            ..row(2, "cp-2")
        };
        let report = ClusterStatus {
            cluster_id: "cdf818194e3a8c32".into(),
            member_list_linearizable: false,
            member_list_served_by: "https://10.0.0.1:2379".into(),
            leader: Some(MemberId(1)),
            voters: 2,
            healthy_voters: 2,
            learners: 0,
            quorum: true,
            members: vec![new, old],
            warnings: vec!["a warning".into()],
        };
        let table = status_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        let header: Vec<&str> = lines[0].split("  ").filter(|c| !c.is_empty()).collect();
        for column in ["STORAGE", "IN USE", "QUOTA", "ALARMS"] {
            assert!(
                header.iter().any(|h| h.trim() == column),
                "{column} in {header:?}"
            );
        }
        let cells = |line: &str| -> Vec<String> {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        };
        let new_row = cells(lines[1]);
        assert_eq!(new_row[8], "3.6.0", "{new_row:?}");
        assert_eq!(new_row[10], human_bytes(1024 * 1024), "{new_row:?}");
        assert_eq!(
            new_row[11],
            human_bytes(2 * 1024 * 1024 * 1024),
            "{new_row:?}"
        );
        assert_eq!(new_row[16], "NOSPACE", "{new_row:?}");
        let old_row = cells(lines[2]);
        assert_eq!(old_row[7], "3.5.30");
        assert_eq!(
            old_row[8], "-",
            "no storage version before 3.6: {old_row:?}"
        );
        assert_eq!(old_row[11], "-", "no quota before 3.6: {old_row:?}");
        assert!(
            table.contains("member list: https://10.0.0.1:2379's own view"),
            "{table}"
        );
    }
}
