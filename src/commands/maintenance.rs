//! `phase etcd defrag | alarm list | alarm disarm | move-leader`: day-2 maintenance
//! (`phases::maintenance`). Progress lines go to standard output, or to standard error
//! with `-o json`, whose standard output is the report alone.

use anyhow::bail;
use phases::config::{GoDuration, KubeadmConfig};
use phases::maintenance::alarm::{self, AlarmReport, DisarmOptions};
use phases::maintenance::defrag::{
    self, sizes, with_role, DefragOptions, DefragReport, Outcome, Scope, DEFAULT_DEFRAG_TIMEOUT,
    DEFAULT_HEALTH_TIMEOUT,
};
use phases::maintenance::leader;
use phases::maintenance::Event;
use phases::manifest;
use phases::membership::status::human_bytes;
use phases::membership::{MemberId, Selector};

use crate::context::{say, warn, Context};
use crate::flags::Flag::{self, *};
use crate::phase::Phase;

use super::membership::connect;

const PREFIX: &str = "etcd";

pub fn defrag() -> Phase {
    const FLAGS: &[Flag] = &[
        Config,
        CertDir,
        NodeName,
        AdvertiseAddress,
        Flag::MemberId,
        Cluster,
        Endpoints,
        Kubeconfig,
        EtcdCaFile,
        EtcdCertFile,
        EtcdKeyFile,
        Timeout,
        Force,
        Output,
        DryRun,
    ];
    Phase::leaf("defrag", "Defragment etcd members one at a time, without losing quorum", FLAGS, run_defrag)
        .long("Give the free pages of etcd's database file back to the file system. A member that defragments serves nothing until it is done, so: this node's member (by --id, --node-name, else this node's peer URL), or with --cluster every member one at a time, learners first (etcd refuses Defragment on a learner: reported as skipped), then followers, the leader last (looked up again before each member); a voter only while the other voting members that serve are a quorum; the cluster must be healthy and the defragmented member caught up before the next one starts (60s at most per wait). Refused while any member is down, naming it, unless --force. Reports each member's database size and size in use before and after. --timeout bounds each Defragment call [default: 10m, or timeouts.etcdAPICall when larger]: etcd goes on defragmenting after a client gives up, so when it runs out nothing else is touched.")
        .example("  kubeadm-etcd phase etcd defrag --cluster --endpoints https://10.0.0.1:2379\n  kubeadm-etcd phase etcd defrag --config kubeadm.yaml -o json")
}

pub fn alarm() -> Phase {
    Phase::group(
        "alarm",
        "List and disarm etcd alarms (NOSPACE, CORRUPT)",
        vec![alarm_list(), alarm_disarm()],
    )
}

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

pub fn alarm_list() -> Phase {
    Phase::leaf("list", "List the etcd cluster's alarms and what to do about each", INSPECT_FLAGS, run_alarm_list)
        .long("Every active alarm with the member that raised it and what to do. NOSPACE (the database reached --quota-backend-bytes; writes are refused): compact to the current revision and defragment every member, then disarm, which `alarm disarm --compact-and-defrag` does. CORRUPT (members hold different data): never disarm blindly; replace the diverged member or restore from a snapshot first. Exits 0 with or without alarms.")
        .example("  kubeadm-etcd phase etcd alarm list --endpoints https://10.0.0.1:2379 -o json")
}

pub fn alarm_disarm() -> Phase {
    const FLAGS: &[Flag] = &[
        Config,
        CertDir,
        Endpoints,
        Kubeconfig,
        EtcdCaFile,
        EtcdCertFile,
        EtcdKeyFile,
        CompactAndDefrag,
        CorruptResolved,
        Timeout,
        Force,
        Output,
        DryRun,
    ];
    Phase::leaf("disarm", "Disarm etcd alarms once their cause is dealt with", FLAGS, run_alarm_disarm)
        .long("NOSPACE is disarmed only when every member's database file is defragmented (at most a quarter, or 4 MiB, of free pages) and, where etcd reports the quota (3.6+), its data in use fits: otherwise the next write raises it again. --compact-and-defrag first compacts the key history to the current revision and defragments every member one at a time (as `defrag --cluster`); no key is ever deleted. CORRUPT is refused unless --corrupt-resolved. --force disarms NOSPACE without the checks (and lets the defragmentation skip members that are down).")
        .example("  kubeadm-etcd phase etcd alarm disarm --compact-and-defrag --endpoints https://10.0.0.1:2379")
}

pub fn move_leader() -> Phase {
    const FLAGS: &[Flag] = &[
        Config,
        CertDir,
        To,
        Endpoints,
        Kubeconfig,
        EtcdCaFile,
        EtcdCertFile,
        EtcdKeyFile,
        Timeout,
        Output,
    ];
    Phase::leaf("move-leader", "Hand etcd leadership to another voting member", FLAGS, run_move_leader)
        .long("Move raft leadership to the member --to names (its name, or its hex ID): it must be a started voting member that serves (not a learner). MoveLeader is sent to the current leader, and the command returns once the target is seen leading: one quick election. --timeout bounds the whole operation, elections included [default: the configuration's timeouts.etcdAPICall]. `remove-member` of the leader does the same first, to the most up-to-date voter.")
        .example("  kubeadm-etcd phase etcd move-leader --to node2 --endpoints https://10.0.0.1:2379")
}

fn json(ctx: &Context) -> bool {
    ctx.value::<String>(Output).as_deref() == Some("json")
}

/// A progress line: standard output, or standard error when standard output carries
/// the JSON report.
fn line(json: bool, message: impl std::fmt::Display) {
    if json {
        eprintln!("[{PREFIX}] {message}");
    } else {
        say(PREFIX, message);
    }
}

pub(crate) fn show(json: bool, event: Event) {
    match event {
        Event::DefragPlan { order } if order.is_empty() => line(json, "No member to defragment"),
        Event::DefragPlan { order } => line(
            json,
            format!("Defragmenting one member at a time: {}", order.join(", ")),
        ),
        Event::DefragSkipped { member, reason } => {
            line(json, format!("Skipping {member}: {reason}"))
        }
        Event::Forced { what } => warn(what),
        Event::DefragStarted {
            member, endpoint, ..
        } => line(json, format!("Defragmenting {member} at {endpoint}")),
        Event::DefragFinished { member, took, .. } => line(
            json,
            format!("{member} answered after {:.2}s", took.as_secs_f64()),
        ),
        Event::WaitingForHealth { reason } => line(json, format!("Waiting {reason}")),
        Event::Compacted { revision } => line(
            json,
            format!("Compacted the key history to revision {revision}"),
        ),
        Event::MovingLeader { from, to } => {
            line(json, format!("Moving leadership from {from} to {to}"))
        }
        Event::LeaderMoved { from, to, took } => line(
            json,
            format!(
                "Leadership moved from {from} to {to} in {:.2}s",
                took.as_secs_f64()
            ),
        ),
        Event::Disarmed { alarm, member } => line(json, format!("Disarmed {alarm} of {member}")),
    }
}

/// Each Defragment call's bound: `--timeout`, else 10 minutes or the configuration's
/// `timeouts.etcdAPICall` when larger.
fn defrag_timeout(ctx: &Context, cfg: &KubeadmConfig) -> std::time::Duration {
    ctx.value::<GoDuration>(Timeout)
        .map(|d| d.0)
        .unwrap_or_else(|| DEFAULT_DEFRAG_TIMEOUT.max(cfg.timeouts.etcd_api_call.0))
}

/// This node's member: `--id`, else `--node-name`, else the advertise address's peer
/// URL, else the configuration's node name.
fn this_member(ctx: &Context, cfg: &KubeadmConfig) -> anyhow::Result<Vec<Selector>> {
    if let Some(id) = ctx.value::<String>(Flag::MemberId) {
        let id: MemberId = id.parse().map_err(|e| anyhow::anyhow!("--id: {e}"))?;
        return Ok(vec![Selector::Id(id)]);
    }
    let mut selectors = Vec::new();
    if let Some(name) = ctx.value::<String>(NodeName) {
        selectors.push(Selector::Name(name));
    }
    if let Some(ip) = cfg.node.advertise_address {
        selectors.push(Selector::PeerUrl(manifest::peer_url(ip)));
    }
    if let Some(name) = &cfg.node.name {
        selectors.push(Selector::Name(name.clone()));
    }
    if selectors.is_empty() {
        bail!("which member? pass --cluster for every member, or --id, --node-name or a configuration naming this node");
    }
    Ok(selectors)
}

/// `phase etcd defrag`
fn run_defrag(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let json = json(ctx);
    let scope = if ctx.switch(Cluster) {
        if ctx.value::<String>(Flag::MemberId).is_some() || ctx.value::<String>(NodeName).is_some()
        {
            bail!("--cluster defragments every member: pass it without --id or --node-name");
        }
        Scope::Cluster
    } else {
        Scope::Member(this_member(ctx, cfg)?)
    };
    let (client, _) = connect(ctx, cfg)?;
    let opts = DefragOptions {
        scope,
        force: ctx.switch(Force),
        rpc_timeout: defrag_timeout(ctx, cfg),
        health_timeout: DEFAULT_HEALTH_TIMEOUT,
        dry_run: ctx.dry_run(),
    };
    let report = ctx.block_on(defrag::defrag(&client, &opts, &mut |e| show(json, e)))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_defrag(&report);
    }
    Ok(())
}

fn print_defrag(report: &DefragReport) {
    let mut done = 0;
    for m in &report.members {
        let who = with_role(m.id, &m.name, m.role);
        match &m.outcome {
            Outcome::Defragmented {
                db_size_before,
                db_size_in_use_before,
                db_size_after,
                db_size_in_use_after,
                took_ms,
            } => {
                done += 1;
                say(
                    PREFIX,
                    format!(
                        "Defragmented {who} in {:.2}s: {} -> {}, {} reclaimed",
                        *took_ms as f64 / 1000.0,
                        sizes(*db_size_before, *db_size_in_use_before),
                        sizes(*db_size_after, *db_size_in_use_after),
                        human_bytes(db_size_before - db_size_after)
                    ),
                )
            }
            Outcome::Skipped { reason } => say(PREFIX, format!("Skipped {who}: {reason}")),
            Outcome::WouldDefragment {
                db_size,
                db_size_in_use,
            } => say(
                "dryrun",
                format!(
                    "Would defragment {who}: {}",
                    sizes(*db_size, *db_size_in_use)
                ),
            ),
        }
    }
    if done > 0 {
        say(
            PREFIX,
            format!(
                "Reclaimed {} on {done} member(s)",
                human_bytes(report.reclaimed())
            ),
        );
    }
}

/// `phase etcd alarm list`
fn run_alarm_list(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let (client, _) = connect(ctx, cfg)?;
    let report = ctx.block_on(alarm::list(&client))?;
    match ctx.value::<String>(Output).as_deref() {
        Some("json") => println!("{}", serde_json::to_string_pretty(&report)?),
        Some("yaml") => print!("{}", serde_yaml::to_string(&report)?),
        _ => print_alarms(&report),
    }
    Ok(())
}

fn print_alarms(report: &AlarmReport) {
    if report.alarms.is_empty() {
        say(PREFIX, "No alarm is active");
        return;
    }
    for a in &report.alarms {
        let who = if a.member.is_empty() {
            format!("member {}", a.member_id)
        } else {
            phases::membership::member_label(a.member_id, &a.member)
        };
        say(
            PREFIX,
            format!("{} alarm raised by {who}: {}", a.alarm, a.advice),
        );
    }
}

/// `phase etcd alarm disarm`
fn run_alarm_disarm(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let json = json(ctx);
    let (client, _) = connect(ctx, cfg)?;
    let opts = DisarmOptions {
        compact_and_defrag: ctx.switch(CompactAndDefrag),
        corrupt_resolved: ctx.switch(CorruptResolved),
        force: ctx.switch(Force),
        rpc_timeout: defrag_timeout(ctx, cfg),
        health_timeout: DEFAULT_HEALTH_TIMEOUT,
        dry_run: ctx.dry_run(),
    };
    let report = ctx.block_on(alarm::disarm(&client, &opts, &mut |e| show(json, e)))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if let Some(defragged) = &report.defrag {
        print_defrag(defragged);
    }
    if report.disarmed.is_empty() {
        say(PREFIX, "No alarm is active; nothing to disarm");
    } else if opts.dry_run {
        for a in &report.disarmed {
            say(
                "dryrun",
                format!("Would disarm {} of member {}", a.alarm, a.member_id),
            );
        }
    } else {
        say(PREFIX, "The etcd cluster takes writes again");
    }
    Ok(())
}

/// `phase etcd move-leader`
fn run_move_leader(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let json = json(ctx);
    let to: String = ctx.required(To);
    // A name first: a member named like a hex number is found by its name.
    let (client, _) = connect(ctx, cfg)?;
    let timeout = ctx
        .value::<GoDuration>(Timeout)
        .map_or(cfg.timeouts.etcd_api_call.0, |t| t.0);
    let list = ctx.block_on(client.member_list())?;
    let selector = if list.members.iter().any(|m| m.name == to) {
        Selector::Name(to)
    } else {
        match to.parse::<MemberId>() {
            Ok(id) => Selector::Id(id),
            Err(_) => bail!(
                "--to {to:?}: no etcd member has that name, and it is not a member ID (hex, as etcdctl prints it); the members are {}",
                list.members
                    .iter()
                    .map(|m| m.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    };
    let moved = ctx.block_on(leader::move_leader(&client, &selector, timeout, &mut |e| {
        show(json, e)
    }))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&moved)?);
    } else if moved.already {
        say(
            PREFIX,
            format!(
                "{} leads already (term {}); nothing to do",
                phases::membership::member_label(moved.to, &moved.to_name),
                moved.term
            ),
        );
    } else {
        say(
            PREFIX,
            format!(
                "{} leads (term {})",
                phases::membership::member_label(moved.to, &moved.to_name),
                moved.term
            ),
        );
    }
    Ok(())
}
