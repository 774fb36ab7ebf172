//! `phase etcd snapshot save | status | restore`: backups of the etcd cluster and the
//! disaster recovery from one (`phases::snapshot`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use phases::membership::status::human_bytes;
use phases::snapshot::{self, RestoreOptions, SaveEvent, SaveOptions, ToolLookup};

use crate::context::{hidden_bar, say, Context};
use crate::flags::Flag::{self, *};
use crate::phase::Phase;

use super::membership::{connect, tls};

const PREFIX: &str = "snapshot";

pub fn phase() -> Phase {
    Phase::group(
        "snapshot",
        "Save, check and restore etcd snapshots",
        vec![save(), status(), restore()],
    )
}

pub fn save() -> Phase {
    const FLAGS: &[Flag] = &[
        Config,
        CertDir,
        Endpoints,
        Kubeconfig,
        EtcdCaFile,
        EtcdCertFile,
        EtcdKeyFile,
        SnapshotDir,
        Keep,
        Output,
        DryRun,
    ];
    Phase::leaf("save", "Save a snapshot of the etcd cluster from a healthy voting member", FLAGS, run_save)
        .long("Stream a snapshot through etcd's Maintenance API from a healthy voting member (this node's first, else a follower, else the leader; never a learner) to a temporary file in --dir, check it against the sha256 etcd appends, fsync and rename it into place (0600, the directory 0700). Prints the revision, size and hash; -o json for a machine. --keep N then removes all but the newest N of this tool's snapshots in --dir.")
        .example("  kubeadm-etcd phase etcd snapshot save --endpoints https://10.0.0.1:2379 --keep 5\n  kubeadm-etcd phase etcd snapshot save --dir /var/backups/etcd -o json")
}

pub fn status() -> Phase {
    Phase::leaf("status", "Check a snapshot file and show its revision, keys and size", &[SnapshotFile, Etcdutl, Output], run_status)
        .long("Check the sha256 etcd appended to the snapshot (a truncated or altered file is refused with both digests named), then read its revision and key count with etcdutl (etcd 3.4: etcdctl). etcd does not need to run.")
        .example("  kubeadm-etcd phase etcd snapshot status /etc/kubernetes/tmp/etcd-snapshots/etcd-snapshot-20260101T000000Z.db -o json")
}

pub fn restore() -> Phase {
    const FLAGS: &[Flag] = &[
        SnapshotFile,
        Config,
        KubeadmVersion,
        CertDir,
        NodeName,
        AdvertiseAddress,
        Etcdutl,
        ManifestDir,
        BackupDir,
        DryRun,
    ];
    Phase::leaf("restore", "Restore a snapshot into a new one-member etcd cluster on this node", FLAGS, run_restore)
        .long("Disaster recovery: check the snapshot, then restore it with the etcdutl of the etcd release the configuration runs (etcd 3.6 removed etcdctl snapshot restore) into the configuration's data directory, which must be absent or empty (a restore never writes over data), as the first member of a new cluster (member name, peer URL and --initial-cluster from the configuration), and write that member's static Pod manifest. The other nodes then join it with join-learner and promote.")
        .example("  kubeadm-etcd phase etcd snapshot restore snap.db --config kubeadm.yaml --dry-run\n  kubeadm-etcd phase etcd snapshot restore snap.db --config kubeadm.yaml --etcdutl /usr/local/bin/etcdutl")
}

fn json(ctx: &Context) -> bool {
    ctx.value::<String>(Output).as_deref() == Some("json")
}

fn lookup(ctx: &Context) -> ToolLookup {
    match ctx.value::<PathBuf>(Etcdutl) {
        Some(path) => ToolLookup::explicit(path),
        None => ToolLookup::default(),
    }
}

/// `phase etcd snapshot save`
fn run_save(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let json = json(ctx);
    let dir: PathBuf = ctx.required(SnapshotDir);
    if ctx.dry_run() {
        // The upgrade workflow's dry run: a snapshot changes no state, but writes a file.
        say(
            PREFIX,
            format!("[dry-run] Would save a snapshot into {}", dir.display()),
        );
        return Ok(());
    }
    let (client, _) = connect(ctx, cfg)?;
    let tls = tls(ctx, cfg)?;
    let opts = SaveOptions {
        keep: ctx.value(Keep),
        ..SaveOptions::new(dir)
    };
    // With -o json, standard output is the document alone.
    let mut printer = SavePrinter::new(json);
    let saved = ctx.block_on(snapshot::save(&client, &tls, &opts, &mut |e| {
        printer.event(e)
    }));
    printer.finish();
    let saved = saved?;
    ctx.remember_snapshot(saved.clone());
    if json {
        println!("{}", serde_json::to_string_pretty(&saved)?);
    } else {
        say(
            PREFIX,
            format!(
                "Saved {} (revision {}, {}, sha256 {}) in {:.2}s",
                saved.path.display(),
                saved.revision,
                human_bytes(saved.file_size as i64),
                saved.sha256,
                saved.elapsed.as_secs_f64()
            ),
        );
    }
    Ok(())
}

/// `phase etcd snapshot status`
fn run_status(ctx: &Context) -> anyhow::Result<()> {
    let path: PathBuf = ctx.required(SnapshotFile);
    let status = snapshot::status(&path, &lookup(ctx))?;
    if json(ctx) {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("File:      {}", status.path.display());
        println!("Revision:  {}", status.revision);
        println!("Keys:      {}", status.total_keys);
        println!(
            "Size:      {} (database {})",
            human_bytes(status.verified.file_size as i64),
            human_bytes(status.verified.db_size as i64)
        );
        println!(
            "sha256:    {} (matches the digest etcd appended)",
            status.verified.sha256
        );
        println!(
            "Hash:      {:08x} (etcd's content hash)",
            status.content_hash
        );
        if !status.storage_version.is_empty() {
            println!("Storage:   {}", status.storage_version);
        }
        println!("Read with: {}", status.read_with);
    }
    Ok(())
}

/// `phase etcd snapshot restore`
fn run_restore(ctx: &Context) -> anyhow::Result<()> {
    let cfg = ctx.config()?;
    let dry_run = ctx.dry_run();
    let opts = RestoreOptions {
        snapshot: ctx.required(SnapshotFile),
        cert_dir: ctx.cert_dir()?,
        manifest_dir: ctx.required(ManifestDir),
        backup_dir: ctx.required(BackupDir),
        tools: lookup(ctx),
        dry_run,
    };
    let r = snapshot::restore(cfg, &opts)?;
    let would = if dry_run {
        "[dry-run] Would restore"
    } else {
        "Restored"
    };
    say(
        PREFIX,
        format!(
            "{would} {} (sha256 {}) into {} with {} {} for etcd {}",
            opts.snapshot.display(),
            r.snapshot.sha256,
            r.data_dir.display(),
            r.tool.path.display(),
            r.tool.version,
            r.etcd_version
        ),
    );
    say(
        PREFIX,
        format!(
            "Member {} at {}, --initial-cluster={}",
            r.member_name, r.peer_url, r.initial_cluster
        ),
    );
    let wrote = if dry_run {
        "[dry-run] Would write"
    } else {
        "Wrote"
    };
    say(
        PREFIX,
        format!(
            "{wrote} the static Pod manifest {}",
            r.manifest_path.display()
        ),
    );
    if !dry_run {
        say(PREFIX, "The other control-plane nodes join this member with `kubeadm-etcd join` (join-learner, then promote)");
    }
    Ok(())
}

/// Shows a save's progress: an indicatif bar on a terminal, a line per 10% (or per 5 s)
/// otherwise. Everything goes to standard error with -o json.
struct SavePrinter {
    stderr: bool,
    terminal: bool,
    bar: Option<indicatif::ProgressBar>,
    last_line: Option<(u64, Instant)>,
}

impl SavePrinter {
    fn new(stderr: bool) -> Self {
        let terminal = if stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        Self {
            stderr,
            terminal,
            bar: None,
            last_line: None,
        }
    }

    fn line(&self, message: String) {
        match &self.bar {
            Some(bar) => bar.println(format!("[{PREFIX}] {message}")),
            None if self.stderr => eprintln!("[{PREFIX}] {message}"),
            None => say(PREFIX, message),
        }
    }

    fn event(&mut self, event: SaveEvent) {
        match event {
            SaveEvent::Source {
                id,
                name,
                endpoint,
                version,
            } => self.line(format!(
                "Taking the snapshot from {id} ({name}) at {endpoint}, etcd {version}"
            )),
            SaveEvent::Progress {
                bytes,
                total,
                elapsed,
            } => self.progress(bytes, total, elapsed),
            SaveEvent::Removed { path } => {
                self.finish();
                self.line(format!(
                    "Removed the older snapshot {} (--keep)",
                    path.display()
                ))
            }
        }
    }

    fn progress(&mut self, bytes: u64, total: u64, elapsed: Duration) {
        if self.terminal {
            let bar = self.bar.get_or_insert_with(|| {
                let bar = hidden_bar(
                    total.max(bytes),
                    "[snapshot] [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
                );
                bar.set_draw_target(if self.stderr {
                    indicatif::ProgressDrawTarget::stderr()
                } else {
                    indicatif::ProgressDrawTarget::stdout()
                });
                bar
            });
            bar.set_length(total.max(bytes));
            bar.set_position(bytes);
            return;
        }
        let tenth = (total / 10).max(1);
        let due = self.last_line.is_none_or(|(b, t)| {
            bytes.saturating_sub(b) >= tenth
                || t.elapsed() >= Duration::from_secs(5)
                || bytes >= total && b < total
        });
        if due {
            self.last_line = Some((bytes, Instant::now()));
            let rate = snapshot::save::rate(bytes, elapsed);
            self.line(format!(
                "Received {} of {} ({}/s)",
                human_bytes(bytes as i64),
                human_bytes(total as i64),
                human_bytes(rate as i64)
            ));
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
