//! The agent's side of the `subreaper` containment: starting a [`super::reaper`] per execution
//! and following what it reports.
//!
//! # Design
//!
//! The agent runs its own binary (`/proc/self/exe`, so the reaper is always the same version
//! as the agent, even after an upgrade replaced the file) with the hidden `__reap` command, the
//! script's command line after it, and one end of a socket pair as its standard input. The
//! reaper's first line (`started <pid>` or `failed <errno>`) is read while spawning, with a
//! short blocking read: the script then starts (or fails to) exactly as a direct spawn would,
//! and an execution is `RUNNING` only once its script runs. Every later line is read
//! asynchronously, into a buffer kept across reads, so a `select!` may drop a read midway.
//!
//! The agent never reaps anything but its reaper: the script and its descendants are the
//! reaper's children, so the agent's runtime keeps the only `waitpid` it does (on the reaper).

use std::io::{self, ErrorKind, Read as _};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

/// How long the reaper may take to start the script.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest line a reaper writes.
const MAX_LINE: usize = 128;

/// Where the reaper program is: the agent's own binary.
#[derive(Debug, Clone)]
pub struct Reaper {
    program: PathBuf,
}

impl Reaper {
    /// Prove that the mode works here: the kernel has `PR_SET_CHILD_SUBREAPER` (3.4), `/proc` is
    /// mounted (the reaper lists descendants there), and the agent's binary can be run again.
    pub fn check() -> Result<Self, String> {
        let me = rustix::process::getpid();
        rustix::process::set_child_subreaper(Some(me))
            .and_then(|()| rustix::process::set_child_subreaper(None))
            .map_err(|error| format!("PR_SET_CHILD_SUBREAPER is not available: {error}"))?;
        if super::procfs::stat(me).is_none() {
            return Err("/proc is not mounted: descendants cannot be listed".into());
        }
        let program = PathBuf::from("/proc/self/exe");
        std::fs::metadata(&program)
            .map_err(|error| format!("cannot find the agent's own binary: {error}"))?;
        Ok(Self { program })
    }

    /// The program to start.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// A socket pair: the agent's end, and the reaper's (its standard input).
    pub fn channel() -> io::Result<(StdUnixStream, OwnedFd)> {
        let (ours, theirs) = StdUnixStream::pair()?;
        Ok((ours, OwnedFd::from(theirs)))
    }
}

/// One execution's reaper, as the agent follows it.
#[derive(Debug)]
pub struct Session {
    control: UnixStream,
    buffer: Vec<u8>,
    status: Option<ExitStatus>,
    done: Option<(usize, usize)>,
    asked: bool,
}

/// A line from the reaper.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Started,
    Failed(i32),
    Exited(i32),
    Done(usize, usize),
}

fn parse(line: &str) -> Option<Line> {
    let (word, rest) = line.split_once(' ')?;
    let mut numbers = rest.split(' ');
    let mut next = || numbers.next()?.parse::<i64>().ok();
    Some(match word {
        "started" => {
            next()?;
            Line::Started
        }
        "failed" => Line::Failed(i32::try_from(next()?).ok()?),
        "exited" => Line::Exited(i32::try_from(next()?).ok()?),
        "done" => Line::Done(
            usize::try_from(next()?).ok()?,
            usize::try_from(next()?).ok()?,
        ),
        _ => return None,
    })
}

fn garbled() -> io::Error {
    io::Error::new(
        ErrorKind::InvalidData,
        "the reaper said something unexpected",
    )
}

impl Session {
    /// Wait (blocking, briefly) for the reaper to start the script. The error is the script's
    /// start failure, as a direct spawn would report it.
    pub fn start(mut control: StdUnixStream) -> io::Result<Self> {
        control.set_read_timeout(Some(START_TIMEOUT))?;
        let mut buffer = Vec::new();
        let mut chunk = [0_u8; MAX_LINE];
        let line = loop {
            if let Some(end) = buffer.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                break String::from_utf8_lossy(&line[..end]).into_owned();
            }
            if buffer.len() > MAX_LINE {
                return Err(garbled());
            }
            match control.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the reaper ended before starting the script",
                    ));
                }
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        };
        match parse(&line) {
            Some(Line::Started) => {}
            Some(Line::Failed(errno)) => return Err(io::Error::from_raw_os_error(errno)),
            _ => return Err(garbled()),
        }
        control.set_read_timeout(None)?;
        control.set_nonblocking(true)?;
        Ok(Self {
            control: UnixStream::from_std(control)?,
            buffer,
            status: None,
            done: None,
            asked: false,
        })
    }

    /// The next line (cancel-safe: what was read stays in the buffer).
    async fn line(&mut self) -> io::Result<Line> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return parse(&String::from_utf8_lossy(&line[..end])).ok_or_else(garbled);
            }
            if self.buffer.len() > MAX_LINE {
                return Err(garbled());
            }
            let mut chunk = [0_u8; MAX_LINE];
            let read = self.control.read(&mut chunk).await?;
            if read == 0 {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the reaper ended without reporting (was it killed?)",
                ));
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// Read until the line that tells what is asked for.
    async fn until(&mut self, exited: bool) -> io::Result<()> {
        while (exited && self.status.is_none()) || (!exited && self.done.is_none()) {
            match self.line().await? {
                Line::Exited(raw) => self.status = Some(ExitStatus::from_raw(raw)),
                Line::Done(killed, survivors) => {
                    self.done = Some((killed, survivors));
                    if self.status.is_none() {
                        return Err(garbled());
                    }
                }
                Line::Started | Line::Failed(_) => return Err(garbled()),
            }
        }
        Ok(())
    }

    /// Wait for the script to exit (cancel-safe).
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.until(true).await?;
        self.status.ok_or_else(garbled)
    }

    /// Ask the reaper to end everything, and wait for the script's status.
    pub async fn end(&mut self) -> io::Result<ExitStatus> {
        if !self.asked {
            self.asked = true;
            // A reaper that is gone already shows as a missing report below.
            let _ = self.control.write_all(b"T").await;
        }
        self.wait().await
    }

    /// Wait for the reaper to have ended every descendant: how many processes it signalled, and
    /// how many survived.
    pub async fn finish(&mut self) -> io::Result<(usize, usize)> {
        self.until(false).await?;
        self.done.ok_or_else(garbled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaper_lines_parse_and_nonsense_does_not() {
        assert_eq!(parse("started 42"), Some(Line::Started));
        assert_eq!(parse("failed 2"), Some(Line::Failed(2)));
        assert_eq!(parse("exited 3840"), Some(Line::Exited(3840)));
        assert_eq!(parse("done 3 0"), Some(Line::Done(3, 0)));
        for nonsense in ["", "started", "exited x", "done 1", "hello 1", "done -1 0"] {
            assert_eq!(parse(nonsense), None, "{nonsense}");
        }
    }
}
