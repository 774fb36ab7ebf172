//! A real etcd member run from a Pod's container command, the way the kubelet would.

use std::fs::{self, OpenOptions};
use std::io;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::kubelet::localize_command;
use super::ClientTls;

/// What a member reported when it answered the health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub version: String,
    pub member_id: u64,
    pub leader: u64,
    pub is_learner: bool,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    pub db_size: i64,
}

/// A running etcd member. Dropping it kills the process (SIGKILL) and reaps it.
///
/// The process also dies with the test process: it is forked from a helper thread that
/// lives as long as the test process, with `PR_SET_PDEATHSIG=SIGKILL`. (The death signal
/// follows the forking *thread*, so forking from a test thread or a short-lived tokio
/// blocking thread would kill the member as soon as that thread ends.)
#[derive(Debug)]
pub struct EtcdProcess {
    child: Child,
    exit: Option<ExitStatus>,
    log_path: PathBuf,
    command: Vec<String>,
}

impl EtcdProcess {
    /// Starts `command` (a Pod's container command, `["etcd", "--flag=value", ...]`) with
    /// `binary` in place of `etcd`, after [`localize_command`] with `own_address`.
    /// stdout and stderr go to `log_path`, appended, so a restarted member keeps one log.
    pub fn start(
        binary: &Path,
        command: &[String],
        own_address: IpAddr,
        log_path: &Path,
    ) -> io::Result<Self> {
        let command = localize_command(command, own_address);
        let (program, args) = command
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        if program != "etcd" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the container command starts with {program:?}, not \"etcd\""),
            ));
        }
        if let Some(dir) = log_path.parent() {
            fs::create_dir_all(dir)?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)?;
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // etcd reads ETCD_* variables as flags; the test runner's environment must not
            // leak settings into members.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        let child = spawn_bound_to_this_process(cmd)?;
        Ok(Self {
            child,
            exit: None,
            log_path: log_path.to_path_buf(),
            command,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The command actually run (after [`localize_command`]).
    pub fn command(&self) -> &[String] {
        &self.command
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status, if the process has exited (reaping it).
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    pub fn is_running(&mut self) -> bool {
        self.try_exit_status().is_none()
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap; a no-op once the process is gone.
    pub fn kill(&mut self) {
        if self.try_exit_status().is_some() {
            return;
        }
        // A stopped process still dies on SIGKILL.
        let _ = self.child.kill();
        self.exit = self.child.wait().ok();
    }

    /// SIGSTOP: the member stops answering but keeps its sockets, like a hung node.
    ///
    /// Returns once the kernel reports the process stopped: SIGSTOP is delivered
    /// asynchronously, and a check made right after sending it may still be answered.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        let stat = format!("/proc/{}/stat", self.pid());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            // The state is the first field after the parenthesised command name.
            let state = std::fs::read_to_string(&stat)
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().chars().next())
                })
                .flatten();
            if state == Some('T') {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "etcd (pid {}) did not stop within 5s of SIGSTOP",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
    }

    // kill(2) has no safe wrapper in std for signals other than SIGKILL.
    #[allow(unsafe_code)]
    fn signal(&mut self, signal: libc::c_int) {
        assert!(
            self.is_running(),
            "etcd (pid {}) has already exited",
            self.pid()
        );
        let pid = libc::pid_t::try_from(self.pid()).expect("pids fit in pid_t");
        // SAFETY: kill(2) on our own unreaped child; the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            io::Error::last_os_error()
        );
    }

    /// Polls [`check_health`] on `client_url` until it succeeds, the process exits, or
    /// `timeout` passes; the error says which, with the end of the log.
    ///
    /// Blocking; safe to call from synchronous tests and from inside a tokio runtime
    /// (the polling runs on its own thread and runtime).
    pub fn wait_healthy(
        &mut self,
        client_url: &str,
        tls: &ClientTls,
        timeout: Duration,
    ) -> Result<Health, String> {
        let started = Instant::now();
        let options = tls
            .connect_options()
            .map_err(|e| format!("cannot read the client TLS files {tls:?}: {e}"))?;
        let child = &mut self.child;
        let outcome = std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime");
                    runtime.block_on(async {
                        let mut last_error = String::from("no attempt finished");
                        loop {
                            if let Ok(Some(status)) = child.try_wait() {
                                return Err((Some(status), last_error));
                            }
                            let remaining = timeout.saturating_sub(started.elapsed());
                            if remaining.is_zero() {
                                return Err((None, last_error));
                            }
                            let attempt = remaining.min(Duration::from_secs(3));
                            match tokio::time::timeout(
                                attempt,
                                check_health_with(client_url, options.clone()),
                            )
                            .await
                            {
                                Ok(Ok(health)) => return Ok(health),
                                Ok(Err(e)) => last_error = e,
                                Err(_) => last_error = format!("no answer within {attempt:?}"),
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    })
                })
                .join()
                .expect("the health poller does not panic")
        });
        match outcome {
            Ok(health) => Ok(health),
            Err((Some(status), last_error)) => {
                self.exit = Some(status);
                Err(format!(
                    "etcd (pid {}) exited with {status} before {client_url} was healthy (last check: {last_error}); log:\n{}",
                    self.pid(),
                    self.log_tail(40)
                ))
            }
            Err((None, last_error)) => Err(format!(
                "{client_url} was not healthy after {timeout:?}: {last_error}; log:\n{}",
                self.log_tail(40)
            )),
        }
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One health check of the member at `client_url` over TLS: the Status RPC must answer
/// without errors and with a leader, and a voter must also serve a linearizable read
/// (which needs quorum), like `etcdctl endpoint health`. A learner only answers Status,
/// so for a learner the Status answer is the check.
pub async fn check_health(client_url: &str, tls: &ClientTls) -> Result<Health, String> {
    let options = tls
        .connect_options()
        .map_err(|e| format!("cannot read the client TLS files {tls:?}: {e}"))?;
    check_health_with(client_url, options).await
}

async fn check_health_with(
    client_url: &str,
    options: etcd_client::ConnectOptions,
) -> Result<Health, String> {
    let mut client = etcd_client::Client::connect([client_url], Some(options))
        .await
        .map_err(|e| format!("connect {client_url}: {e}"))?;
    let status = client
        .status()
        .await
        .map_err(|e| format!("status {client_url}: {e}"))?;
    if !status.errors().is_empty() {
        return Err(format!(
            "{client_url} reports errors: {:?}",
            status.errors()
        ));
    }
    if status.leader() == 0 {
        return Err(format!("{client_url} has no leader"));
    }
    if !status.is_learner() {
        client
            .get("health", None)
            .await
            .map_err(|e| format!("linearizable read on {client_url}: {e}"))?;
    }
    Ok(Health {
        version: status.version().to_string(),
        member_id: status.header().map_or(0, |h| h.member_id()),
        leader: status.leader(),
        is_learner: status.is_learner(),
        raft_index: status.raft_index(),
        raft_applied_index: status.raft_applied_index(),
        db_size: status.db_size(),
    })
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` so that it receives SIGKILL when the test process dies.
///
/// PR_SET_PDEATHSIG fires when the thread that forked the child exits, so all members are
/// forked by one helper thread that never exits: the signal then comes only with the end
/// of the whole process (a panic that aborts, a killed test binary, Ctrl-C).
// A pre_exec hook is unsafe by nature (it runs between fork and exec).
#[allow(unsafe_code)]
fn spawn_bound_to_this_process(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("etcd-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the etcd spawner thread");
        Mutex::new(tx)
    });
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The test process may have died between fork and prctl: then nobody would
            // ever kill this member.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("the etcd spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the etcd spawner thread did not answer"))?
}
