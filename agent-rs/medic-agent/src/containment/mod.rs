//! Containment: every process a script starts ends when its execution ends.
//!
//! # Design
//!
//! A script can start processes that leave its process group (`setsid`, a double fork, a
//! daemon): signalling the group does not reach them, and they are re-parented to PID 1. So the
//! agent contains each execution in one of three ways, chosen once at start ([`Setting`], the
//! `containment` configuration key) and reported to the server (`Hello.containment`, and every
//! final `ExecutionUpdate.containment`):
//!
//! - [`Mode::Cgroup`] (Linux with a usable, delegated cgroup v2): each execution in its own
//!   cgroup, which no descendant can leave by forking; ended with `cgroup.kill`
//!   ([`cgroup`]).
//! - [`Mode::Subreaper`] (Linux without one): each execution under its own small reaper
//!   process, a child subreaper that adopts every orphaned descendant and ends them all
//!   ([`reaper`], [`subreaper`]).
//! - [`Mode::ProcessGroup`] (macOS, or when neither works): only the script's process group is
//!   signalled; a process that left the group is not tracked, and the execution's detail says
//!   so.
//!
//! `auto` (the default) takes the first that works here; a mode that is asked for by name and
//! does not work is a start-up error. Whatever the mode, an execution ends the same way
//! ([`Jail`]): on timeout, `Cancel` or shutdown, `SIGTERM` to everything, `kill_grace_seconds`,
//! then `SIGKILL` to what is left; and when the script exits by itself, what it left running is
//! ended the same way — the execution is over, and nothing the server asked for outlives it (a
//! script that must start a long-lived process asks the service manager, whose units live in
//! their own cgroups). The [`Cleanup`] says what was done, and the execution's detail says it
//! without ever claiming a kill that did not happen.

#[cfg(target_os = "linux")]
mod cgroup;
#[cfg(target_os = "linux")]
mod procfs;
#[cfg(target_os = "linux")]
pub mod reaper;
#[cfg(target_os = "linux")]
mod subreaper;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};
use serde::Deserialize;
use tokio::process::Child;
#[cfg(target_os = "linux")]
use tracing::warn;

/// How long processes may take to die after `SIGKILL` before they are reported as survivors
/// (a process blocked in the kernel, e.g. on a dead NFS server, cannot die until it returns).
pub const KILL_WAIT: Duration = Duration::from_secs(10);
/// How often to look whether everything ended.
const TICK: Duration = Duration::from_millis(20);

/// The containment in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each execution in its own cgroup v2.
    Cgroup,
    /// Each execution under its own child-subreaper process.
    Subreaper,
    /// Only the script's process group.
    ProcessGroup,
}

impl Mode {
    /// The name in the configuration, the protocol and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Cgroup => "cgroup",
            Mode::Subreaper => "subreaper",
            Mode::ProcessGroup => "process_group",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `containment` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    /// The best that works here.
    #[default]
    Auto,
    /// [`Mode::Cgroup`] or nothing.
    Cgroup,
    /// [`Mode::Subreaper`] or nothing.
    Subreaper,
    /// [`Mode::ProcessGroup`].
    ProcessGroup,
}

impl FromStr for Setting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Setting::Auto),
            "cgroup" => Ok(Setting::Cgroup),
            "subreaper" => Ok(Setting::Subreaper),
            "process_group" => Ok(Setting::ProcessGroup),
            _ => Err("containment must be auto, cgroup, subreaper or process_group".into()),
        }
    }
}

/// The containment chosen at start.
#[derive(Debug)]
pub struct Containment {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    #[cfg(target_os = "linux")]
    Cgroup(cgroup::Base),
    #[cfg(target_os = "linux")]
    Subreaper(subreaper::Reaper),
    ProcessGroup,
}

impl Containment {
    /// Choose the containment for `setting`, proving that it works here. Returns it with a
    /// sentence saying why it was chosen (for the log); the error says why the mode asked for
    /// cannot be used.
    pub fn start(setting: Setting) -> Result<(Self, String), String> {
        let cgroup = || -> Result<Self, String> {
            #[cfg(target_os = "linux")]
            return cgroup::Base::enter().map(|base| Self {
                kind: Kind::Cgroup(base),
            });
            #[cfg(not(target_os = "linux"))]
            Err("cgroups exist on Linux only".into())
        };
        let subreaper = || -> Result<Self, String> {
            #[cfg(target_os = "linux")]
            return subreaper::Reaper::check().map(|reaper| Self {
                kind: Kind::Subreaper(reaper),
            });
            #[cfg(not(target_os = "linux"))]
            Err("child subreapers exist on Linux only".into())
        };
        let group = Self {
            kind: Kind::ProcessGroup,
        };
        match setting {
            Setting::Auto => match cgroup() {
                Ok(chosen) => {
                    let why = format!("auto: a cgroup v2 under {}", chosen.place());
                    Ok((chosen, why))
                }
                Err(no_cgroup) => match subreaper() {
                    Ok(chosen) => Ok((chosen, format!("auto: no usable cgroup v2 ({no_cgroup})"))),
                    Err(no_subreaper) => Ok((
                        group,
                        format!(
                            "auto: no usable cgroup v2 ({no_cgroup}) and no subreaper \
                             ({no_subreaper}): processes that leave the script's process group \
                             are not tracked"
                        ),
                    )),
                },
            },
            Setting::Cgroup => cgroup()
                .map(|chosen| {
                    let why = format!("configured: a cgroup v2 under {}", chosen.place());
                    (chosen, why)
                })
                .map_err(|error| format!("containment = \"cgroup\" cannot work here: {error}")),
            Setting::Subreaper => subreaper()
                .map(|chosen| (chosen, "configured".to_owned()))
                .map_err(|error| format!("containment = \"subreaper\" cannot work here: {error}")),
            Setting::ProcessGroup => Ok((
                group,
                "configured: processes that leave the script's process group are not tracked"
                    .to_owned(),
            )),
        }
    }

    /// Only the process group (tests, and where nothing else works).
    #[cfg(test)]
    pub fn process_group() -> Self {
        Self {
            kind: Kind::ProcessGroup,
        }
    }

    /// Executions in cgroups under a new group of the test process's own (which is not
    /// moved), and that group's directory; the error says why the kernel refused.
    #[cfg(all(test, target_os = "linux"))]
    pub fn cgroup_for_tests(name: &str) -> Result<(Self, PathBuf), String> {
        let base = cgroup::Base::for_tests(name)?;
        let dir = base.dir().to_path_buf();
        Ok((
            Self {
                kind: Kind::Cgroup(base),
            },
            dir,
        ))
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        match self.kind {
            #[cfg(target_os = "linux")]
            Kind::Cgroup(_) => Mode::Cgroup,
            #[cfg(target_os = "linux")]
            Kind::Subreaper(_) => Mode::Subreaper,
            Kind::ProcessGroup => Mode::ProcessGroup,
        }
    }

    /// End what the executions `ids`, running when the agent last stopped without ending them
    /// (a crash), left running; how many processes were killed. Only cgroups outlive the agent:
    /// a reaper ends its execution when the agent goes away, and a process group is untracked.
    pub fn reclaim(&self, ids: &[String]) -> usize {
        match &self.kind {
            #[cfg(target_os = "linux")]
            Kind::Cgroup(base) => ids.iter().filter_map(|id| base.reclaim(id)).sum(),
            _ => {
                let _ = ids;
                0
            }
        }
    }

    /// Where executions are placed, for the log.
    pub fn place(&self) -> String {
        match &self.kind {
            #[cfg(target_os = "linux")]
            Kind::Cgroup(base) => base.dir().display().to_string(),
            #[cfg(target_os = "linux")]
            Kind::Subreaper(reaper) => reaper.program().display().to_string(),
            Kind::ProcessGroup => String::new(),
        }
    }

    /// Prepare the containment of execution `id`: what the spawn must do, and what becomes the
    /// jail that follows the execution once it runs.
    pub fn prepare(&self, id: &str) -> io::Result<Prepared> {
        let (reaper, join, pending) = match &self.kind {
            #[cfg(target_os = "linux")]
            Kind::Cgroup(base) => {
                let group = base.create(id)?;
                let join = group.procs_for_child()?;
                (None, Some(join), Pending::Cgroup(group))
            }
            #[cfg(target_os = "linux")]
            Kind::Subreaper(reaper) => {
                let (control, stdin) = subreaper::Reaper::channel()?;
                let start = ReaperStart {
                    program: reaper.program().to_path_buf(),
                    stdin,
                };
                (Some(start), None, Pending::Reaper(control))
            }
            Kind::ProcessGroup => (None, None, Pending::Group),
        };
        Ok(Prepared {
            mode: self.mode(),
            reaper,
            join,
            pending,
        })
    }
}

/// The hidden command that runs the reaper (`medic-agent __reap …`).
pub const REAPER_COMMAND: &str = "__reap";

/// The reaper's command line: [`REAPER_COMMAND`], then
/// `<grace in ms> <script descriptor or -> <program> <argv[0]> [arguments…]`.
pub fn reaper_arguments(
    grace: Duration,
    keep: Option<RawFd>,
    program: &Path,
    arg0: &Path,
    args: &[String],
) -> Vec<OsString> {
    let mut line: Vec<OsString> = vec![
        REAPER_COMMAND.into(),
        grace.as_millis().to_string().into(),
        keep.map_or_else(|| "-".to_owned(), |fd| fd.to_string())
            .into(),
        program.into(),
        arg0.into(),
    ];
    line.extend(args.iter().map(OsString::from));
    line
}

/// Run a reaper instead of the script.
#[derive(Debug)]
pub struct ReaperStart {
    /// The agent's own binary.
    pub program: PathBuf,
    /// The reaper's end of its control socket: its standard input.
    pub stdin: OwnedFd,
}

/// What a spawn must do for the containment.
#[derive(Debug)]
pub struct Prepared {
    mode: Mode,
    reaper: Option<ReaperStart>,
    join: Option<OwnedFd>,
    pending: Pending,
}

#[derive(Debug)]
enum Pending {
    #[cfg(target_os = "linux")]
    Cgroup(cgroup::Group),
    #[cfg(target_os = "linux")]
    Reaper(std::os::unix::net::UnixStream),
    Group,
}

impl Prepared {
    /// Whether to start a reaper instead of the script (once).
    pub fn reaper(&mut self) -> Option<ReaperStart> {
        self.reaper.take()
    }

    /// The cgroup's `cgroup.procs` for the child to join (once).
    pub fn join(&mut self) -> Option<OwnedFd> {
        self.join.take()
    }

    /// The jail, once the spawned `child` runs (for a reaper: once it started the script).
    pub fn started(self, child: &Child) -> io::Result<Jail> {
        let inner = match self.pending {
            #[cfg(target_os = "linux")]
            Pending::Cgroup(group) => Inner::Cgroup(group),
            #[cfg(target_os = "linux")]
            Pending::Reaper(control) => Inner::Reaper(subreaper::Session::start(control)?),
            Pending::Group => Inner::Group(
                child
                    .id()
                    .and_then(|pid| i32::try_from(pid).ok())
                    .and_then(Pid::from_raw),
            ),
        };
        Ok(Jail {
            mode: self.mode,
            inner,
            ended: false,
            survivors: 0,
        })
    }
}

/// The mode-specific part of a [`Jail`].
#[derive(Debug)]
enum Inner {
    /// The execution's cgroup.
    #[cfg(target_os = "linux")]
    Cgroup(cgroup::Group),
    /// The execution's reaper.
    #[cfg(target_os = "linux")]
    Reaper(subreaper::Session),
    /// The script's process group (its leader's pid).
    Group(Option<Pid>),
}

/// What the containment did to end an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleanup {
    /// The mode in force.
    pub mode: Mode,
    /// Whether the execution was ended early (timeout, cancel, shutdown), as opposed to the
    /// script exiting by itself.
    pub ended: bool,
    /// How many processes were signalled (`None`: a process group, whose members are not
    /// counted; `Some(0)` there means nothing was left to signal).
    pub killed: Option<usize>,
    /// How many were still alive when the agent stopped waiting for them.
    pub survivors: usize,
}

impl Cleanup {
    /// What was done, in words for the execution's detail; `None` when nothing had to be done.
    pub fn describe(&self) -> Option<String> {
        let processes = |count: usize| {
            if count == 1 {
                "1 process".to_owned()
            } else {
                format!("{count} processes")
            }
        };
        let done = match (self.mode, self.ended, self.killed) {
            (Mode::ProcessGroup, true, _) | (Mode::ProcessGroup, false, None) => {
                let what = if self.ended {
                    "only its process group was signalled"
                } else {
                    "what it left in its process group was signalled"
                };
                format!("{what} (processes that left the group are not tracked)")
            }
            // Not counted (the reaper was lost): say nothing rather than guess.
            (_, _, None) => return None,
            (_, false, Some(0)) => return None,
            (_, true, Some(0)) => "nothing of it was left running".to_owned(),
            (Mode::Cgroup, true, Some(count)) => {
                format!("its cgroup was killed ({})", processes(count))
            }
            (_, true, Some(count)) => format!("its process tree was killed ({})", processes(count)),
            (_, false, Some(count)) => {
                if count == 1 {
                    "1 leftover process killed".to_owned()
                } else {
                    format!("{count} leftover processes killed")
                }
            }
        };
        Some(match (self.survivors, self.mode) {
            (0, _) => done,
            (_, Mode::ProcessGroup) => format!("{done}; some of its members could not be killed"),
            (count, _) => format!(
                "{done}; {} could not be killed (stuck in the kernel?)",
                processes(count)
            ),
        })
    }
}

/// Follows one running execution and ends everything it started.
#[derive(Debug)]
pub struct Jail {
    mode: Mode,
    inner: Inner,
    ended: bool,
    survivors: usize,
}

/// Something the agent signals as a whole: a cgroup or a process group.
trait Target {
    fn term(&mut self);
    fn kill(&mut self);
    fn empty(&self) -> bool;
}

#[cfg(target_os = "linux")]
impl Target for cgroup::Group {
    fn term(&mut self) {
        self.signal(Signal::TERM);
    }
    fn kill(&mut self) {
        cgroup::Group::kill(self);
    }
    fn empty(&self) -> bool {
        !self.populated()
    }
}

/// A process group, by its leader's pid, and whether it was signalled.
struct ProcessGroup(Pid, bool);

impl Target for ProcessGroup {
    fn term(&mut self) {
        self.1 |= kill_process_group(self.0, Signal::TERM).is_ok();
    }
    fn kill(&mut self) {
        self.1 |= kill_process_group(self.0, Signal::KILL).is_ok();
    }
    fn empty(&self) -> bool {
        // A member, even a zombie, makes the group exist; the agent reaps the leader.
        test_kill_process_group(self.0).is_err()
    }
}

impl Jail {
    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Wait for the script to exit (cancel-safe).
    pub async fn wait(&mut self, child: &mut Child) -> io::Result<ExitStatus> {
        match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Reaper(session) => session.wait().await,
            _ => child.wait().await,
        }
    }

    /// End everything now: `SIGTERM`, up to `grace` for it all to end, `SIGKILL`. The script's
    /// status.
    pub async fn end(&mut self, child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
        self.ended = true;
        let mut status = None;
        match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Reaper(session) => return session.end().await,
            #[cfg(target_os = "linux")]
            Inner::Cgroup(group) => {
                self.survivors = terminate(group, child, &mut status, grace).await;
            }
            Inner::Group(Some(leader)) => {
                let mut group = ProcessGroup(*leader, false);
                self.survivors = terminate(&mut group, child, &mut status, grace).await;
            }
            Inner::Group(None) => {}
        }
        match status {
            Some(status) => status,
            None => {
                // Still not reaped after SIGKILL to everything and the wait: kill the script by
                // its own pid too, then wait (one blocked in the kernel ends when it returns).
                let _ = child.start_kill();
                child.wait().await
            }
        }
    }

    /// After the script's exit (or [`Jail::end`]): end what it left running, remove its cgroup,
    /// and say what was done.
    pub async fn finish(mut self, child: &mut Child, grace: Duration) -> Cleanup {
        let mut status = Some(Ok(ExitStatus::default()));
        let killed = match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Reaper(session) => {
                // The reaper bounds its own work (the grace, then KILL_WAIT); this bounds a
                // reaper that went wrong.
                let limit = grace + KILL_WAIT + KILL_WAIT;
                let finished = tokio::time::timeout(limit, session.finish()).await;
                // The reaper exits right after its last line.
                let _ = tokio::time::timeout(KILL_WAIT, child.wait()).await;
                match finished {
                    Ok(Ok((killed, survivors))) => {
                        self.survivors = survivors;
                        Some(killed)
                    }
                    Ok(Err(error)) => {
                        warn!(%error, "lost track of the execution's reaper");
                        None
                    }
                    Err(_) => {
                        warn!("the execution's reaper did not report in time");
                        None
                    }
                }
            }
            #[cfg(target_os = "linux")]
            Inner::Cgroup(group) => {
                if group.populated() {
                    self.survivors = terminate(group, child, &mut status, grace).await;
                }
                if let Err(error) = group.remove() {
                    warn!(cgroup = %group.dir().display(), %error, "cannot remove the execution's cgroup");
                }
                Some(group.signalled())
            }
            Inner::Group(Some(leader)) => {
                let mut group = ProcessGroup(*leader, self.ended);
                if !self.ended && !group.empty() {
                    self.survivors = terminate(&mut group, child, &mut status, grace).await;
                }
                (!group.1).then_some(0)
            }
            Inner::Group(None) => Some(0),
        };
        Cleanup {
            mode: self.mode,
            ended: self.ended,
            killed,
            survivors: self.survivors,
        }
    }
}

/// `SIGTERM` to everything in `target`, up to `grace` for it (and the script, whose status is
/// kept in `status`) to end, then `SIGKILL` and up to [`KILL_WAIT`] more. How many survived
/// (for a process group: 1 if any member did).
async fn terminate(
    target: &mut impl Target,
    child: &mut Child,
    status: &mut Option<io::Result<ExitStatus>>,
    grace: Duration,
) -> usize {
    target.term();
    if settle(target, child, status, grace, false).await {
        return 0;
    }
    target.kill();
    if settle(target, child, status, KILL_WAIT, true).await {
        return 0;
    }
    usize::from(!target.empty())
}

/// Wait up to `limit` until `target` is empty and the script reaped; with `again`, kill
/// newcomers at every look. Whether that happened.
async fn settle(
    target: &mut impl Target,
    child: &mut Child,
    status: &mut Option<io::Result<ExitStatus>>,
    limit: Duration,
    again: bool,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if status.is_some() && target.empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        if status.is_none() {
            tokio::select! {
                exited = child.wait() => *status = Some(exited),
                () = tokio::time::sleep(TICK) => {}
            }
        } else {
            tokio::time::sleep(TICK).await;
        }
        if again {
            target.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleanup(mode: Mode, ended: bool, killed: Option<usize>, survivors: usize) -> Cleanup {
        Cleanup {
            mode,
            ended,
            killed,
            survivors,
        }
    }

    #[test]
    fn settings_parse_from_the_environment_and_toml() {
        assert_eq!("auto".parse(), Ok(Setting::Auto));
        assert_eq!("process_group".parse(), Ok(Setting::ProcessGroup));
        assert!("cgroups".parse::<Setting>().is_err());
        assert_eq!(Setting::default(), Setting::Auto);
    }

    #[test]
    fn the_detail_says_what_was_done_and_never_more() {
        let describe =
            |mode, ended, killed, survivors| cleanup(mode, ended, killed, survivors).describe();
        assert_eq!(
            describe(Mode::Cgroup, true, Some(3), 0).as_deref(),
            Some("its cgroup was killed (3 processes)")
        );
        assert_eq!(
            describe(Mode::Subreaper, true, Some(1), 0).as_deref(),
            Some("its process tree was killed (1 process)")
        );
        assert_eq!(describe(Mode::Cgroup, false, Some(0), 0), None);
        assert_eq!(describe(Mode::Subreaper, false, Some(0), 0), None);
        assert_eq!(
            describe(Mode::Cgroup, false, Some(1), 0).as_deref(),
            Some("1 leftover process killed")
        );
        assert_eq!(
            describe(Mode::Subreaper, false, Some(2), 1).as_deref(),
            Some(
                "2 leftover processes killed; 1 process could not be killed (stuck in the kernel?)"
            )
        );
        assert_eq!(
            describe(Mode::ProcessGroup, true, None, 0).as_deref(),
            Some(
                "only its process group was signalled (processes that left the group are not \
                 tracked)"
            )
        );
        assert_eq!(describe(Mode::ProcessGroup, false, Some(0), 0), None);
        assert_eq!(
            describe(Mode::ProcessGroup, false, None, 0).as_deref(),
            Some(
                "what it left in its process group was signalled (processes that left the \
                 group are not tracked)"
            )
        );
    }
}
