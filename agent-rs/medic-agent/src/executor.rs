//! Running one verified script: spawning it, streaming its output, and ending it on time.
//!
//! # Design
//!
//! [`spawn`] starts the program with an argument vector (no shell), a scrubbed environment
//! (`PATH=/usr/sbin:/usr/bin:/sbin:/bin`, `LANG=C`, plus what the request sets), `/` as its
//! working directory, no standard input, and in a **new process group**, so that everything it
//! starts can be killed together. [`supervise`] then waits for whichever comes first: the
//! process exits, its timeout passes, or a [`Stop`] arrives (a `Cancel`, or the agent shutting
//! down). In the last two cases the whole group gets `SIGTERM`, then `SIGKILL` after the grace
//! period (and `SIGKILL` again once the leader is gone, for children that ignored `SIGTERM`).
//!
//! Output is read by its own task, one read of at most 16 KiB per chunk, both pipes at once,
//! and sent through the [`Outbox`]. It stops when both pipes close; if a child that outlived the
//! script keeps them open, the reader is given a moment after the script ended and then
//! abandoned, so such a child cannot hold the execution open.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use medic_allowlist::BASE_PATH;
use rustix::io::FdFlags;
use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::outbox::Outbox;
use crate::output::{Chunker, MAX_CHUNK};
use crate::proto::{ExecutionState, ExecutionUpdate, OutputStream};

/// How long output may still be read after the script ended.
const DRAIN: Duration = Duration::from_secs(2);

/// What to start.
#[derive(Debug)]
pub struct Launch<'a> {
    /// What to execute: the verified descriptor's path (`/proc/self/fd/N`).
    pub program: &'a Path,
    /// The script's own path, shown as its `argv[0]` (in `ps`); never executed.
    pub arg0: &'a Path,
    /// The verified script's descriptor, which a `#!` interpreter must be able to open.
    pub script_fd: Option<BorrowedFd<'a>>,
    /// The arguments after the script.
    pub args: &'a [String],
    /// Variables added to the scrubbed environment.
    pub env: &'a BTreeMap<String, String>,
}

/// Start the program in a new process group.
///
/// The script's descriptor must reach the child, so its close-on-exec flag is cleared here and
/// stays cleared until the caller closes it. That is safe only because every process the agent
/// starts is started on one thread, with no `.await` between this call and the closing of the
/// descriptor: no other child can be started in between and inherit it.
pub fn spawn(launch: &Launch) -> io::Result<Child> {
    if let Some(fd) = launch.script_fd {
        rustix::io::fcntl_setfd(fd, FdFlags::empty())?;
    }
    Command::new(launch.program)
        .arg0(launch.arg0)
        .args(launch.args)
        .env_clear()
        .env("PATH", BASE_PATH)
        .env("LANG", "C")
        .envs(launch.env)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
}

/// Why a running execution must end early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The server cancelled it, for this reason.
    Cancel(String),
    /// The agent is shutting down.
    Shutdown,
}

/// How a script's process ended.
#[derive(Debug)]
pub enum Ending {
    /// It exited (or was killed from outside) by itself.
    Exited(io::Result<ExitStatus>),
    /// Its timeout passed and its group was killed.
    TimedOut(io::Result<ExitStatus>),
    /// A `Cancel` arrived and its group was killed.
    Cancelled(io::Result<ExitStatus>, String),
    /// The agent stopped and killed its group.
    Stopped(io::Result<ExitStatus>),
}

/// Everything the final update reports.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub ending: Ending,
    /// How many output chunks were made.
    pub chunks: u64,
    /// Whether the output cap dropped some.
    pub truncated: bool,
    /// From start to exit.
    pub duration: Duration,
}

/// The limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long it may run.
    pub timeout: Duration,
    /// Between `SIGTERM` and `SIGKILL`.
    pub kill_grace: Duration,
    /// Bytes of output sent.
    pub output_cap: u64,
}

/// Wait for the script to end, streaming its output, and kill its group on timeout or `stop`.
pub async fn supervise(
    mut child: Child,
    execution_id: &str,
    limits: Limits,
    mut stop: oneshot::Receiver<Stop>,
    outbox: Outbox,
) -> Outcome {
    let started = Instant::now();
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(Pid::from_raw);
    let chunker = Arc::new(Mutex::new(Chunker::new(execution_id, limits.output_cap)));
    let mut reader = tokio::spawn(pump(
        child.stdout.take(),
        child.stderr.take(),
        Arc::clone(&chunker),
        outbox,
    ));
    let deadline = tokio::time::sleep(limits.timeout);
    tokio::pin!(deadline);
    let mut stop_open = true;
    let ending = loop {
        tokio::select! {
            status = child.wait() => break Ending::Exited(status),
            () = &mut deadline => {
                break Ending::TimedOut(kill_group(&mut child, group, limits.kill_grace).await);
            }
            stop = &mut stop, if stop_open => match stop {
                Ok(Stop::Cancel(reason)) => {
                    let status = kill_group(&mut child, group, limits.kill_grace).await;
                    break Ending::Cancelled(status, reason);
                }
                Ok(Stop::Shutdown) => {
                    break Ending::Stopped(kill_group(&mut child, group, limits.kill_grace).await);
                }
                // Nobody can stop it any more; let it run to its end or its timeout.
                Err(_) => stop_open = false,
            },
        }
    };
    let duration = started.elapsed();
    if tokio::time::timeout(DRAIN, &mut reader).await.is_err() {
        reader.abort();
    }
    let chunker = chunker.lock().unwrap_or_else(PoisonError::into_inner);
    Outcome {
        ending,
        chunks: chunker.chunks(),
        truncated: chunker.truncated(),
        duration,
    }
}

/// `SIGTERM` to the group, `SIGKILL` after the grace period if the leader still runs, and
/// `SIGKILL` once more for members that ignored `SIGTERM`.
async fn kill_group(
    child: &mut Child,
    group: Option<Pid>,
    grace: Duration,
) -> io::Result<ExitStatus> {
    signal_group(group, Signal::TERM);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal_group(group, Signal::KILL);
            child.wait().await
        }
    };
    signal_group(group, Signal::KILL);
    status
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group {
        // ESRCH (the group is gone already) is the usual, harmless failure.
        let _ = kill_process_group(group, signal);
    }
}

/// Read both pipes until they close, and send what they say.
async fn pump(
    mut stdout: Option<tokio::process::ChildStdout>,
    mut stderr: Option<tokio::process::ChildStderr>,
    chunker: Arc<Mutex<Chunker>>,
    outbox: Outbox,
) {
    let mut out_buffer = vec![0; MAX_CHUNK];
    let mut err_buffer = vec![0; MAX_CHUNK];
    while stdout.is_some() || stderr.is_some() {
        let (stream, read) = tokio::select! {
            read = read_some(&mut stdout, &mut out_buffer) => (OutputStream::Stdout, read),
            read = read_some(&mut stderr, &mut err_buffer) => (OutputStream::Stderr, read),
        };
        let len = match read {
            Ok(0) | Err(_) => {
                match stream {
                    OutputStream::Stderr => stderr = None,
                    _ => stdout = None,
                }
                continue;
            }
            Ok(len) => len,
        };
        let data = match stream {
            OutputStream::Stderr => &err_buffer[..len],
            _ => &out_buffer[..len],
        };
        let chunk = chunker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .chunk(stream, data);
        if let Some(chunk) = chunk {
            outbox.send_chunk(chunk).await;
        }
    }
}

/// Read from `reader`, or wait forever once it is closed (so `select!` ignores it).
async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut Option<R>,
    buffer: &mut [u8],
) -> io::Result<usize> {
    match reader {
        Some(reader) => reader.read(buffer).await,
        None => std::future::pending().await,
    }
}

/// The final `ExecutionUpdate` for an outcome.
pub fn final_update(execution_id: &str, outcome: Outcome, timeout: Duration) -> ExecutionUpdate {
    let mut update = ExecutionUpdate {
        execution_id: execution_id.to_owned(),
        output_chunks: outcome.chunks,
        output_truncated: outcome.truncated,
        duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
        ..ExecutionUpdate::default()
    };
    let (state, status, reason, detail) = match outcome.ending {
        Ending::Exited(status) => {
            let state = match &status {
                Ok(status) if status.success() => ExecutionState::Succeeded,
                _ => ExecutionState::Failed,
            };
            let detail = match &status {
                Ok(status) => match (status.code(), status.signal()) {
                    (Some(0), _) => String::new(),
                    (Some(code), _) => format!("exited with status {code}"),
                    (None, Some(signal)) => format!("killed by signal {signal}"),
                    (None, None) => "ended".into(),
                },
                Err(_) => String::new(),
            };
            (state, status, "", detail)
        }
        Ending::TimedOut(status) => (
            ExecutionState::TimedOut,
            status,
            "",
            format!(
                "ran past its timeout of {} s; its process group was killed",
                timeout.as_secs()
            ),
        ),
        Ending::Cancelled(status, reason) => (
            ExecutionState::Cancelled,
            status,
            "",
            if reason.is_empty() {
                "cancelled by the server; its process group was killed".into()
            } else {
                format!("cancelled by the server ({reason}); its process group was killed")
            },
        ),
        Ending::Stopped(status) => (
            ExecutionState::Failed,
            status,
            "agent_stopped",
            "the agent stopped while the script ran; its process group was killed".into(),
        ),
    };
    update.state = state.into();
    update.reason = reason.into();
    match status {
        Ok(status) => {
            update.exit_code = status.code();
            update.signal = status.signal();
            update.detail = detail;
        }
        Err(error) => {
            update.state = ExecutionState::Failed.into();
            update.detail = format!("lost track of the process: {error}");
        }
    }
    update
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt as _;

    use super::*;
    use crate::outbox::Link;
    use crate::proto::{AgentMessage, OutputChunk, agent_message::Body};

    const LIMITS: Limits = Limits {
        timeout: Duration::from_secs(60),
        kill_grace: Duration::from_secs(5),
        output_cap: 1024 * 1024,
    };

    struct Run {
        update: ExecutionUpdate,
        chunks: Vec<OutputChunk>,
    }

    impl Run {
        fn stdout(&self) -> String {
            let bytes: Vec<u8> = self
                .chunks
                .iter()
                .filter(|chunk| chunk.stream() == OutputStream::Stdout)
                .flat_map(|chunk| chunk.data.clone())
                .collect();
            String::from_utf8(bytes).unwrap()
        }
    }

    /// Run a shell snippet the way an execution runs, and collect what it sent.
    async fn run(
        script: &str,
        env: &[(&str, &str)],
        limits: Limits,
        stop: Option<(Duration, Stop)>,
    ) -> Run {
        let outbox = Outbox::default();
        let (link, stream) = Link::new(1);
        outbox.attach(&link);
        let args = vec!["-c".to_owned(), script.to_owned()];
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let child = spawn(&Launch {
            program: Path::new("/bin/sh"),
            arg0: Path::new("/bin/sh"),
            script_fd: None,
            args: &args,
            env: &env,
        })
        .unwrap();
        let (stop_tx, stop_rx) = oneshot::channel();
        if let Some((after, stop)) = stop {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = stop_tx.send(stop);
            });
        } else {
            std::mem::forget(stop_tx);
        }
        let outcome = supervise(child, "e1", limits, stop_rx, outbox.clone()).await;
        let update = final_update("e1", outcome, limits.timeout);
        outbox.detach(1);
        drop(link);
        let messages: Vec<AgentMessage> = stream.collect().await;
        let chunks = messages
            .into_iter()
            .filter_map(|message| match message.body {
                Some(Body::OutputChunk(chunk)) => Some(chunk),
                _ => None,
            })
            .collect();
        Run { update, chunks }
    }

    /// Whether `pid` is gone (or a zombie nobody reaped: dead all the same).
    fn is_dead(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        }
    }

    async fn wait_dead(pid: u32) -> bool {
        for _ in 0..200 {
            if is_dead(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_script_that_exits_zero_succeeds_with_its_output_in_order() {
        let run = run("echo one; echo two >&2; echo three", &[], LIMITS, None).await;
        assert_eq!(run.update.state(), ExecutionState::Succeeded);
        assert_eq!(run.update.exit_code, Some(0));
        assert_eq!(run.update.output_chunks, run.chunks.len() as u64);
        let sequences: Vec<u64> = run.chunks.iter().map(|c| c.sequence).collect();
        assert_eq!(sequences, (0..run.chunks.len() as u64).collect::<Vec<_>>());
        assert_eq!(run.stdout(), "one\nthree\n");
    }

    #[tokio::test]
    async fn a_non_zero_exit_fails_with_its_status() {
        let run = run("exit 3", &[], LIMITS, None).await;
        assert_eq!(run.update.state(), ExecutionState::Failed);
        assert_eq!(run.update.exit_code, Some(3));
        assert_eq!(run.update.reason, "");
    }

    #[tokio::test]
    async fn the_environment_is_scrubbed_to_a_minimal_base_plus_the_request() {
        let run = run("env", &[("LOG_LEVEL", "debug")], LIMITS, None).await;
        let stdout = run.stdout();
        let mut lines: Vec<&str> = stdout.lines().collect();
        lines.sort_unstable();
        // The shell may add its own bookkeeping (PWD, SHLVL, _); nothing of the agent's leaks.
        lines.retain(|line| {
            !["PWD=", "OLDPWD=", "SHLVL=", "_="]
                .iter()
                .any(|p| line.starts_with(p))
        });
        assert_eq!(
            lines,
            [
                "LANG=C",
                "LOG_LEVEL=debug",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
            ]
        );
    }

    #[tokio::test]
    async fn output_over_the_cap_is_cut_and_the_script_still_finishes() {
        let limits = Limits {
            output_cap: 100_000,
            ..LIMITS
        };
        // 1 MB through a pipe: the script would block if nobody drained it past the cap.
        let run = run(
            "head -c 1000000 /dev/zero; echo done >&2",
            &[],
            limits,
            None,
        )
        .await;
        assert_eq!(run.update.state(), ExecutionState::Succeeded);
        assert!(run.update.output_truncated);
        let total: usize = run.chunks.iter().map(|c| c.data.len()).sum();
        assert_eq!(total, 100_000);
        assert!(run.chunks.iter().all(|c| c.data.len() <= MAX_CHUNK));
        assert!(run.chunks.last().unwrap().truncated);
        assert_eq!(run.chunks.iter().filter(|c| c.truncated).count(), 1);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let limits = Limits {
            timeout: Duration::from_secs(1),
            ..LIMITS
        };
        let run = run("sleep 300 & echo $!; wait", &[], limits, None).await;
        assert_eq!(run.update.state(), ExecutionState::TimedOut);
        assert_eq!(run.update.signal, Some(15));
        let child: u32 = run.stdout().trim().parse().unwrap();
        assert!(
            wait_dead(child).await,
            "the script's child {child} survived"
        );
    }

    #[tokio::test]
    async fn children_that_ignore_sigterm_get_sigkill_after_the_grace() {
        let limits = Limits {
            timeout: Duration::from_secs(1),
            kill_grace: Duration::from_secs(1),
            ..LIMITS
        };
        let run = run(
            "trap '' TERM; sh -c 'trap \"\" TERM; sleep 300' & echo $!; wait",
            &[],
            limits,
            None,
        )
        .await;
        assert_eq!(run.update.state(), ExecutionState::TimedOut);
        assert_eq!(run.update.signal, Some(9));
        let child: u32 = run.stdout().trim().parse().unwrap();
        assert!(
            wait_dead(child).await,
            "the script's child {child} survived"
        );
    }

    #[tokio::test]
    async fn a_cancel_kills_the_group_and_ends_cancelled() {
        let stop = Stop::Cancel("operator asked".into());
        let run = run(
            "echo started; sleep 300",
            &[],
            LIMITS,
            Some((Duration::from_millis(300), stop)),
        )
        .await;
        assert_eq!(run.update.state(), ExecutionState::Cancelled);
        assert!(run.update.detail.contains("operator asked"));
        assert!(run.update.signal.is_some());
    }

    #[tokio::test]
    async fn shutting_down_fails_the_execution_agent_stopped() {
        let run = run(
            "sleep 300",
            &[],
            LIMITS,
            Some((Duration::from_millis(100), Stop::Shutdown)),
        )
        .await;
        assert_eq!(run.update.state(), ExecutionState::Failed);
        assert_eq!(run.update.reason, "agent_stopped");
    }

    #[tokio::test]
    async fn a_child_that_keeps_the_pipes_open_does_not_hold_the_execution() {
        let started = Instant::now();
        let run = run("sleep 30 & echo $!", &[], LIMITS, None).await;
        assert_eq!(run.update.state(), ExecutionState::Succeeded);
        assert!(started.elapsed() < Duration::from_secs(20));
        let child: i32 = run.stdout().trim().parse().unwrap();
        // Not the agent's to kill (a script may start a daemon), but the test's.
        let _ = rustix::process::kill_process(Pid::from_raw(child).unwrap(), Signal::KILL);
    }
}
