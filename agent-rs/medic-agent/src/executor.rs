//! Running one verified script: spawning it, streaming its output, and ending it on time.
//!
//! # Design
//!
//! [`spawn`] starts the program with an argument vector (no shell), a scrubbed environment
//! (`PATH=/usr/sbin:/usr/bin:/sbin:/bin`, `LANG=C`, plus what the request sets), `/` as its
//! working directory, no standard input, in a new process group, with no descriptor above 2 but
//! the script's own ([`crate::sys::ChildSetup`]), and inside the agent's containment
//! ([`crate::containment`]): its own cgroup, or under its own reaper. [`supervise`] then waits
//! for whichever comes first: the script exits, its timeout passes, or a [`Stop`] arrives (a
//! `Cancel`, or the agent shutting down). In the last two cases the containment ends everything
//! the script started (`SIGTERM`, the kill grace, `SIGKILL`); when the script exits by itself,
//! what it left running is ended the same way. The final update says what was done.
//!
//! Output is read by its own task, one read of at most 16 KiB per chunk, both pipes at once,
//! and sent through the [`Outbox`]. It stops when both pipes close; if a process that outlived
//! the script keeps them open (possible only where the containment cannot reach it: a process
//! that left its process group), the reader is given a moment after the script ended and then
//! abandoned, so such a process cannot hold the execution open.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use medic_allowlist::BASE_PATH;
use rustix::io::FdFlags;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::containment::{Cleanup, Containment, Jail, reaper_arguments};
use crate::outbox::Outbox;
use crate::output::{Chunker, MAX_CHUNK};
use crate::proto::{ExecutionState, ExecutionUpdate, OutputStream};
use crate::sys::ChildSetup;

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

/// Start the program in a new process group, inside `containment` (for execution `id`); the
/// child and the jail that follows it.
///
/// The script's descriptor must reach the child, so its close-on-exec flag is cleared here and
/// stays cleared until the caller closes it. Every child the agent starts marks all its other
/// descriptors close-on-exec before `exec` ([`ChildSetup`]), so even a child started in between
/// could not keep it; and every process the agent starts is started on one thread, with no
/// `.await` between this call and the closing of the descriptor.
pub fn spawn(
    launch: &Launch,
    containment: &Containment,
    id: &str,
    grace: Duration,
) -> io::Result<(Child, Jail)> {
    if let Some(fd) = launch.script_fd {
        rustix::io::fcntl_setfd(fd, FdFlags::empty())?;
    }
    let keep = launch.script_fd.map(|fd| fd.as_raw_fd());
    let mut prepared = containment.prepare(id)?;
    let mut command = match prepared.reaper() {
        None => {
            let mut command = Command::new(launch.program);
            command
                .arg0(launch.arg0)
                .args(launch.args)
                .stdin(Stdio::null());
            command
        }
        Some(reaper) => {
            let mut command = Command::new(reaper.program);
            command
                .args(reaper_arguments(
                    grace,
                    keep,
                    launch.program,
                    launch.arg0,
                    launch.args,
                ))
                .stdin(Stdio::from(reaper.stdin));
            command
        }
    };
    command
        .env_clear()
        .env("PATH", BASE_PATH)
        .env("LANG", "C")
        .envs(launch.env)
        .current_dir("/")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    ChildSetup::new(prepared.join(), keep).install(&mut command);
    let child = command.spawn()?;
    // The command holds the reaper's end of its control socket: close it, so that only the
    // reaper has it and the agent sees the end of the socket when the reaper is gone.
    drop(command);
    let jail = prepared.started(&child)?;
    Ok((child, jail))
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
    /// Its timeout passed and its processes were ended.
    TimedOut(io::Result<ExitStatus>),
    /// A `Cancel` arrived and its processes were ended.
    Cancelled(io::Result<ExitStatus>, String),
    /// The agent stopped and ended its processes.
    Stopped(io::Result<ExitStatus>),
}

/// Everything the final update reports.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub ending: Ending,
    /// What the containment did.
    pub cleanup: Cleanup,
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

/// Wait for the script to end, streaming its output; end everything it started on timeout or
/// `stop`, and what it left running when it exits by itself.
pub async fn supervise(
    mut child: Child,
    mut jail: Jail,
    execution_id: &str,
    limits: Limits,
    mut stop: oneshot::Receiver<Stop>,
    outbox: Outbox,
) -> Outcome {
    let started = Instant::now();
    let chunker = Arc::new(Mutex::new(Chunker::new(execution_id, limits.output_cap)));
    let mut reader = tokio::spawn(pump(
        child.stdout.take(),
        child.stderr.take(),
        Arc::clone(&chunker),
        outbox,
    ));
    let deadline = tokio::time::sleep(limits.timeout);
    tokio::pin!(deadline);
    let grace = limits.kill_grace;
    let mut stop_open = true;
    let ending = loop {
        tokio::select! {
            status = jail.wait(&mut child) => break Ending::Exited(status),
            () = &mut deadline => break Ending::TimedOut(jail.end(&mut child, grace).await),
            stop = &mut stop, if stop_open => match stop {
                Ok(Stop::Cancel(reason)) => {
                    break Ending::Cancelled(jail.end(&mut child, grace).await, reason);
                }
                Ok(Stop::Shutdown) => break Ending::Stopped(jail.end(&mut child, grace).await),
                // Nobody can stop it any more; let it run to its end or its timeout.
                Err(_) => stop_open = false,
            },
        }
    };
    let duration = started.elapsed();
    let cleanup = jail.finish(&mut child, grace).await;
    if tokio::time::timeout(DRAIN, &mut reader).await.is_err() {
        reader.abort();
    }
    let chunker = chunker.lock().unwrap_or_else(PoisonError::into_inner);
    Outcome {
        ending,
        cleanup,
        chunks: chunker.chunks(),
        truncated: chunker.truncated(),
        duration,
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
        containment: outcome.cleanup.mode.as_str().to_owned(),
        ..ExecutionUpdate::default()
    };
    let (state, status, reason, what) = match outcome.ending {
        Ending::Exited(status) => {
            let state = match &status {
                Ok(status) if status.success() => ExecutionState::Succeeded,
                _ => ExecutionState::Failed,
            };
            let what = match &status {
                Ok(status) => match (status.code(), status.signal()) {
                    (Some(code), _) => format!("exited with status {code}"),
                    (None, Some(signal)) => format!("killed by signal {signal}"),
                    (None, None) => "ended".into(),
                },
                Err(_) => String::new(),
            };
            (state, status, "", what)
        }
        Ending::TimedOut(status) => (
            ExecutionState::TimedOut,
            status,
            "",
            format!("ran past its timeout of {} s", timeout.as_secs()),
        ),
        Ending::Cancelled(status, reason) => (
            ExecutionState::Cancelled,
            status,
            "",
            if reason.is_empty() {
                "cancelled by the server".into()
            } else {
                format!("cancelled by the server ({reason})")
            },
        ),
        Ending::Stopped(status) => (
            ExecutionState::Failed,
            status,
            "agent_stopped",
            "the agent stopped while the script ran".into(),
        ),
    };
    update.state = state.into();
    update.reason = reason.into();
    let done = outcome.cleanup.describe();
    match status {
        Ok(status) => {
            update.exit_code = status.code();
            update.signal = status.signal();
            // A clean exit with nothing left to end needs no words.
            update.detail = match done {
                None if state == ExecutionState::Succeeded => String::new(),
                None => what,
                Some(done) => format!("{what}; {done}"),
            };
        }
        Err(error) => {
            update.state = ExecutionState::Failed.into();
            update.detail = match done {
                None => format!("lost track of the process: {error}"),
                Some(done) => format!("lost track of the process: {error}; {done}"),
            };
        }
    }
    update
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd as _;
    use std::path::PathBuf;

    use tokio::task::JoinHandle;
    use tokio_stream::StreamExt as _;

    use super::*;
    use crate::outbox::Link;
    use crate::proto::{AgentMessage, OutputChunk, agent_message::Body};

    const LIMITS: Limits = Limits {
        timeout: Duration::from_secs(60),
        kill_grace: Duration::from_secs(5),
        output_cap: 1024 * 1024,
    };

    /// A descendant that leaves the script's process group and session, ignores `SIGTERM`, and
    /// writes its pid to `$PIDFILE`: what escaped a process-group kill before containment.
    const ESCAPEE: &str =
        "setsid sh -c 'trap \"\" TERM; echo $$ > \"$PIDFILE\"; exec sleep 120' </dev/null &";

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

    /// An execution running on its own task.
    struct Started {
        stop: Option<oneshot::Sender<Stop>>,
        done: JoinHandle<Run>,
    }

    impl Started {
        fn stop(&mut self, stop: Stop) {
            let _ = self.stop.take().unwrap().send(stop);
        }

        async fn finished(self) -> Run {
            // Keep the stop channel open until the end: a dropped sender is not a stop.
            let _keep = self.stop;
            self.done.await.unwrap()
        }
    }

    /// Start a shell snippet the way an execution runs, in `containment`.
    fn start(
        containment: &Containment,
        id: &str,
        script: &str,
        env: &[(&str, &str)],
        limits: Limits,
    ) -> Started {
        let outbox = Outbox::default();
        let (link, stream) = Link::new(1);
        outbox.attach(&link);
        let args = vec!["-c".to_owned(), script.to_owned()];
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (child, jail) = spawn(
            &Launch {
                program: Path::new("/bin/sh"),
                arg0: Path::new("/bin/sh"),
                script_fd: None,
                args: &args,
                env: &env,
            },
            containment,
            id,
            limits.kill_grace,
        )
        .unwrap();
        let (stop, stopped) = oneshot::channel();
        let id = id.to_owned();
        let done = tokio::spawn(async move {
            let outcome = supervise(child, jail, &id, limits, stopped, outbox.clone()).await;
            let update = final_update(&id, outcome, limits.timeout);
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
        });
        Started {
            stop: Some(stop),
            done,
        }
    }

    /// Run a shell snippet in a process group (the containment of macOS; the rules these tests
    /// check do not depend on it), stopping it after `stop.0` if given.
    async fn run(
        script: &str,
        env: &[(&str, &str)],
        limits: Limits,
        stop: Option<(Duration, Stop)>,
    ) -> Run {
        let mut started = start(&Containment::process_group(), "e1", script, env, limits);
        if let Some((after, stop)) = stop {
            tokio::time::sleep(after).await;
            started.stop(stop);
        }
        started.finished().await
    }

    /// Whether `pid` is gone (or a zombie nobody reaped: dead all the same).
    fn is_dead(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        }
    }

    async fn wait_dead(pid: i32) -> bool {
        for _ in 0..400 {
            if is_dead(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// The pid a script wrote to `path`, once it is there.
    async fn pid_in(path: &Path) -> i32 {
        for _ in 0..600 {
            if let Some(pid) = std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.trim().parse().ok())
            {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nothing written to {}", path.display());
    }

    fn kill(pid: i32) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::Signal::KILL,
        );
    }

    /// A cgroup under the test process's own, for one test's executions; `None` (saying why)
    /// where the kernel does not let this process create one. Removed on drop.
    #[cfg(target_os = "linux")]
    struct TestCgroup {
        dir: PathBuf,
        containment: Containment,
    }

    #[cfg(target_os = "linux")]
    impl TestCgroup {
        fn new(name: &str) -> Option<Self> {
            match Containment::cgroup_for_tests(name) {
                Ok((containment, dir)) => Some(Self { dir, containment }),
                Err(reason) => {
                    eprintln!("SKIPPED: cannot create a cgroup here: {reason}");
                    None
                }
            }
        }

        /// The execution groups still there.
        fn groups(&self) -> Vec<String> {
            std::fs::read_dir(&self.dir)
                .unwrap()
                .filter_map(|entry| {
                    let entry = entry.ok()?;
                    entry.file_type().ok()?.is_dir().then_some(())?;
                    entry.file_name().into_string().ok()
                })
                .collect()
        }
    }

    #[cfg(target_os = "linux")]
    impl Drop for TestCgroup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }

    #[tokio::test]
    async fn a_script_that_exits_zero_succeeds_with_its_output_in_order() {
        let run = run("echo one; echo two >&2; echo three", &[], LIMITS, None).await;
        assert_eq!(run.update.state(), ExecutionState::Succeeded);
        assert_eq!(run.update.exit_code, Some(0));
        assert_eq!(run.update.detail, "");
        assert_eq!(run.update.containment, "process_group");
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
        assert_eq!(run.update.detail, "exited with status 3");
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
    async fn a_script_sees_no_descriptor_of_the_agent_above_2() {
        // An inheritable descriptor in the agent, as one inherited from whatever started it.
        let inherited = std::fs::File::open("/dev/null").unwrap();
        rustix::io::fcntl_setfd(&inherited, FdFlags::empty()).unwrap();
        let run = run("ls /proc/$$/fd", &[], LIMITS, None).await;
        let mut fds: Vec<i32> = run
            .stdout()
            .split_whitespace()
            .map(|fd| fd.parse().unwrap())
            .collect();
        fds.sort_unstable();
        assert_eq!(fds, [0, 1, 2], "inherited: {}", inherited.as_raw_fd());
    }

    #[tokio::test]
    async fn the_script_descriptor_alone_reaches_the_script() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("script.sh");
        std::fs::write(&path, "#!/bin/sh\nls /proc/$$/fd\n").unwrap();
        let executable =
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
        std::fs::set_permissions(&path, executable).unwrap();
        let script = std::fs::File::open(&path).unwrap();
        let other = std::fs::File::open("/dev/null").unwrap();
        rustix::io::fcntl_setfd(&other, FdFlags::empty()).unwrap();
        let program = PathBuf::from(format!("/proc/self/fd/{}", script.as_raw_fd()));
        let env = BTreeMap::new();
        let (child, jail) = spawn(
            &Launch {
                program: &program,
                arg0: &path,
                script_fd: Some(script.as_fd()),
                args: &[],
                env: &env,
            },
            &Containment::process_group(),
            "fd",
            LIMITS.kill_grace,
        )
        .unwrap();
        let outbox = Outbox::default();
        let (link, stream) = Link::new(1);
        outbox.attach(&link);
        let (_stop, stopped) = oneshot::channel();
        let outcome = supervise(child, jail, "fd", LIMITS, stopped, outbox.clone()).await;
        assert!(matches!(outcome.ending, Ending::Exited(Ok(status)) if status.success()));
        outbox.detach(1);
        drop(link);
        let messages: Vec<AgentMessage> = stream.collect().await;
        let listed: Vec<i32> = messages
            .into_iter()
            .filter_map(|message| match message.body {
                Some(Body::OutputChunk(chunk)) => Some(chunk.data),
                _ => None,
            })
            .flat_map(|data| {
                String::from_utf8(data)
                    .unwrap()
                    .split_whitespace()
                    .map(|fd| fd.parse::<i32>().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(listed.contains(&script.as_raw_fd()), "{listed:?}");
        assert!(!listed.contains(&other.as_raw_fd()), "{listed:?}");
        // 0, 1, 2, the script's descriptor, and the one the shell opened to read it.
        assert!(listed.len() <= 5, "{listed:?}");
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
        assert_eq!(
            run.update.detail,
            "ran past its timeout of 1 s; only its process group was signalled (processes that \
             left the group are not tracked)"
        );
        let child: i32 = run.stdout().trim().parse().unwrap();
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
        let child: i32 = run.stdout().trim().parse().unwrap();
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
    async fn what_a_script_leaves_in_its_process_group_ends_with_it() {
        let limits = Limits {
            kill_grace: Duration::from_secs(1),
            ..LIMITS
        };
        let run = run("trap '' TERM; sleep 300 & echo $!", &[], limits, None).await;
        assert_eq!(run.update.state(), ExecutionState::Succeeded);
        assert_eq!(
            run.update.detail,
            "exited with status 0; what it left in its process group was signalled \
             (processes that left the group are not tracked)"
        );
        let child: i32 = run.stdout().trim().parse().unwrap();
        assert!(wait_dead(child).await, "the leftover {child} survived");
    }

    /// An execution of [`ESCAPEE`] followed by `then`; the escapee's pid goes to `pidfile`.
    struct Escape {
        started: Started,
        pidfile: PathBuf,
        _dir: tempfile::TempDir,
    }

    /// A grace of one second, so that a `SIGTERM` the escapee ignores does not hold tests long.
    const QUICK: Limits = Limits {
        kill_grace: Duration::from_secs(1),
        ..LIMITS
    };

    fn escape(containment: &Containment, id: &str, then: &str, limits: Limits) -> Escape {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("{ESCAPEE} {then}");
        let env = [("PIDFILE", pidfile.to_str().unwrap())];
        let started = start(containment, id, &script, &env, limits);
        Escape {
            started,
            pidfile,
            _dir: dir,
        }
    }

    #[tokio::test]
    async fn a_process_that_left_the_group_escapes_a_process_group_and_says_so() {
        let limits = Limits {
            timeout: Duration::from_secs(1),
            ..QUICK
        };
        let started = Instant::now();
        let group = Containment::process_group();
        let escape = escape(&group, "p-1", "sleep 300", limits);
        let escapee = pid_in(&escape.pidfile).await;
        let run = escape.started.finished().await;
        assert_eq!(run.update.state(), ExecutionState::TimedOut);
        assert!(
            run.update
                .detail
                .contains("processes that left the group are not tracked"),
            "{}",
            run.update.detail
        );
        // It holds the output pipes open: the execution still ends (the reader is abandoned).
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(!is_dead(escapee), "a process group cannot reach it");
        kill(escapee);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn in_a_cgroup_a_setsid_descendant_dies_on_timeout_and_the_group_is_removed() {
        let Some(cgroup) = TestCgroup::new("timeout") else {
            return;
        };
        let limits = Limits {
            timeout: Duration::from_secs(2),
            ..QUICK
        };
        let escape = escape(&cgroup.containment, "t-1", "sleep 300", limits);
        let escapee = pid_in(&escape.pidfile).await;
        let run = escape.started.finished().await;
        assert_eq!(run.update.state(), ExecutionState::TimedOut);
        assert_eq!(run.update.containment, "cgroup");
        // The script, its `sleep`, the escapee (a shell may exec its last command itself).
        let detail = &run.update.detail;
        assert!(
            detail.starts_with("ran past its timeout of 2 s; its cgroup was killed (")
                && detail.ends_with(" processes)"),
            "{detail}"
        );
        assert!(wait_dead(escapee).await, "the escapee {escapee} survived");
        assert_eq!(cgroup.groups(), Vec::<String>::new());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn in_a_cgroup_a_setsid_descendant_dies_on_cancel() {
        let Some(cgroup) = TestCgroup::new("cancel") else {
            return;
        };
        let mut escape = escape(&cgroup.containment, "c-1", "sleep 300", QUICK);
        let escapee = pid_in(&escape.pidfile).await;
        escape.started.stop(Stop::Cancel("operator asked".into()));
        let run = escape.started.finished().await;
        assert_eq!(run.update.state(), ExecutionState::Cancelled);
        assert!(
            run.update
                .detail
                .starts_with("cancelled by the server (operator asked); its cgroup was killed"),
            "{}",
            run.update.detail
        );
        assert!(wait_dead(escapee).await, "the escapee {escapee} survived");
        assert_eq!(cgroup.groups(), Vec::<String>::new());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn in_a_cgroup_leftovers_of_a_normal_exit_are_killed() {
        let Some(cgroup) = TestCgroup::new("leftovers") else {
            return;
        };
        let then = "while [ ! -s \"$PIDFILE\" ]; do sleep 0.05; done; exit 0";
        let escape = escape(&cgroup.containment, "l-1", then, QUICK);
        let run = escape.started.finished().await;
        let escapee = pid_in(&escape.pidfile).await;
        assert_eq!(run.update.state(), ExecutionState::Succeeded);
        assert_eq!(
            run.update.detail,
            "exited with status 0; 1 leftover process killed"
        );
        assert!(wait_dead(escapee).await, "the leftover {escapee} survived");
        assert_eq!(cgroup.groups(), Vec::<String>::new());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn in_a_cgroup_ending_one_execution_never_touches_another() {
        let Some(cgroup) = TestCgroup::new("two") else {
            return;
        };
        let mut first = escape(&cgroup.containment, "two-1", "sleep 300", QUICK);
        let mut second = escape(&cgroup.containment, "two-2", "sleep 300", QUICK);
        let (first_escapee, second_escapee) =
            (pid_in(&first.pidfile).await, pid_in(&second.pidfile).await);
        first.started.stop(Stop::Cancel(String::new()));
        assert_eq!(
            first.started.finished().await.update.state(),
            ExecutionState::Cancelled
        );
        assert!(wait_dead(first_escapee).await);
        assert!(!is_dead(second_escapee), "the other execution was touched");
        assert_eq!(cgroup.groups(), ["exec-two-2"]);
        second.started.stop(Stop::Shutdown);
        assert_eq!(
            second.started.finished().await.update.reason,
            "agent_stopped"
        );
        assert!(wait_dead(second_escapee).await);
        assert_eq!(cgroup.groups(), Vec::<String>::new());
    }
}
