//! What `/proc` says about a process, and signalling a process only while it is still the one
//! that was looked at.
//!
//! # Design
//!
//! A pid read from `/proc` or `cgroup.procs` names a process only until that process is reaped;
//! then the number can be given to an unrelated process. [`signal_if`] closes that gap where the
//! kernel allows: it takes a pidfd on the number first (a pidfd names one process for good),
//! checks that the process behind it is still the one meant (by its start time, or its cgroup),
//! and signals through the pidfd. On kernels without pidfds (before 5.3) it checks and signals
//! by number, which leaves a window of a few system calls.

use std::fs;

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, kill_process, pidfd_open, pidfd_send_signal};

/// A process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Its id.
    pub pid: Pid,
    /// Its parent's id (0 for processes the kernel started).
    pub ppid: i32,
    /// When it started, in clock ticks after boot: with the pid, a process's identity.
    pub start: u64,
    /// Dead, waiting to be reaped: a zombie can no longer be signalled or fork.
    pub zombie: bool,
}

/// Read `/proc/<pid>/stat`; `None` when the process is gone.
pub fn stat(pid: Pid) -> Option<Stat> {
    parse_stat(
        pid,
        &fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).ok()?,
    )
}

fn parse_stat(pid: Pid, text: &str) -> Option<Stat> {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses itself:
    // the fields after it start after the last ") ".
    let (_, rest) = text.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let state = fields.first()?;
    Some(Stat {
        pid,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
        zombie: matches!(*state, "Z" | "X" | "x"),
    })
}

/// Every process on the host (that `/proc` shows), unordered.
pub fn processes() -> Vec<Stat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            let pid = Pid::from_raw(name.to_str()?.parse().ok()?)?;
            stat(pid)
        })
        .collect()
}

/// The cgroup v2 path of `pid` (the `0::` line of `/proc/<pid>/cgroup`), if it still runs.
pub fn cgroup_of(pid: Pid) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{}/cgroup", pid.as_raw_nonzero())).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
}

/// Send `signal` to `pid` if `still_meant(pid)` holds for the process behind that number at the
/// moment of sending (see the module's design). Whether it was sent.
pub fn signal_if(pid: Pid, signal: Signal, still_meant: impl Fn(Pid) -> bool) -> bool {
    match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(pidfd) => still_meant(pid) && pidfd_send_signal(&pidfd, signal).is_ok(),
        // No pidfds on this kernel: check, then signal by number.
        Err(Errno::NOSYS) => still_meant(pid) && kill_process(pid, signal).is_ok(),
        // ESRCH: gone already.
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        let pid = Pid::from_raw(42).unwrap();
        let line = "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 \
                    1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(
            parse_stat(pid, line),
            Some(Stat {
                pid,
                ppid: 7,
                start: 123_456,
                zombie: false
            })
        );
        let zombie = line.replace(") S 7", ") Z 7");
        assert!(parse_stat(pid, &zombie).unwrap().zombie);
        assert_eq!(parse_stat(pid, "42 (truncated"), None);
    }

    #[test]
    fn this_process_is_found_with_its_parent_and_cgroup() {
        let me = rustix::process::getpid();
        let mine = stat(me).unwrap();
        assert_eq!(
            mine.ppid,
            rustix::process::getppid().map_or(0, |parent| parent.as_raw_nonzero().get())
        );
        assert!(processes().iter().any(|process| process.pid == me));
        if std::path::Path::new("/sys/fs/cgroup").exists() {
            // Hosts without cgroup v2 have no `0::` line; where there is one it is a path.
            if let Some(path) = cgroup_of(me) {
                assert!(path.starts_with('/'), "{path}");
            }
        }
    }
}
