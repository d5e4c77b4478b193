//! What the tests that touch real files share: a sandbox directory that the trust rules accept,
//! the policy that trusts the user running the tests, and running what was verified.
//!
//! Files live in temporary directories under Cargo's target directory (not directly in /tmp,
//! where anyone may create the names a test uses). The tests that need a file or directory owned
//! by someone else `chown` and so need root, as `make agent-test` runs in this project.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::new_without_default,
    dead_code
)]

use std::fs::{self, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread::sleep;
use std::time::Duration;

use medic_allowlist::{
    FilePolicy, Interpreters, Reason, Refusal, Sha256, VerifiedScript, open_verified_script,
};
use tempfile::TempDir;

pub const SCRIPT: &[u8] = b"#!/bin/sh\necho \"verified $1\"\n";
pub const NOBODY: u32 = 65_534;

pub struct Sandbox {
    pub dir: TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for directory in base.ancestors() {
            let metadata = fs::metadata(directory).unwrap();
            let mode = metadata.mode();
            let sticky_root = mode & 0o1000 != 0 && metadata.uid() == 0;
            assert!(
                mode & 0o022 == 0 || sticky_root,
                "{} is writable by others, so every script below it is rightly refused: \
                 put the target directory (CARGO_TARGET_DIR) somewhere safe",
                directory.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("allowlist-")
            .tempdir_in(base)
            .unwrap();
        fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &[u8], mode: u32) -> PathBuf {
        let path = self.path(name);
        let mut file = fs::File::create(&path).unwrap();
        file.write_all(content).unwrap();
        drop(file);
        fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        path
    }

    pub fn subdir(&self, name: &str, mode: u32) -> PathBuf {
        let path = self.path(name);
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        path
    }
}

/// The uid the tests run as, read from a file they created (no unsafe `geteuid`).
pub fn my_uid(sandbox: &Sandbox) -> u32 {
    fs::metadata(sandbox.dir.path()).unwrap().uid()
}

pub fn policy(sandbox: &Sandbox) -> FilePolicy {
    FilePolicy::owned_by(my_uid(sandbox))
}

pub fn require_root(sandbox: &Sandbox) {
    assert_eq!(
        my_uid(sandbox),
        0,
        "this test chowns files to another user: run it as root (make agent-test does)"
    );
}

/// Verify `path` as holding `content`, trusting the test's user, with no `[[interpreter]]`.
pub fn verify(sandbox: &Sandbox, path: &Path, content: &[u8]) -> Result<VerifiedScript, Refusal> {
    open_verified_script(
        path,
        Sha256::of(content),
        &policy(sandbox),
        &Interpreters::NONE,
    )
}

pub fn refusal(path: &Path, sha256: Sha256, policy: &FilePolicy) -> Reason {
    open_verified_script(path, sha256, policy, &Interpreters::NONE)
        .unwrap_err()
        .reason()
}

/// Spawn, retrying while another test's fork still holds a just-written file open for writing
/// (ETXTBSY), a known race of tests that write and execute files in parallel.
pub fn run(command: &mut Command) -> Output {
    for _ in 0..50 {
        match command.output() {
            Err(error) if error.raw_os_error() == Some(libc::ETXTBSY) => {
                sleep(Duration::from_millis(20))
            }
            result => return result.unwrap(),
        }
    }
    panic!("the script stayed busy (ETXTBSY)")
}

/// Let the child inherit `fd`: `#!` scripts need it, since their interpreter opens
/// /proc/self/fd/N itself. This is what the agent does in its `pre_exec` hook.
#[allow(unsafe_code)]
pub fn inherit_fd(command: &mut Command, fd: i32) -> &mut Command {
    // SAFETY: fcntl is async-signal-safe, and the closure touches nothing else.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

pub fn system_binary(name: &str) -> PathBuf {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("no {name} binary"))
}
