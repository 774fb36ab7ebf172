//! Runs a child process to completion within a bound and returns its output.
//!
//! stdout and stderr are read on their own threads while the child runs: a child that
//! writes more than a pipe holds (64 KiB; the tool at trace level does) would otherwise block
//! on the full pipe while the caller waits for it to exit, and the test would hang until its
//! bound. Standard library only, so the root package's tests can include it with `#[path]`.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `Ok` with the output once `cmd` exits within `limit`; else the child is killed and
/// `Err` carries what it wrote until then.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Result<Output, Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let (status, in_time) = wait_until(&mut child, Instant::now() + limit);
    let output = Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    if in_time {
        Ok(output)
    } else {
        Err(output)
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error ends the capture; what was read so far is still worth showing.
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Waits for `child` until `deadline`, then kills it; tells whether it exited in time.
fn wait_until(child: &mut Child, deadline: Instant) -> (std::process::ExitStatus, bool) {
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return (status, true);
        }
        if Instant::now() >= deadline {
            // It may have exited in between; either way wait() reaps it.
            let _ = child.kill();
            return (child.wait().expect("wait"), false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
