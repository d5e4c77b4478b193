//! Opening files that only trusted users can have written, and verifying scripts by the
//! descriptor that will be executed.
//!
//! The order of checks is fixed (and documented in `docs/allowlist.md`): the path's spelling,
//! then every directory from `/` down to the file's parent, then the file itself, opened once
//! without following a final symbolic link. Everything about the file — type, owner, mode,
//! SHA-256 — is read from the open descriptor (`fstat`, `read`), never from the path again, and
//! the descriptor is what gets executed. A file owned by the trusted user and writable by nobody
//! else cannot be changed in place by anyone else either, so the hash stays true for as long as
//! the descriptor is open.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::digest::Sha256;
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

    fn trusts_directory_owner(&self, uid: u32) -> bool {
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
        if !policy.trusts_directory_owner(metadata.uid()) {
            return Err(Refusal::new(
                Reason::DirectoryBadOwner,
                format!(
                    "directory {} is owned by uid {}, not root or uid {}",
                    directory.display(),
                    metadata.uid(),
                    policy.owner_uid
                ),
            ));
        }
        // A root-owned sticky directory (`/tmp`) lets others add entries but not rename or
        // remove ours, and the next component is checked in turn: it cannot swap the path.
        let sticky_root = metadata.mode() & STICKY != 0 && metadata.uid() == 0;
        if metadata.mode() & WRITABLE_BY_OTHERS != 0 && !sticky_root {
            return Err(Refusal::new(
                Reason::DirectoryWritableByOthers,
                format!(
                    "directory {} is writable by its group or others (mode {:04o})",
                    directory.display(),
                    metadata.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
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
    if metadata.mode() & FILE_TYPE_MASK != REGULAR_FILE {
        return Err(Refusal::new(
            Reason::NotRegularFile,
            format!("{} is not a regular file", path.display()),
        ));
    }
    if metadata.uid() != policy.owner_uid {
        return Err(Refusal::new(
            Reason::BadOwner,
            format!(
                "{} is owned by uid {}, not uid {}",
                path.display(),
                metadata.uid(),
                policy.owner_uid
            ),
        ));
    }
    if metadata.mode() & WRITABLE_BY_OTHERS != 0 {
        return Err(Refusal::new(
            Reason::WritableByOthers,
            format!(
                "{} is writable by its group or others (mode {:04o})",
                path.display(),
                metadata.mode() & 0o7777
            ),
        ));
    }
    Ok(file)
}

/// Open the script at `path` once and verify the open file: everything
/// [`open_trusted_file`] checks, an execute bit, and a SHA-256 — computed by reading that very
/// descriptor — equal to `sha256`.
///
/// The returned [`VerifiedScript`] holds the descriptor; execute it through
/// [`VerifiedScript::exec_path`], never through `path`.
pub fn open_verified_script(
    path: &Path,
    sha256: Sha256,
    policy: &FilePolicy,
) -> Result<VerifiedScript, Refusal> {
    let mut file = open_trusted_file(path, policy)?;
    let metadata = file
        .metadata()
        .map_err(|error| open_error(&error, path, "script"))?;
    if metadata.mode() & EXECUTABLE == 0 {
        return Err(Refusal::new(
            Reason::NotExecutable,
            format!(
                "{} has no execute permission (mode {:04o})",
                path.display(),
                metadata.mode() & 0o7777
            ),
        ));
    }
    let actual = Sha256::of_reader(&file).map_err(|error| {
        Refusal::new(
            Reason::FileUnreadable,
            format!("cannot read {}: {error}", path.display()),
        )
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
    // Leave the descriptor at the start: where /dev/fd/N is a duplicate rather than a fresh
    // open (macOS), an interpreter shares this offset.
    file.seek(SeekFrom::Start(0)).map_err(|error| {
        Refusal::new(
            Reason::FileUnreadable,
            format!("cannot rewind {}: {error}", path.display()),
        )
    })?;
    Ok(VerifiedScript {
        file,
        path: path.to_owned(),
        sha256,
    })
}

/// A script file that passed every check, held open. What is executed is this descriptor.
///
/// To run it, execute [`exec_path`](Self::exec_path) (`/proc/self/fd/N` on Linux, `/dev/fd/N`
/// elsewhere) in a child process. The kernel resolves that path to the already-open file, so a
/// file renamed over the original path after the check is never what runs. For `#!` scripts the
/// interpreter opens the same path in the child, so the child must inherit the descriptor:
/// clear its close-on-exec flag in the child before `exec` (e.g. `fcntl(fd, F_SETFD, 0)` in a
/// `pre_exec` hook). Binaries run either way.
#[derive(Debug)]
pub struct VerifiedScript {
    file: File,
    path: PathBuf,
    sha256: Sha256,
}

impl VerifiedScript {
    /// The path the allowlist names (for logs; do not open or execute it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The verified SHA-256 of the open file.
    pub fn sha256(&self) -> Sha256 {
        self.sha256
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The path that names the open descriptor in this process and in children that inherit
    /// it: what to execute.
    pub fn exec_path(&self) -> PathBuf {
        let fd = self.file.as_raw_fd();
        if cfg!(target_os = "linux") {
            PathBuf::from(format!("/proc/self/fd/{fd}"))
        } else {
            PathBuf::from(format!("/dev/fd/{fd}"))
        }
    }

    /// Give up the wrapper and keep the open file.
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
