//! The few system calls that need `unsafe`: what a child does between `fork` and `exec`, and the
//! descriptor sweeps of `close_range` (which neither `std` nor `rustix` offers safely).
//!
//! # Design
//!
//! Every process the agent starts (a script, or the reaper that runs one) gets a [`ChildSetup`]
//! installed as its `pre_exec` hook. In the child, before any of the script's code runs, it:
//!
//! 1. joins the execution's cgroup, when there is one, by writing `0` to the group's
//!    `cgroup.procs`, opened by the parent (one `write` on an already open descriptor);
//! 2. marks every descriptor from 3 up close-on-exec, except the script's own descriptor (a `#!`
//!    interpreter opens it by its `/proc/self/fd/N` path), so nothing the agent holds or
//!    inherited reaches the script.
//!
//! The hook runs in a forked copy of a multi-threaded process: it may only make
//! async-signal-safe calls and must not allocate, so it is plain system calls on numbers the
//! parent prepared. [`cloexec_inherited`] does the same sweep once in the agent itself at start,
//! for whatever started the agent left open.
//!
//! This is the crate's only `unsafe` code; each block says why it is sound.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// The highest descriptor the fallback loop visits when `close_range` is missing (Linux before
/// 5.11, macOS). The agent marks what it inherited close-on-exec at start by listing its open
/// descriptors, and opens nothing without close-on-exec itself, so this loop is a second line.
const FALLBACK_LIMIT: RawFd = 65_536;

/// What a child does before `exec`.
#[derive(Debug)]
pub struct ChildSetup {
    /// The execution cgroup's `cgroup.procs`, opened for writing (close-on-exec).
    join: Option<OwnedFd>,
    /// The one descriptor above 2 that must survive `exec`.
    keep: Option<RawFd>,
    /// Where the fallback loop stops: the soft descriptor limit, at most [`FALLBACK_LIMIT`].
    limit: RawFd,
}

impl ChildSetup {
    /// Join the cgroup whose `cgroup.procs` is `join` (if any) and keep only `keep` above 2.
    pub fn new(join: Option<OwnedFd>, keep: Option<RawFd>) -> Self {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let limit = RawFd::try_from(soft.min(FALLBACK_LIMIT as u64)).unwrap_or(FALLBACK_LIMIT);
        Self { join, keep, limit }
    }

    /// Install the setup on a `tokio` command.
    pub fn install(self, command: &mut tokio::process::Command) {
        // SAFETY: `run` only makes async-signal-safe system calls (write, close_range, fcntl)
        // on descriptors and numbers prepared before the fork, and allocates nothing, so it is
        // sound between fork and exec in a multi-threaded process.
        unsafe {
            command.pre_exec(move || self.run());
        }
    }

    /// Install the setup on a `std` command (the reaper runs scripts without a runtime).
    #[cfg(target_os = "linux")]
    pub fn install_std(self, command: &mut std::process::Command) {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: as in `install`: async-signal-safe system calls only, no allocation.
        unsafe {
            command.pre_exec(move || self.run());
        }
    }

    /// Runs in the child, between fork and exec.
    fn run(&self) -> io::Result<()> {
        if let Some(procs) = &self.join {
            loop {
                // SAFETY: `procs` is an open descriptor owned by this setup; the buffer is a
                // static one-byte string. write(2) is async-signal-safe.
                let written = unsafe { libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) };
                if written == 1 {
                    break;
                }
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
        match self.keep {
            Some(keep) if keep >= 3 => {
                cloexec_range(3, keep - 1, self.limit);
                cloexec_range(keep + 1, RawFd::MAX, self.limit);
            }
            _ => cloexec_range(3, RawFd::MAX, self.limit),
        }
        Ok(())
    }
}

/// Mark `first..=last` close-on-exec: one `close_range` where the kernel has it, else a loop
/// up to `limit`. Async-signal-safe.
fn cloexec_range(first: RawFd, last: RawFd, limit: RawFd) {
    if first > last {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let (Ok(low), Ok(high)) = (libc::c_uint::try_from(first), libc::c_uint::try_from(last))
        else {
            return;
        };
        // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only changes descriptor flags; it
        // takes plain integers and is a single system call (async-signal-safe).
        let done =
            unsafe { libc::syscall(libc::SYS_close_range, low, high, libc::CLOSE_RANGE_CLOEXEC) };
        if done == 0 {
            return;
        }
    }
    for fd in first..=last.min(limit) {
        // SAFETY: fcntl(F_SETFD) on a number that may not be an open descriptor: at worst it
        // fails with EBADF, which is ignored. async-signal-safe.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// Mark every descriptor from 3 up close-on-exec in the agent itself, so nothing inherited from
/// whatever started it (a shell, a supervisor, a test harness) can reach a script. Returns how
/// many were open and marked by the fallback (0 when `close_range` did it at once).
pub fn cloexec_inherited() -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as in `cloexec_range`: flags only, integers only.
        let done = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if done == 0 {
            return Ok(0);
        }
    }
    // Older kernels and macOS: list what is open (the listing's own descriptor is among them,
    // and gets marked too, harmlessly) and mark each.
    let listing = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    let open: Vec<RawFd> = std::fs::read_dir(listing)?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= 3)
        .collect();
    for fd in &open {
        // SAFETY: fcntl(F_SETFD) on a listed number; if it closed meanwhile it fails with EBADF.
        unsafe {
            libc::fcntl(*fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    Ok(open.len())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd as _;

    use rustix::io::FdFlags;

    use super::*;

    #[test]
    fn the_start_up_sweep_marks_inherited_descriptors_close_on_exec() {
        let file = std::fs::File::open("/dev/null").unwrap();
        rustix::io::fcntl_setfd(file.as_fd(), FdFlags::empty()).unwrap();
        cloexec_inherited().unwrap();
        let flags = rustix::io::fcntl_getfd(file.as_fd()).unwrap();
        assert!(flags.contains(FdFlags::CLOEXEC));
    }
}
