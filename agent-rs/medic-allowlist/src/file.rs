//! Opening files that only trusted users can have written, and verifying scripts into the
//! sealed copy that will be executed.
//!
//! The order of checks is fixed (and documented in `docs/allowlist.md`): the path's spelling,
//! then every directory from `/` down to the file's parent, then the file itself, opened once
//! without following a final symbolic link. Everything about the file — type, owner, mode — is
//! read from the open descriptor (`fstat`), never from the path again.
//!
//! A file owned by the trusted user and writable by nobody else can still be rewritten in place
//! by that user (an upgrade, `cp` over it) while it is being hashed or run. So the script's
//! bytes are **copied while they are hashed** into a private, immutable file (`exec_copy`: a
//! sealed memfd on Linux), and that copy is what is checked further (its `#!` line, see
//! `interpreter`) and what gets executed: the hash is always the hash of what runs.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::digest::Sha256;
use crate::exec_copy::{CopyError, MAX_SCRIPT_LEN, copy_for_exec};
use crate::interpreter::{Interpreters, check_interpreters, read_head};
use crate::refusal::{Reason, Refusal};

/// Whose files and directories are trusted.
///
/// A trusted file is owned by `owner_uid` and not writable by its group or by others; a trusted
/// directory is owned by root or `owner_uid`, and not writable by its group or by others. In
/// production the owner is root ([`FilePolicy::ROOT`], the default); tests, and unprivileged
/// trials, pass the uid they run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilePolicy {
    owner_uid: u32,
}

impl FilePolicy {
    /// Trust root only.
    pub const ROOT: FilePolicy = FilePolicy { owner_uid: 0 };

    /// Trust files owned by `uid`, and directories owned by `uid` or root.
    pub const fn owned_by(uid: u32) -> Self {
        Self { owner_uid: uid }
    }

    /// The uid that must own the file.
    pub const fn owner_uid(&self) -> u32 {
        self.owner_uid
    }

    /// Root or the owner: who may own a directory above a file, an interpreter, or a symbolic
    /// link on the way to one.
    pub(crate) fn trusts_directory_owner(&self, uid: u32) -> bool {
        uid == 0 || uid == self.owner_uid
    }
}

impl Default for FilePolicy {
    fn default() -> Self {
        Self::ROOT
    }
}

/// Group- and other-write permission bits.
const WRITABLE_BY_OTHERS: u32 = 0o022;
const STICKY: u32 = 0o1000;
/// Any execute permission bit.
const EXECUTABLE: u32 = 0o111;
/// The setuid and setgid bits.
const SET_ID: u32 = 0o6000;
/// `S_IFMT` and `S_IFREG` of `st_mode`, the same on every Unix.
const FILE_TYPE_MASK: u32 = 0o170_000;
const REGULAR_FILE: u32 = 0o100_000;

/// The problem with how a path is spelled, if any: it must be absolute and normalized (no `.`
/// or `..` components, no repeated or trailing `/`, no NUL byte) and name a file below `/`.
pub(crate) fn path_spelling_problem(path: &Path) -> Option<Refusal> {
    let text = path.as_os_str().as_encoded_bytes();
    if !path.is_absolute() {
        return Some(Refusal::new(
            Reason::PathNotAbsolute,
            format!("{} is not an absolute path", path.display()),
        ));
    }
    let normalized = text.len() > 1
        && !text.ends_with(b"/")
        && !text.windows(2).any(|pair| pair == b"//")
        && !text.contains(&0)
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    // Path::components() hides "/./" and "//"; the byte checks above catch those.
    let dot_segment = text
        .split(|&byte| byte == b'/')
        .any(|segment| segment == b"." || segment == b"..");
    if !normalized || dot_segment {
        return Some(Refusal::new(
            Reason::PathNotCanonical,
            format!(
                "{} is not a normalized path to a file (no '.', '..', repeated or trailing '/')",
                path.display()
            ),
        ));
    }
    None
}

/// Check every directory from `/` down to the parent of `path`.
fn check_directories(path: &Path, policy: &FilePolicy) -> Result<(), Refusal> {
    // Every ancestor of the file, its parent first.
    let mut directories: Vec<&Path> = path
        .parent()
        .map(Path::ancestors)
        .into_iter()
        .flatten()
        .collect();
    directories.reverse(); // from "/" down
    for directory in directories {
        let metadata = fs::symlink_metadata(directory)
            .map_err(|error| open_error(&error, directory, "directory above the script"))?;
        if metadata.file_type().is_symlink() {
            return Err(Refusal::new(
                Reason::SymlinkInPath,
                format!(
                    "{} is a symbolic link: list the real path of the file",
                    directory.display()
                ),
            ));
        }
        if !metadata.is_dir() {
            return Err(Refusal::new(
                Reason::FileNotFound,
                format!("{} is not a directory", directory.display()),
            ));
        }
        if let Some(refusal) = directory_refusal(directory, &metadata, policy, Sticky::Trusted) {
            return Err(refusal);
        }
    }
    Ok(())
}

/// Whether a root-owned sticky directory (`/tmp`) may be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sticky {
    /// Yes, on a path to a file: others may add entries there but cannot rename or remove
    /// ours, and the next component is checked in turn, so the path cannot be swapped.
    Trusted,
    /// No, where a name is searched for (a `PATH` directory): an entry someone else adds
    /// later could be what is found next time.
    Untrusted,
}

/// Why a directory cannot be trusted, if it cannot: an owner other than root or the policy's
/// (`directory_bad_owner`), or write permission for its group or others
/// (`directory_writable_by_others`), unless `sticky` accepts a root-owned sticky directory.
pub(crate) fn directory_refusal(
    directory: &Path,
    metadata: &fs::Metadata,
    policy: &FilePolicy,
    sticky: Sticky,
) -> Option<Refusal> {
    if !policy.trusts_directory_owner(metadata.uid()) {
        return Some(Refusal::new(
            Reason::DirectoryBadOwner,
            format!(
                "directory {} is owned by uid {}, not root or uid {}",
                directory.display(),
                metadata.uid(),
                policy.owner_uid
            ),
        ));
    }
    let sticky_root = metadata.mode() & STICKY != 0 && metadata.uid() == 0;
    if metadata.mode() & WRITABLE_BY_OTHERS != 0 && !(sticky_root && sticky == Sticky::Trusted) {
        return Some(Refusal::new(
            Reason::DirectoryWritableByOthers,
            format!(
                "directory {} is writable by its group or others (mode {:04o})",
                directory.display(),
                metadata.mode() & 0o7777
            ),
        ));
    }
    None
}

fn open_error(error: &io::Error, path: &Path, what: &str) -> Refusal {
    let reason = match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Reason::FileNotFound,
        _ if error.raw_os_error() == Some(libc::ELOOP) => Reason::SymlinkInPath,
        _ => Reason::FileUnreadable,
    };
    let detail = match reason {
        Reason::SymlinkInPath => format!(
            "{} is a symbolic link: list the real path of the file",
            path.display()
        ),
        _ => format!("cannot open {what} {}: {error}", path.display()),
    };
    Refusal::new(reason, detail)
}

/// Who may own a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The policy's owner only: the allowlist file and scripts.
    Policy,
    /// Root or the policy's owner: interpreters, which are the system's.
    RootOrPolicy,
}

/// Why an open file cannot be trusted, if it cannot: not a regular file (`not_regular_file`),
/// another owner (`bad_owner`), or write permission for its group or others
/// (`writable_by_others`).
pub(crate) fn file_refusal(
    path: &Path,
    metadata: &fs::Metadata,
    policy: &FilePolicy,
    owner: Owner,
) -> Option<Refusal> {
    if metadata.mode() & FILE_TYPE_MASK != REGULAR_FILE {
        return Some(Refusal::new(
            Reason::NotRegularFile,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let trusted_owner = match owner {
        Owner::Policy => metadata.uid() == policy.owner_uid,
        Owner::RootOrPolicy => policy.trusts_directory_owner(metadata.uid()),
    };
    if !trusted_owner {
        let expected = match owner {
            Owner::Policy => format!("uid {}", policy.owner_uid),
            Owner::RootOrPolicy => format!("root or uid {}", policy.owner_uid),
        };
        return Some(Refusal::new(
            Reason::BadOwner,
            format!(
                "{} is owned by uid {}, not {expected}",
                path.display(),
                metadata.uid()
            ),
        ));
    }
    if metadata.mode() & WRITABLE_BY_OTHERS != 0 {
        return Some(Refusal::new(
            Reason::WritableByOthers,
            format!(
                "{} is writable by its group or others (mode {:04o})",
                path.display(),
                metadata.mode() & 0o7777
            ),
        ));
    }
    None
}

/// Why a trusted file cannot be executed by the agent, if it cannot: no execute bit
/// (`not_executable`), or the setuid or setgid bit (`setuid`) — a file anyone on the host can
/// run with its owner's or group's rights is not one the agent should run, and the copy it
/// executes would not carry the bit anyway.
pub(crate) fn execution_refusal(path: &Path, metadata: &fs::Metadata) -> Option<Refusal> {
    if metadata.mode() & EXECUTABLE == 0 {
        return Some(Refusal::new(
            Reason::NotExecutable,
            format!(
                "{} has no execute permission (mode {:04o})",
                path.display(),
                metadata.mode() & 0o7777
            ),
        ));
    }
    if metadata.mode() & SET_ID != 0 {
        return Some(Refusal::new(
            Reason::Setuid,
            format!(
                "{} has the setuid or setgid bit (mode {:04o})",
                path.display(),
                metadata.mode() & 0o7777
            ),
        ));
    }
    None
}

/// Open a file that only trusted users can have written: the path is absolute and normalized,
/// every directory above it is trusted, and the file — opened without following a symbolic
/// link — is a regular file owned by the policy's owner and not writable by group or others.
///
/// Used for the allowlist file itself, and as the first half of [`open_verified_script`].
pub fn open_trusted_file(path: &Path, policy: &FilePolicy) -> Result<File, Refusal> {
    if let Some(refusal) = path_spelling_problem(path) {
        return Err(refusal);
    }
    check_directories(path, policy)?;
    // O_NOFOLLOW: a final symbolic link fails (ELOOP) instead of being followed. O_NONBLOCK:
    // opening a FIFO must not hang the agent; it is refused as not a regular file below.
    // std adds O_CLOEXEC.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| open_error(&error, path, "file"))?;
    let metadata = file
        .metadata()
        .map_err(|error| open_error(&error, path, "file"))?;
    match file_refusal(path, &metadata, policy, Owner::Policy) {
        Some(refusal) => Err(refusal),
        None => Ok(file),
    }
}

/// Open the script at `path` once, verify it, and copy it to be executed: everything
/// [`open_trusted_file`] checks, an execute bit, no setuid or setgid bit, at most
/// [`MAX_SCRIPT_LEN`] bytes, a SHA-256 — computed over the bytes as they are copied — equal to
/// `sha256`, and then, read from the copy, the interpreters its `#!` line leads to (see
/// [`Interpreters`] for the rules; `interpreters` is the allowlist's `[[interpreter]]` table).
///
/// The returned [`VerifiedScript`] holds the copy; execute it through
/// [`VerifiedScript::exec_path`], never through `path`.
pub fn open_verified_script(
    path: &Path,
    sha256: Sha256,
    policy: &FilePolicy,
    interpreters: &Interpreters,
) -> Result<VerifiedScript, Refusal> {
    let file = open_trusted_file(path, policy)?;
    let metadata = file
        .metadata()
        .map_err(|error| open_error(&error, path, "script"))?;
    if let Some(refusal) = execution_refusal(path, &metadata) {
        return Err(refusal);
    }
    if metadata.len() > MAX_SCRIPT_LEN {
        return Err(too_large(path));
    }
    let (copy, actual) = copy_for_exec(&file).map_err(|error| match error {
        CopyError::TooLarge => too_large(path),
        CopyError::Read(error) => Refusal::new(
            Reason::FileUnreadable,
            format!("cannot read {}: {error}", path.display()),
        ),
        CopyError::Copy(error) => Refusal::new(
            Reason::ExecCopyFailed,
            format!(
                "cannot make the sealed copy of {} to execute: {error}",
                path.display()
            ),
        ),
    })?;
    if actual != sha256 {
        return Err(Refusal::new(
            Reason::HashMismatch,
            format!(
                "{} has SHA-256 {actual}, the allowlist says {sha256}",
                path.display()
            ),
        ));
    }
    // What the kernel reads to find the interpreter: the copy's first bytes, not the file's.
    let head = read_head(&copy).map_err(|error| {
        Refusal::new(
            Reason::ExecCopyFailed,
            format!("cannot read the copy of {}: {error}", path.display()),
        )
    })?;
    let chain = check_interpreters(&head, policy, interpreters)?;
    Ok(VerifiedScript {
        file: copy,
        path: path.to_owned(),
        sha256,
        interpreters: chain,
    })
}

fn too_large(path: &Path) -> Refusal {
    Refusal::new(
        Reason::ScriptTooLarge,
        format!(
            "{} is larger than {MAX_SCRIPT_LEN} bytes, the most the agent copies to execute",
            path.display()
        ),
    )
}

/// A script that passed every check, held as the private, immutable copy of the bytes that
/// were hashed. What is executed is this copy.
///
/// To run it, execute [`exec_path`](Self::exec_path) (`/proc/self/fd/N` on Linux, `/dev/fd/N`
/// elsewhere) in a child process. The copy is a sealed memfd on Linux (a root-only, already
/// removed file elsewhere): nobody can change its bytes, and the file at the listed path —
/// renamed over or rewritten in place after the check — is never what runs. For `#!` scripts
/// the interpreter opens the same path in the child, so the child must inherit the descriptor:
/// clear its close-on-exec flag in the child before `exec` (e.g. `fcntl(fd, F_SETFD, 0)` in a
/// `pre_exec` hook). Binaries run either way.
#[derive(Debug)]
pub struct VerifiedScript {
    file: File,
    path: PathBuf,
    sha256: Sha256,
    interpreters: Vec<PathBuf>,
}

impl VerifiedScript {
    /// The path the allowlist names (for logs; do not open or execute it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The verified SHA-256 of the copy.
    pub fn sha256(&self) -> Sha256 {
        self.sha256
    }

    /// The copy, open read-only.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The real paths of the interpreters that were checked, in the order the kernel starts
    /// them (empty for a binary).
    pub fn interpreters(&self) -> &[PathBuf] {
        &self.interpreters
    }

    /// The path that names the copy's descriptor in this process and in children that inherit
    /// it: what to execute.
    pub fn exec_path(&self) -> PathBuf {
        let fd = self.file.as_raw_fd();
        if cfg!(target_os = "linux") {
            PathBuf::from(format!("/proc/self/fd/{fd}"))
        } else {
            PathBuf::from(format!("/dev/fd/{fd}"))
        }
    }

    /// Give up the wrapper and keep the open copy.
    pub fn into_file(self) -> File {
        self.file
    }
}

impl AsFd for VerifiedScript {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spelling(path: &str) -> Option<Reason> {
        path_spelling_problem(Path::new(path)).map(|refusal| refusal.reason())
    }

    #[test]
    fn only_absolute_normalized_paths_to_a_file_are_accepted() {
        assert_eq!(spelling("/opt/medic/restart.sh"), None);
        assert_eq!(spelling("/restart.sh"), None);
        assert_eq!(spelling("opt/restart.sh"), Some(Reason::PathNotAbsolute));
        assert_eq!(spelling("./restart.sh"), Some(Reason::PathNotAbsolute));
        assert_eq!(spelling(""), Some(Reason::PathNotAbsolute));
        for path in [
            "/",
            "/opt/../tmp/x",
            "/opt/./x",
            "/opt//x",
            "//opt/x",
            "/opt/x/",
            "/opt/x/.",
            "/opt/x/..",
        ] {
            assert_eq!(spelling(path), Some(Reason::PathNotCanonical), "{path}");
        }
    }

    #[test]
    fn root_policy_is_the_default_and_trusts_root_directories_only() {
        assert_eq!(FilePolicy::default(), FilePolicy::ROOT);
        assert!(FilePolicy::ROOT.trusts_directory_owner(0));
        assert!(!FilePolicy::ROOT.trusts_directory_owner(1000));
        let user = FilePolicy::owned_by(1000);
        assert!(user.trusts_directory_owner(0) && user.trusts_directory_owner(1000));
        assert!(!user.trusts_directory_owner(1001));
    }
}
