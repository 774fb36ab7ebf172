//! `kubeadm-etcd`: the thin binary. Parses the command line into a phase or workflow,
//! runs it, and maps the outcome to kubeadm's exit codes: 0 success, 1 a phase failed,
//! 2 a usage error.

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod completion;
mod context;
mod flags;
mod man;
mod phase;
mod version;
mod workflow;

use std::process::ExitCode;

use cli::Invocation;
use context::Session;
use flags::Flag;
use workflow::Tree;

fn main() -> ExitCode {
    let tree = Tree::new();
    let matches = match cli::command(&tree).try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(cli::verbosity(&matches));

    let result = match cli::invocation(&tree, matches) {
        Invocation::Completion(shell) => {
            use std::io::Write as _;
            std::io::stdout()
                .write_all(&completion::script(shell, &cli::user_command(&tree)))
                .map_err(anyhow::Error::from)
        }
        Invocation::Version(format) => {
            print!("{}", version::render(&format));
            Ok(())
        }
        Invocation::Man(dir) => man::write_all(&cli::command(&tree), &dir),
        Invocation::Phase { path, values } => {
            workflow::run_phase_command(&Session::new(values), &tree, &path)
        }
        Invocation::Workflow { workflow, values } => {
            let skip = values.many(Flag::SkipPhases);
            // A wrong phase name is a usage error, reported before anything runs.
            let nodes = tree.workflow_nodes(workflow);
            if let Err(err) = workflow::compute_run_flags(&nodes, &[], &skip) {
                eprintln!("error: {err}");
                return ExitCode::from(2);
            }
            workflow::run_workflow(&Session::new(values), &tree, workflow, &skip)
        }
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
