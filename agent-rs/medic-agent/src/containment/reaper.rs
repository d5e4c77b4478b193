//! The reaper: `medic-agent __reap`, the small process that runs one script in the `subreaper`
//! containment, and ends everything the script started.
//!
//! # Design
//!
//! The agent starts the reaper (its own binary, `/proc/self/exe`) instead of the script. The
//! reaper makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`), so every process the
//! script starts stays its descendant: when a process's parent dies — a double fork, a `setsid`
//! daemon — it is re-parented to the reaper, not to PID 1. So "everything this execution
//! started" is exactly "the reaper's descendants", and nothing of another execution is ever
//! among them (each execution has its own reaper).
//!
//! It talks to the agent over a socket on its standard input (the script gets `/dev/null`).
//! The agent sends `T` to end the execution (timeout, cancel, shutdown); a closed socket (the
//! agent died) means the same. The reaper answers with lines:
//!
//! - `started <pid>` once the script runs, or `failed <errno>` if it could not start;
//! - `exited <wait status>` when the script ended (its exact `waitpid` status);
//! - `done <killed> <survivors>` once no descendant is left, after which it exits.
//!
//! Ending means: `SIGTERM` to every descendant, up to the grace period for them to exit, then
//! `SIGKILL` to whatever is left (and to whatever they forked meanwhile), until none is left or
//! [`KILL_WAIT`] passed (a process stuck in the kernel cannot be killed; it is reported). When
//! the script exits by itself, what it left running is ended the same way.
//!
//! Only the reaper reaps (`wait`, i.e. `waitpid(-1)`, is safe here: every child is its business), and it
//! never reaps between listing its processes and signalling them, so a direct child's pid
//! cannot be reused in between. Deeper descendants are signalled through a pidfd after
//! checking their start time ([`super::procfs::signal_if`]).
//!
//! Limits: a descendant that asks another process to start something (`systemctl start`, `at`,
//! `ssh localhost`) is not a descendant; a root script can kill its reaper (it could also kill
//! the agent), after which its processes are adopted by PID 1.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::{self, ErrorKind, Read as _, Write as _};
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::process::{
    Pid, PidfdFlags, Signal, WaitOptions, getpid, kill_process, pidfd_open, set_child_subreaper,
    wait,
};

use super::{KILL_WAIT, REAPER_COMMAND as COMMAND, procfs};
use crate::sys::ChildSetup;

/// How often to look again while processes are being ended.
const ENDING_TICK: Duration = Duration::from_millis(10);
/// How often to look while the script runs, where the kernel has no pidfds (Linux before 5.3):
/// how soon its exit is seen.
const RUNNING_TICK: Duration = Duration::from_millis(100);
/// How often to reap adopted orphans while the script runs, where its pidfd tells its exit.
const ORPHAN_TICK: Duration = Duration::from_secs(1);

/// What the command line says.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    grace: Duration,
    keep: Option<RawFd>,
    program: OsString,
    arg0: OsString,
    args: Vec<OsString>,
}

fn parse(args: &[OsString]) -> Option<Plan> {
    let mut args = args.iter();
    let grace = Duration::from_millis(args.next()?.to_str()?.parse().ok()?);
    let keep = match args.next()?.to_str()? {
        "-" => None,
        fd => Some(fd.parse().ok()?),
    };
    Some(Plan {
        grace,
        keep,
        program: args.next()?.clone(),
        arg0: args.next()?.clone(),
        args: args.cloned().collect(),
    })
}

/// Run the reaper with the arguments after [`COMMAND`]; the process's exit status.
pub fn main(args: &[OsString]) -> u8 {
    let Some(plan) = parse(args) else {
        eprintln!("medic-agent: {COMMAND} is for the agent's own use");
        return 2;
    };
    let control = match rustix::io::fcntl_dupfd_cloexec(io::stdin(), 3) {
        Ok(fd) => UnixStream::from(fd),
        Err(error) => {
            eprintln!("medic-agent {COMMAND}: no control socket on standard input: {error}");
            return 2;
        }
    };
    let mut reaper = Reaper {
        control,
        open: true,
        me: getpid(),
        script: None,
        signalled: BTreeSet::new(),
    };
    if let Err(error) = set_child_subreaper(Some(reaper.me)) {
        reaper.say(&format!("failed {}\n", error.raw_os_error()));
        return 1;
    }
    let mut command = Command::new(&plan.program);
    command
        .arg0(&plan.arg0)
        .args(&plan.args)
        .stdin(Stdio::null());
    ChildSetup::new(None, plan.keep).install_std(&mut command);
    let script = match command.spawn() {
        Ok(child) => child.id(),
        Err(error) => {
            reaper.say(&format!("failed {}\n", error.raw_os_error().unwrap_or(0)));
            return 1;
        }
    };
    let Some(script) = i32::try_from(script).ok().and_then(Pid::from_raw) else {
        return 1;
    };
    reaper.script = Some(script);
    reaper.say(&format!("started {}\n", script.as_raw_nonzero()));
    reaper.run(plan.grace);
    0
}

/// Where the ending is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The script runs; nothing was asked.
    Running,
    /// `SIGTERM` sent; `SIGKILL` at the deadline.
    Terminating(Instant),
    /// `SIGKILL` sent (and sent again to newcomers); give up at the deadline.
    Killing(Instant),
}

struct Reaper {
    control: UnixStream,
    /// Whether the agent is still there.
    open: bool,
    me: Pid,
    /// The script, until it is reaped.
    script: Option<Pid>,
    /// Every process signalled, by pid and start time.
    signalled: BTreeSet<(i32, u64)>,
}

impl Reaper {
    /// Tell the agent (if it still listens).
    fn say(&mut self, line: &str) {
        if self.open && self.control.write_all(line.as_bytes()).is_err() {
            self.open = false;
        }
    }

    fn run(&mut self, grace: Duration) {
        let script = self.script;
        let pidfd = script.and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok());
        let mut phase = Phase::Running;
        let survivors = loop {
            let any_left = self.reap();
            if !any_left {
                break 0;
            }
            let now = Instant::now();
            phase = match phase {
                Phase::Running if self.script.is_none() || !self.open => self.terminate(grace),
                Phase::Terminating(deadline) if now >= deadline => {
                    self.signal_all(Signal::KILL);
                    Phase::Killing(now + KILL_WAIT)
                }
                Phase::Killing(deadline) if now >= deadline => {
                    break self.descendants().len();
                }
                Phase::Killing(deadline) => {
                    // Newcomers: what the dying forked, or orphans just adopted.
                    self.signal_all(Signal::KILL);
                    Phase::Killing(deadline)
                }
                phase => phase,
            };
            let tick = match phase {
                // The script's exit wakes the reaper through its pidfd: only adopted orphans
                // wait for the tick to be reaped.
                Phase::Running if pidfd.is_some() && self.script.is_some() => ORPHAN_TICK,
                Phase::Running => RUNNING_TICK,
                _ => ENDING_TICK,
            };
            if self.wait_for_news(pidfd.as_ref().filter(|_| self.script.is_some()), tick) {
                phase = match phase {
                    Phase::Running => self.terminate(grace),
                    phase => phase,
                };
            }
        };
        let killed = self.signalled.len();
        self.say(&format!("done {killed} {survivors}\n"));
    }

    /// `SIGTERM` to every descendant; the kill follows after `grace`.
    fn terminate(&mut self, grace: Duration) -> Phase {
        self.signal_all(Signal::TERM);
        Phase::Terminating(Instant::now() + grace)
    }

    /// Reap every child that ended, telling the agent when it is the script. Whether any child
    /// is left.
    fn reap(&mut self) -> bool {
        loop {
            match wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => {
                    if Some(pid) == self.script {
                        self.script = None;
                        self.say(&format!("exited {}\n", status.as_raw()));
                    }
                }
                Ok(None) => return true,
                Err(Errno::INTR) => {}
                // ECHILD: no child at all. Orphans are re-parented to the reaper before their
                // parent can be reaped, so no child means no descendant.
                Err(_) => return false,
            }
        }
    }

    /// Wait up to `tick` for the agent to say something or the script to end; whether the agent
    /// asked to end the execution (or went away).
    fn wait_for_news(&mut self, script: Option<&std::os::fd::OwnedFd>, tick: Duration) -> bool {
        let timeout = Timespec::try_from(tick).unwrap_or(Timespec {
            tv_sec: 0,
            tv_nsec: 10_000_000,
        });
        let mut fds = Vec::with_capacity(2);
        if self.open {
            fds.push(PollFd::new(&self.control, PollFlags::IN));
        }
        if let Some(script) = script {
            fds.push(PollFd::new(script, PollFlags::IN));
        }
        if fds.is_empty() {
            std::thread::sleep(tick);
            return false;
        }
        let ready = poll(&mut fds, Some(&timeout)).unwrap_or(0);
        let control_ready = self.open && !fds[0].revents().is_empty();
        drop(fds);
        if ready == 0 || !control_ready {
            return false;
        }
        let mut byte = [0_u8; 16];
        match self.control.read(&mut byte) {
            Ok(0) => {
                self.open = false;
                true
            }
            Ok(read) => byte[..read].contains(&b'T'),
            Err(error) if error.kind() == ErrorKind::Interrupted => false,
            Err(_) => {
                self.open = false;
                true
            }
        }
    }

    /// Every living descendant, parents before children.
    fn descendants(&self) -> Vec<procfs::Stat> {
        let mut children: BTreeMap<i32, Vec<procfs::Stat>> = BTreeMap::new();
        for process in procfs::processes() {
            children.entry(process.ppid).or_default().push(process);
        }
        let mut found = Vec::new();
        let mut next = vec![self.me.as_raw_nonzero().get()];
        while let Some(parent) = next.pop() {
            for child in children.remove(&parent).unwrap_or_default() {
                next.push(child.pid.as_raw_nonzero().get());
                if !child.zombie {
                    found.push(child);
                }
            }
        }
        found
    }

    /// Send `signal` to every living descendant.
    fn signal_all(&mut self, signal: Signal) {
        let me = self.me.as_raw_nonzero().get();
        for process in self.descendants() {
            let sent = if process.ppid == me {
                // A child of the reaper that it has not reaped: its pid cannot be reused.
                kill_process(process.pid, signal).is_ok()
            } else {
                procfs::signal_if(process.pid, signal, |pid| {
                    procfs::stat(pid).is_some_and(|now| now.start == process.start)
                })
            };
            if sent {
                self.signalled
                    .insert((process.pid.as_raw_nonzero().get(), process.start));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_command_line_round_trips() {
        let args = ["--now".to_owned(), "with space".to_owned()];
        let line = super::super::reaper_arguments(
            Duration::from_millis(1500),
            Some(7),
            Path::new("/proc/self/fd/7"),
            Path::new("/opt/medic/restart.sh"),
            &args,
        );
        assert_eq!(line[0], COMMAND);
        assert_eq!(
            parse(&line[1..]),
            Some(Plan {
                grace: Duration::from_millis(1500),
                keep: Some(7),
                program: "/proc/self/fd/7".into(),
                arg0: "/opt/medic/restart.sh".into(),
                args: vec!["--now".into(), "with space".into()],
            })
        );
        let line = super::super::reaper_arguments(
            Duration::from_secs(1),
            None,
            Path::new("/bin/sh"),
            Path::new("sh"),
            &[],
        );
        assert_eq!(parse(&line[1..]).unwrap().keep, None);
        assert_eq!(parse(&["x".into()]), None);
    }
}
