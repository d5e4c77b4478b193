//! The real agent binary contains every process a script starts: a descendant that leaves the
//! script's process group and session (`setsid`) and ignores `SIGTERM` — which a process-group
//! kill never reached — dies on timeout, on cancel, and when the script exits; ending one
//! execution never touches another's processes; execution cgroups are removed; and a script sees
//! no descriptor the agent inherited. Each test runs in the `cgroup` and the `subreaper` mode
//! (a `cgroup` test is skipped, saying why, only where the kernel does not let this process
//! create a cgroup), and the `process_group` mode is shown to say honestly what it cannot do.
//! The harness is `support/mod.rs`.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::proto::agent_message::Body;
use support::proto::server_message::Body as ServerBody;
use support::proto::{Execute, ExecutionState, ExecutionUpdate, Hello};
use support::*;

/// Leaves an escapee (its pid in `$PIDFILE`) and waits.
const ESCAPE: &str = "#!/bin/sh\n\
    setsid sh -c 'trap \"\" TERM; echo $$ > \"$PIDFILE\"; exec sleep 120' </dev/null &\n\
    sleep 300\n";
/// Leaves an escapee and exits 0 once it runs.
const LEAVE: &str = "#!/bin/sh\n\
    setsid sh -c 'trap \"\" TERM; echo $$ > \"$PIDFILE\"; exec sleep 120' </dev/null &\n\
    while [ ! -s \"$PIDFILE\" ]; do sleep 0.05; done\n\
    echo left\n";
/// Lists its descriptors and where they point.
const FDS: &str = "#!/bin/sh\nls -l /proc/$$/fd\n";

/// The containment modes under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Cgroup,
    Subreaper,
    ProcessGroup,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Cgroup => "cgroup",
            Mode::Subreaper => "subreaper",
            Mode::ProcessGroup => "process_group",
        }
    }

    /// What the detail says was killed when an execution is ended early.
    fn ended(self) -> &'static str {
        match self {
            Mode::Cgroup => "its cgroup was killed (",
            Mode::Subreaper => "its process tree was killed (",
            Mode::ProcessGroup => "only its process group was signalled",
        }
    }
}

/// The cgroup v2 mount point, and why this process cannot create a group (if it cannot).
fn cgroup_mount() -> Result<PathBuf, String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let point = mountinfo
        .lines()
        .filter_map(|line| line.split_once(" - "))
        .find(|(_, right)| right.starts_with("cgroup2 "))
        .and_then(|(left, _)| left.split(' ').nth(4).map(PathBuf::from))
        .ok_or("no cgroup v2 mount")?;
    let own = cgroup_path(rustix::process::getpid().as_raw_nonzero().get())
        .ok_or("this process is in no cgroup v2 group")?;
    let probe = point
        .join(own.trim_start_matches('/'))
        .join(format!("medic-probe-{}", std::process::id()));
    fs::create_dir(&probe).map_err(|error| format!("{}: {error}", probe.display()))?;
    fs::remove_dir(&probe).unwrap();
    Ok(point)
}

/// The cgroup v2 path of a process.
fn cgroup_path(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("0::").map(str::to_owned))
}

/// A host and its agent in `mode`, welcomed; `None` (saying why) for `cgroup` where this
/// process cannot create a cgroup.
struct Rig {
    host: Host,
    agent: Agent,
    session: Session,
    hello: Hello,
    server: FakeServer,
}

async fn rig(mode: Mode) -> Option<Rig> {
    if let (Mode::Cgroup, Err(reason)) = (mode, cgroup_mount()) {
        eprintln!("SKIPPED: the kernel does not let this process create a cgroup: {reason}");
        return None;
    }
    let mut server = fake_server(None).await;
    let rules = "timeout = 60\nenv = [\"PIDFILE\"]\n";
    let host = host_with(
        &format!("http://{}", server.address),
        &format!("containment = \"{}\"", mode.name()),
        &[
            ("escape", ESCAPE.into(), rules),
            ("leave", LEAVE.into(), rules),
            ("fds", FDS.into(), rules),
        ],
    );
    let agent = host.start_agent();
    let (session, hello, _) = server.welcomed_session().await;
    Some(Rig {
        host,
        agent,
        session,
        hello,
        server,
    })
}

impl Rig {
    fn execute(&self, id: &str, script: &str, timeout_seconds: u32) -> PathBuf {
        let pidfile = self.host.path(&format!("{id}.pid"));
        self.session.send(ServerBody::Execute(Execute {
            execution_id: id.into(),
            script: script.into(),
            env: HashMap::from([("PIDFILE".into(), pidfile.display().to_string())]),
            timeout_seconds,
            ..Execute::default()
        }));
        pidfile
    }

    /// The final update of `id`, passing over the other executions' earlier ones.
    async fn finished(&mut self, id: &str) -> ExecutionUpdate {
        loop {
            match self.session.next().await {
                Body::ExecutionUpdate(update) if update.execution_id == id => {
                    if !matches!(
                        update.state(),
                        ExecutionState::Accepted | ExecutionState::Running
                    ) {
                        return update;
                    }
                }
                Body::ExecutionUpdate(update) => assert!(
                    matches!(
                        update.state(),
                        ExecutionState::Accepted | ExecutionState::Running
                    ),
                    "{update:?}"
                ),
                other => self.session.keep(other),
            }
        }
    }

    /// The directory an execution's cgroup had: a sibling of the agent's leaf.
    fn execution_cgroup(&self, id: &str) -> PathBuf {
        self.execution_cgroup_of(&self.agent, id)
    }

    fn execution_cgroup_of(&self, agent: &Agent, id: &str) -> PathBuf {
        let mount = cgroup_mount().unwrap();
        let agent = cgroup_path(agent.child.id() as i32).unwrap();
        let base = agent
            .strip_suffix("/agent")
            .expect("the agent is in its leaf");
        mount
            .join(base.trim_start_matches('/'))
            .join(format!("exec-{id}"))
    }
}

/// The pid written to `path`, once it is there.
async fn pid_in(path: &Path) -> u32 {
    let started = Instant::now();
    loop {
        if let Some(pid) = fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "nothing in {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
}

async fn an_escapee_dies_on_timeout(mode: Mode) {
    let Some(mut rig) = rig(mode).await else {
        return;
    };
    assert_eq!(rig.hello.containment, mode.name());
    let pidfile = rig.execute("t-1", "escape", 2);
    let escapee = pid_in(&pidfile).await;
    if mode == Mode::Cgroup {
        // In a group of its own, a sibling of the agent's leaf.
        let group = rig.execution_cgroup("t-1");
        assert!(group.is_dir(), "{}", group.display());
        assert!(cgroup_path(escapee as i32).unwrap().ends_with("/exec-t-1"));
    }
    let done = rig.finished("t-1").await;
    assert_eq!(done.state(), ExecutionState::TimedOut, "{done:?}");
    assert_eq!(done.containment, mode.name());
    assert!(
        done.detail
            .starts_with(&format!("ran past its timeout of 2 s; {}", mode.ended())),
        "{done:?}"
    );
    wait_dead(escapee).await;
    if mode == Mode::Cgroup {
        assert!(!rig.execution_cgroup("t-1").exists(), "the cgroup was left");
    }
}

#[tokio::test]
async fn cgroup_an_escapee_dies_on_timeout() {
    an_escapee_dies_on_timeout(Mode::Cgroup).await;
}

#[tokio::test]
async fn subreaper_an_escapee_dies_on_timeout() {
    an_escapee_dies_on_timeout(Mode::Subreaper).await;
}

async fn an_escapee_dies_on_cancel(mode: Mode) {
    let Some(mut rig) = rig(mode).await else {
        return;
    };
    let pidfile = rig.execute("c-1", "escape", 0);
    let escapee = pid_in(&pidfile).await;
    rig.session.cancel("c-1", "operator asked");
    let done = rig.finished("c-1").await;
    assert_eq!(done.state(), ExecutionState::Cancelled, "{done:?}");
    assert_eq!(done.containment, mode.name());
    assert!(
        done.detail.starts_with(&format!(
            "cancelled by the server (operator asked); {}",
            mode.ended()
        )),
        "{done:?}"
    );
    wait_dead(escapee).await;
    if mode == Mode::Cgroup {
        assert!(!rig.execution_cgroup("c-1").exists(), "the cgroup was left");
    }
}

#[tokio::test]
async fn cgroup_an_escapee_dies_on_cancel() {
    an_escapee_dies_on_cancel(Mode::Cgroup).await;
}

#[tokio::test]
async fn subreaper_an_escapee_dies_on_cancel() {
    an_escapee_dies_on_cancel(Mode::Subreaper).await;
}

async fn leftovers_of_a_normal_exit_are_killed(mode: Mode) {
    let Some(mut rig) = rig(mode).await else {
        return;
    };
    let pidfile = rig.execute("l-1", "leave", 0);
    let done = rig.finished("l-1").await;
    assert_eq!(done.state(), ExecutionState::Succeeded, "{done:?}");
    assert_eq!(done.containment, mode.name());
    assert_eq!(
        done.detail,
        "exited with status 0; 1 leftover process killed"
    );
    assert_eq!(rig.session.stdout("l-1"), "left\n");
    wait_dead(pid_in(&pidfile).await).await;
    if mode == Mode::Cgroup {
        assert!(!rig.execution_cgroup("l-1").exists(), "the cgroup was left");
    }
}

#[tokio::test]
async fn cgroup_leftovers_of_a_normal_exit_are_killed() {
    leftovers_of_a_normal_exit_are_killed(Mode::Cgroup).await;
}

#[tokio::test]
async fn subreaper_leftovers_of_a_normal_exit_are_killed() {
    leftovers_of_a_normal_exit_are_killed(Mode::Subreaper).await;
}

async fn ending_one_execution_never_touches_another(mode: Mode) {
    let Some(mut rig) = rig(mode).await else {
        return;
    };
    let first = rig.execute("two-1", "escape", 0);
    let second = rig.execute("two-2", "escape", 0);
    let (first, second) = (pid_in(&first).await, pid_in(&second).await);
    rig.session.cancel("two-1", "");
    let done = rig.finished("two-1").await;
    assert_eq!(done.state(), ExecutionState::Cancelled, "{done:?}");
    wait_dead(first).await;
    assert!(
        !is_dead(second),
        "ending one execution killed the other's process"
    );
    rig.session.cancel("two-2", "");
    let done = rig.finished("two-2").await;
    assert_eq!(done.state(), ExecutionState::Cancelled, "{done:?}");
    wait_dead(second).await;
    if mode == Mode::Cgroup {
        assert!(!rig.execution_cgroup("two-1").exists());
        assert!(!rig.execution_cgroup("two-2").exists());
    }
}

#[tokio::test]
async fn cgroup_ending_one_execution_never_touches_another() {
    ending_one_execution_never_touches_another(Mode::Cgroup).await;
}

#[tokio::test]
async fn subreaper_ending_one_execution_never_touches_another() {
    ending_one_execution_never_touches_another(Mode::Subreaper).await;
}

#[tokio::test]
async fn process_group_says_that_an_escapee_is_not_tracked() {
    let mut rig = rig(Mode::ProcessGroup).await.unwrap();
    assert_eq!(rig.hello.containment, "process_group");
    let pidfile = rig.execute("p-1", "escape", 2);
    let escapee = pid_in(&pidfile).await;
    let done = rig.finished("p-1").await;
    assert_eq!(done.state(), ExecutionState::TimedOut, "{done:?}");
    assert_eq!(done.containment, "process_group");
    assert_eq!(
        done.detail,
        "ran past its timeout of 2 s; only its process group was signalled (processes that \
         left the group are not tracked)"
    );
    assert!(
        !is_dead(escapee),
        "a process group cannot reach it, and says so"
    );
    kill(escapee);
}

async fn what_an_agent_that_died_left_running_is_killed(mode: Mode) {
    let Some(mut rig) = rig(mode).await else {
        return;
    };
    let pidfile = rig.execute("d-1", "escape", 0);
    let escapee = pid_in(&pidfile).await;
    rig.agent.signal(rustix::process::Signal::KILL);
    rig.agent.exited().await;
    // A reaper sees its agent go and ends its execution; a cgroup waits for the next start,
    // which ends the groups of the executions its journal says were running.
    let restarted = rig.host.start_agent();
    let (_session, _, replay) = rig.server.welcomed_session().await;
    let failed = replay.iter().find(|update| update.execution_id == "d-1");
    assert_eq!(failed.unwrap().reason, "agent_stopped");
    wait_dead(escapee).await;
    if mode == Mode::Cgroup {
        assert!(!rig.execution_cgroup_of(&restarted, "d-1").exists());
    }
}

#[tokio::test]
async fn cgroup_what_an_agent_that_died_left_running_is_killed() {
    what_an_agent_that_died_left_running_is_killed(Mode::Cgroup).await;
}

#[tokio::test]
async fn subreaper_what_an_agent_that_died_left_running_is_killed() {
    what_an_agent_that_died_left_running_is_killed(Mode::Subreaper).await;
}

async fn a_script_sees_no_descriptor_the_agent_inherited(mode: Mode) {
    if mode == Mode::Cgroup && cgroup_mount().is_err() {
        return;
    }
    // Whatever starts the agent may leave a descriptor open without close-on-exec.
    let marker = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let inherited = fs::File::open(marker.path()).unwrap();
    rustix::io::fcntl_setfd(inherited.as_fd(), rustix::io::FdFlags::empty()).unwrap();
    let rig = rig(mode).await;
    // Only the agent was to inherit it.
    rustix::io::fcntl_setfd(inherited.as_fd(), rustix::io::FdFlags::CLOEXEC).unwrap();
    let mut rig = rig.unwrap();
    let fd = inherited.as_raw_fd();
    let agent = rig.agent.child.id();
    let flags = fs::read_to_string(format!("/proc/{agent}/fdinfo/{fd}")).unwrap();
    let flags = flags
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .map(|flags| u32::from_str_radix(flags.trim(), 8).unwrap())
        .unwrap();
    assert_ne!(flags & 0o2_000_000, 0, "the agent left fd {fd} inheritable");

    rig.execute("f-1", "fds", 0);
    let done = rig.finished("f-1").await;
    assert_eq!(done.state(), ExecutionState::Succeeded, "{done:?}");
    let listing = rig.session.stdout("f-1");
    let marker = marker.path().display().to_string();
    assert!(!listing.contains(&marker), "{listing}");
    // `N -> target` lines: 0, 1 and 2, then only the script (its descriptor, and the one the
    // shell opened to read it).
    let above_2: Vec<&str> = listing
        .lines()
        .filter_map(|line| line.split_once(" -> "))
        .filter(|(left, _)| {
            let fd: u32 = left.rsplit(' ').next().unwrap().parse().unwrap();
            fd > 2
        })
        .map(|(_, target)| target)
        .collect();
    assert!(!above_2.is_empty() && above_2.len() <= 2, "{listing}");
    assert!(
        above_2.iter().all(|target| *target == above_2[0]),
        "{listing}"
    );
}

#[tokio::test]
async fn cgroup_a_script_sees_no_descriptor_the_agent_inherited() {
    a_script_sees_no_descriptor_the_agent_inherited(Mode::Cgroup).await;
}

#[tokio::test]
async fn subreaper_a_script_sees_no_descriptor_the_agent_inherited() {
    a_script_sees_no_descriptor_the_agent_inherited(Mode::Subreaper).await;
}

/// Run `medic-agent run` as `nobody` (who cannot create cgroups) with `containment = setting`
/// until it logs its containment or exits; its log.
fn run_as_nobody(setting: &str) -> String {
    const NOBODY: u32 = 65_534;
    let host = host_with(
        "http://127.0.0.1:9",
        &format!("containment = \"{setting}\""),
        &[],
    );
    let owned = [
        host.dir.path().to_path_buf(),
        host.path("agent.toml"),
        host.path("allowlist.toml"),
        host.path("agent.key"),
    ];
    for path in &owned {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_medic-agent"))
        .args(["run", "--config", host.config.to_str().unwrap()])
        .args(["--owner-uid", &NOBODY.to_string()])
        .env_remove("MEDIC_AGENT_API_KEY")
        .env_remove("MEDIC_AGENT_CONTAINMENT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn()
        .unwrap();
    let mut log = String::new();
    let stderr = std::io::BufReader::new(agent.stderr.take().unwrap());
    for line in std::io::BufRead::lines(stderr) {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("containment chosen") || line.contains("cannot run") {
            break;
        }
    }
    let _ = agent.kill();
    let _ = agent.wait();
    log
}

#[test]
fn a_forced_mode_that_cannot_work_is_a_start_up_error_and_auto_falls_back() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: running the agent as another user needs root");
        return;
    }
    if cgroup_mount().is_err() {
        eprintln!("SKIPPED: no cgroup v2 here, so `nobody` is no different");
        return;
    }
    // The host directories live in the build tree; under a private (0700) checkout, such as a
    // clean clone in a `mktemp -d` directory, `nobody` cannot reach the binary or its config.
    let tree = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let closed = tree.ancestors().find(|dir| {
        std::fs::metadata(dir)
            .map(|meta| std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o001 == 0)
            .unwrap_or(true)
    });
    if let Some(dir) = closed {
        eprintln!(
            "SKIPPED: `nobody` cannot enter {} (no o+x), so cannot run the agent",
            dir.display()
        );
        return;
    }
    let log = run_as_nobody("cgroup");
    assert!(
        log.contains(r#"containment = \"cgroup\" cannot work here: cannot create a cgroup in"#),
        "{log}"
    );
    let log = run_as_nobody("auto");
    assert!(
        log.contains(r#""message":"containment chosen","mode":"subreaper","reason":"auto: no usable cgroup v2"#),
        "{log}"
    );
}
