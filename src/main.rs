//! `kubeadm-etcd`: the thin binary. Parses the command line into a phase or workflow,
//! runs it, and maps the outcome to kubeadm's exit codes: 0 success, 1 a phase failed,
//! 2 a usage error.

mod cli;
mod commands;
mod context;
mod flags;
mod workflow;

use std::process::ExitCode;

use context::Context;
use flags::FlagValues;

fn main() -> ExitCode {
    let matches = match cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(*matches.get_one::<u8>("v").unwrap_or(&0));

    let (name, sub) = matches.subcommand().expect("a subcommand is required");
    let result = if name == "phase" {
        let (group_name, group_matches) = sub.subcommand().expect("a phase group is required");
        let (leaf_name, leaf_matches) = group_matches.subcommand().expect("a phase is required");
        let group = workflow::find(group_name).expect("clap only accepts declared groups");
        let leaf = group
            .children
            .iter()
            .find(|c| c.name == leaf_name)
            .expect("declared phase");
        let ctx = Context::new(FlagValues::from_matches(leaf_matches));
        workflow::run_phase(&ctx, group, leaf)
    } else {
        let wf = workflow::WORKFLOWS
            .iter()
            .find(|w| w.name == name)
            .expect("declared workflow");
        let ctx = Context::new(FlagValues::from_matches(sub));
        let skip = ctx.flags.skip_phases.clone();
        // A wrong phase name is a usage error, reported before anything runs.
        if let Err(err) = workflow::compute_run_flags(&workflow::workflow_nodes(wf), &[], &skip) {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
        workflow::run_workflow(&ctx, wf, &skip)
    };

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", err);
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}

fn init_logging(verbosity: u8) {
    let level = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("KUBEADM_ETCD_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!(
                "{level},h2=warn,tower=warn,hyper=warn,rustls=warn"
            ))
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
}
