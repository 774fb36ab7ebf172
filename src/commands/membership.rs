//! `phase etcd join-learner | promote | status | check-health | remove-member`: the
//! learner lifecycle. Each turns the flags and the configuration into a call of
//! `phases::membership` and shows its events: a progress bar on a terminal, plain lines
//! otherwise (logs, CI).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use phases::config::{Etcd, KubeadmConfig};
use phases::manifest::{self, WriteOutcome};
use phases::membership::discovery::{self, EndpointSource};
use phases::membership::health::HealthReport;
use phases::membership::join::{self, AddOutcome, JoinOptions, ManifestStep};
use phases::membership::promote::{self, PromoteOptions, PromoteOutcome};
use phases::membership::remove::{self, RemoveOptions, RemoveOutcome};
use phases::membership::status::{self, human_bytes, ClusterStatus};
use phases::membership::{
    default_timeout, health, EtcdClient, EtcdTls, Event, MemberId, RetryReason, Selector,
    DEFAULT_RPC_TIMEOUT,
};

use crate::context::{say, warn, Context};

const PREFIX: &str = "etcd";
/// How often "waiting for the learner to start" is shown again.
const START_LINE_EVERY: Duration = Duration::from_secs(5);
/// How often an unchanged "retrying" answer is shown again.
const RETRY_LINE_EVERY: Duration = Duration::from_secs(3);

/// `phase etcd join-learner`
pub fn join_learner(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let dry_run = ctx.dry_run();
    let name = cfg.require_node_name()?.to_string();
    let ip = cfg.require_advertise_address()?;
    let local = cfg.require_local_etcd()?;
    let peer_url = manifest::peer_url(ip);
    let (client, _) = connect(ctx, cfg)?;
    let opts = JoinOptions {
        name: name.clone(),
        peer_url: peer_url.clone(),
        data_dir: local.data_dir.clone(),
        wipe_data_dir: ctx.flags.wipe_data_dir,
        timeout: timeout(ctx, cfg),
        dry_run: ctx.dry_run(),
    };
    let mut printer = Printer::new(dry_run);
    let joined = ctx.block_on(join::add_learner(&client, &opts, &mut |e| printer.event(e)));
    printer.finish();
    let joined = joined?;
    match (joined.outcome, joined.member_id) {
        (AddOutcome::WouldAdd, _) => progress(
            dry_run,
            "dryrun",
            format!("Would add {name} ({peer_url}) to the etcd cluster as a learner"),
        ),
        (AddOutcome::Added, Some(id)) => progress(
            dry_run,
            PREFIX,
            format!("Announced new etcd member {id} ({name}) joining the cluster as a learner"),
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
                if is_learner { "learner" } else { "voter" },
                if started {
                    "started"
                } else {
                    "not started yet"
                }
            ),
        ),
        _ => {}
    }

    let manifest_dir = ctx
        .flags
        .manifest_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/kubernetes/manifests"));
    let backup_dir = ctx
        .flags
        .backup_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/kubernetes/tmp"));
    let step = join::write_manifest(
        cfg,
        &ctx.cert_dir()?,
        &manifest_dir,
        &backup_dir,
        &joined,
        ctx.dry_run(),
    )?;
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
    Ok(())
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
pub fn promote(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let (client, _) = connect(ctx, cfg)?;
    let mut selectors = Vec::new();
    if let Some(id) = member_id_flag(ctx)? {
        selectors.push(Selector::Id(id));
    } else {
        if let Some(name) = &ctx.flags.node_name {
            selectors.push(Selector::Name(name.clone()));
        }
        // A learner that has not started has no name yet; its peer URL is known from the
        // first moment.
        if let Some(ip) = cfg.node.advertise_address {
            selectors.push(Selector::PeerUrl(manifest::peer_url(ip)));
        } else if ctx.flags.node_name.is_none() {
            if let Some(name) = &cfg.node.name {
                selectors.push(Selector::Name(name.clone()));
            }
        }
    }
    if selectors.is_empty() {
        bail!("which learner? pass --id, --node-name, or a configuration (or --advertise-address) naming this node's advertise address");
    }
    let opts = PromoteOptions {
        selectors,
        timeout: timeout(ctx, cfg),
        health_timeout: promote::HEALTH_TIMEOUT,
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
        Ok(p) => {
            let name = if p.name.is_empty() {
                p.id.to_string()
            } else {
                p.name.clone()
            };
            match p.outcome {
                PromoteOutcome::AlreadyVoter => say(
                    PREFIX,
                    format!("etcd member {} ({name}) is already a voting member", p.id),
                ),
                PromoteOutcome::Promoted | PromoteOutcome::PromotedAfterError => say(
                    PREFIX,
                    format!(
                        "Promoted etcd learner {} ({name}) to a voting member after {}",
                        p.id,
                        seconds(p.waited)
                    ),
                ),
            }
            say(
                PREFIX,
                "The etcd cluster is healthy with the new voting member",
            );
            Ok(())
        }
        Err(e) => {
            if let Some(id) = e.rollback_id() {
                eprintln!(
                    "To roll the learner back, run:\n\n\t{}\n",
                    rollback_command(ctx, id)
                );
            }
            Err(e.into())
        }
    }
}

/// `phase etcd status`
pub fn status(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let (client, _) = connect(ctx, cfg)?;
    let report = ctx.block_on(status::collect(&client))?;
    match ctx.flags.output.as_deref() {
        Some("json") => println!("{}", serde_json::to_string_pretty(&report)?),
        Some("yaml") => print!("{}", serde_yaml::to_string(&report)?),
        _ => print!("{}", status_table(&report)),
    }
    Ok(())
}

/// `phase etcd check-health`
pub fn check_health(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let (client, _) = connect(ctx, cfg)?;
    let report = ctx.block_on(health::check(&client))?;
    match ctx.flags.output.as_deref() {
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
pub fn remove_member(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let selector = match (member_id_flag(ctx)?, &ctx.flags.node_name) {
        (Some(id), None) => Selector::Id(id),
        (None, Some(name)) => Selector::Name(name.clone()),
        (Some(_), Some(_)) => bail!("pass either --id or --node-name, not both"),
        (None, None) => bail!("which member? pass --id (hex, as etcdctl prints it) or --node-name"),
    };
    let (client, _) = connect(ctx, cfg)?;
    let opts = RemoveOptions {
        selector,
        force: ctx.flags.force,
        dry_run: ctx.dry_run(),
        // Only an election is waited out; kubeadm's bound for etcd calls.
        timeout: ctx
            .flags
            .timeout
            .map_or(cfg.timeouts.etcd_api_call.0, |t| t.0),
    };
    match ctx.block_on(remove::remove(&client, &opts))? {
        RemoveOutcome::Removed {
            id,
            name,
            was_learner,
        } => say(
            PREFIX,
            format!(
                "Removed {} {} from the etcd cluster",
                if was_learner {
                    "learner"
                } else {
                    "voting member"
                },
                who(id, &name)
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
                if was_learner {
                    "learner"
                } else {
                    "voting member"
                },
                who(id, &name)
            ),
        ),
        RemoveOutcome::NotAMember { selector } => say(
            PREFIX,
            format!("No etcd member matches {selector}; nothing to remove"),
        ),
    }
    Ok(())
}

/// `8e9e05c52164694d (node2)`, or only the ID for a member that has no name yet.
fn who(id: MemberId, name: &str) -> String {
    if name.is_empty() || name == id.to_string() {
        id.to_string()
    } else {
        format!("{id} ({name})")
    }
}

fn member_id_flag(ctx: &Context) -> anyhow::Result<Option<MemberId>> {
    ctx.flags
        .member_id
        .as_deref()
        .map(|s| {
            s.parse::<MemberId>()
                .map_err(|e| anyhow::anyhow!("--id: {e}"))
        })
        .transpose()
}

/// `--timeout`, else the generous default derived from `timeouts.etcdAPICall`.
fn timeout(ctx: &Context, cfg: &KubeadmConfig) -> Duration {
    ctx.flags
        .timeout
        .map(|d| d.0)
        .unwrap_or_else(|| default_timeout(cfg.timeouts.etcd_api_call.0))
}

/// The client TLS files: `--etcd-*file`, else the external etcd files of the
/// configuration, else kubeadm's healthcheck client under the certificate directory.
fn tls(ctx: &Context, cfg: &KubeadmConfig) -> anyhow::Result<EtcdTls> {
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
        ctx.flags.etcd_ca_file.clone(),
        ctx.flags.etcd_cert_file.clone(),
        ctx.flags.etcd_key_file.clone(),
    ))
}

fn connect(ctx: &Context, cfg: &KubeadmConfig) -> anyhow::Result<(EtcdClient, EndpointSource)> {
    let (endpoints, source) = ctx.block_on(discovery::resolve(
        &ctx.flags.endpoints,
        cfg,
        ctx.flags.kubeconfig.is_some(),
        ctx.flags.kubeconfig.as_deref(),
    ))?;
    tracing::info!("etcd endpoints from {source}: {}", endpoints.join(","));
    let client = EtcdClient::new(&endpoints, &tls(ctx, cfg)?, DEFAULT_RPC_TIMEOUT)?;
    Ok((client, source))
}

/// The command that removes the learner again, with the flags this run was given.
fn rollback_command(ctx: &Context, id: MemberId) -> String {
    let mut cmd = format!("kubeadm-etcd phase etcd remove-member --id {id}");
    let f = &ctx.flags;
    if !f.endpoints.is_empty() {
        cmd.push_str(&format!(" --endpoints {}", f.endpoints.join(",")));
    }
    for (flag, value) in [
        ("--config", &f.config),
        ("--cert-dir", &f.cert_dir),
        ("--kubeconfig", &f.kubeconfig),
        ("--etcd-cafile", &f.etcd_ca_file),
        ("--etcd-certfile", &f.etcd_cert_file),
        ("--etcd-keyfile", &f.etcd_key_file),
    ] {
        if let Some(v) = value {
            cmd.push_str(&format!(" {flag} {}", v.display()));
        }
    }
    cmd
}

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

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
        "DB SIZE",
        "RAFT TERM",
        "RAFT INDEX",
        "APPLIED INDEX",
        "PROGRESS",
        "ERRORS",
    ];
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    let rows: Vec<Vec<String>> = report
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                if m.name.is_empty() {
                    "-".to_string()
                } else {
                    m.name.clone()
                },
                m.peer_urls.join(","),
                if m.client_urls.is_empty() {
                    "-".to_string()
                } else {
                    m.client_urls.join(",")
                },
                m.role.to_string(),
                m.started.to_string(),
                m.is_leader.to_string(),
                opt(m.version.clone()),
                opt(m.db_size.map(human_bytes)),
                opt(m.raft_term.map(|v| v.to_string())),
                opt(m.raft_index.map(|v| v.to_string())),
                opt(m.raft_applied_index.map(|v| v.to_string())),
                opt(m.learner_progress.map(|p| format!("{p}%"))),
                if m.errors.is_empty() {
                    "-".to_string()
                } else {
                    m.errors.join("; ")
                },
            ]
        })
        .collect();
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
    out
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
        }
    }

    fn line(&self, message: String) {
        match &self.bar {
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
                "etcd voting member {id} ({name}) is unhealthy: {reason}. etcd before 3.5.30/3.6.11 refuses to add members until it is back or removed"
            )),
            Event::DataDirWiped { path, reason } => warn(format!("wiped the etcd data directory {}: it {reason}", path.display())),
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
                self.line(format!("etcd learner {id} ({name}) is running at {client_url}"))
            }
            Event::Progress { id, applied, leader_index, percent } => self.progress(id, applied, leader_index, percent),
            Event::LearnerNotAnswering { id, url, reason } => {
                // A learner taking in a large log can be too busy to answer for a while;
                // a dead one never answers again. Either way it is not promoted until it does.
                self.line(format!("etcd learner {id} does not answer on {url} ({reason}); waiting: it is promoted only once it answers"))
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
                let bar = indicatif::ProgressBar::with_draw_target(
                    Some(1000),
                    indicatif::ProgressDrawTarget::hidden(),
                );
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "[etcd] learner catching up [{bar:30}] {msg}",
                    )
                    .expect("a valid template")
                    .progress_chars("=> "),
                );
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

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
