//! The private, immutable copy of a script that the agent executes.
//!
//! # Design
//!
//! Hashing a file and then executing it by path (or by a descriptor of it) leaves a window:
//! the file's owner can rewrite it in place — open and write, as `cp` does — after the hash and
//! before, or while, the kernel and the interpreter read it. So the bytes are copied while they
//! are hashed, and the copy is what runs:
//!
//! - **Linux**: a memfd (`memfd_create` with `MFD_CLOEXEC | MFD_ALLOW_SEALING`, plus
//!   `MFD_EXEC` where the kernel knows it — on kernels before 6.3 that flag is `EINVAL` and
//!   memfds are executable anyway). Once filled it is sealed (`F_SEAL_WRITE | F_SEAL_SHRINK |
//!   F_SEAL_GROW | F_SEAL_SEAL`): nobody, root included, can change its bytes any more. It is
//!   then re-opened read-only through `/proc/self/fd` and the read-write descriptor is closed,
//!   because a kernel may refuse to execute a file that has a writable descriptor open
//!   (`ETXTBSY`).
//! - **Elsewhere (macOS)**: the copy is written into a new directory of mode 0700 under the
//!   agent's temporary directory, re-opened read-only (and checked to be the same file), then
//!   removed from the directory, which is removed too: only the open descriptor is left. This
//!   path is compiled and tested on Linux too (in tests) but has never been built on macOS here.
//!
//! At most [`MAX_SCRIPT_LEN`] bytes are copied: the copy lives in memory (on Linux) for as long
//! as the script runs, and the agent runs several at once.

use std::fs::File;
use std::io::{self, Write};

use crate::digest::Sha256;

/// The largest script (or program) the agent executes, in bytes: 32 MiB. Larger ones are
/// refused with `script_too_large`.
pub const MAX_SCRIPT_LEN: u64 = 32 * 1024 * 1024;

/// Why a copy could not be made.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// The source has more than [`MAX_SCRIPT_LEN`] bytes.
    TooLarge,
    /// Reading the source failed.
    Read(io::Error),
    /// Making, writing or sealing the copy failed.
    Copy(io::Error),
}

/// Copy everything `source` yields into `copy`, returning its SHA-256.
fn hash_into(source: &File, copy: &mut File) -> Result<Sha256, CopyError> {
    enum Stop {
        TooLarge,
        Write,
    }
    let mut stop = None;
    let mut copied = 0u64;
    let hashed = Sha256::of_reader_with(source, |block| {
        copied += block.len() as u64;
        if copied > MAX_SCRIPT_LEN {
            stop = Some(Stop::TooLarge);
            return Err(io::Error::other("too large"));
        }
        copy.write_all(block)
            .inspect_err(|_| stop = Some(Stop::Write))
    });
    match (hashed, stop) {
        (Ok(sha256), _) => Ok(sha256),
        (Err(_), Some(Stop::TooLarge)) => Err(CopyError::TooLarge),
        (Err(error), Some(Stop::Write)) => Err(CopyError::Copy(error)),
        (Err(error), None) => Err(CopyError::Read(error)),
    }
}

/// Copy `source` (from its current offset, the start for a freshly opened file) into a new
/// private, immutable file, hashing the bytes on the way. Returns the copy, open read-only at
/// offset 0, and the SHA-256 of its bytes.
#[cfg(target_os = "linux")]
pub(crate) fn copy_for_exec(source: &File) -> Result<(File, Sha256), CopyError> {
    use std::os::fd::AsRawFd;

    use rustix::fs::{MemfdFlags, SealFlags, fcntl_add_seals, memfd_create};
    use rustix::io::Errno;

    const NAME: &str = "medic-script";
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let memfd = match memfd_create(NAME, flags | MemfdFlags::EXEC) {
        Err(Errno::INVAL) => memfd_create(NAME, flags), // a kernel before 6.3
        created => created,
    }
    .map_err(|errno| CopyError::Copy(errno.into()))?;
    let mut writer = File::from(memfd);
    let sha256 = hash_into(source, &mut writer)?;
    fcntl_add_seals(
        &writer,
        SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )
    .map_err(|errno| CopyError::Copy(errno.into()))?;
    let reader =
        File::open(format!("/proc/self/fd/{}", writer.as_raw_fd())).map_err(CopyError::Copy)?;
    drop(writer);
    Ok((reader, sha256))
}

#[cfg(not(target_os = "linux"))]
pub(crate) use private_file::copy_for_exec;

/// The copy as a root-only file that is removed once open: for systems without memfds.
#[cfg(any(not(target_os = "linux"), test))]
mod private_file {
    use std::fs::{self, DirBuilder, File, OpenOptions};
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::{CopyError, hash_into};
    use crate::digest::Sha256;

    static COPIES: AtomicU64 = AtomicU64::new(0);

    pub(crate) fn copy_for_exec(source: &File) -> Result<(File, Sha256), CopyError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let directory = std::env::temp_dir().join(format!(
            "medic-script-{}-{nanos}-{}",
            std::process::id(),
            COPIES.fetch_add(1, Ordering::Relaxed)
        ));
        // A new directory (never an existing one: whoever made it could swap what is inside)
        // that only its owner, the agent, can enter.
        DirBuilder::new()
            .mode(0o700)
            .create(&directory)
            .map_err(CopyError::Copy)?;
        let path = directory.join("script");
        let copied = (|| {
            let mut writer = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o500)
                .open(&path)
                .map_err(CopyError::Copy)?;
            let sha256 = hash_into(source, &mut writer)?;
            let reader = File::open(&path).map_err(CopyError::Copy)?;
            // The same file as the one written, not one put in its place.
            let (written, read) = (
                writer.metadata().map_err(CopyError::Copy)?,
                reader.metadata().map_err(CopyError::Copy)?,
            );
            if (written.dev(), written.ino()) != (read.dev(), read.ino()) {
                return Err(CopyError::Copy(std::io::Error::other(
                    "the copy was replaced while it was written",
                )));
            }
            Ok((reader, sha256))
        })();
        // Only the descriptor stays: nothing is left to clean up, whatever happens next.
        let _ = fs::remove_file(&path);
        let _ = fs::remove_dir(&directory);
        copied
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;

    #[cfg(target_os = "linux")]
    use rustix::fs::SealFlags;

    use super::*;

    fn source(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file
    }

    fn read_all(mut file: &File) -> Vec<u8> {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_memfd_copy_holds_the_hashed_bytes_and_cannot_be_changed() {
        let (copy, sha256) = copy_for_exec(&source(b"#!/bin/sh\necho hi\n")).unwrap();
        assert_eq!(sha256, Sha256::of(b"#!/bin/sh\necho hi\n"));
        assert_eq!(read_all(&copy), b"#!/bin/sh\necho hi\n");
        // Sealed: even a read-write re-open cannot write, grow or shrink it.
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&copy));
        let mut writable = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(writable.write_all(b"#!/bin/bash").is_err());
        assert!(writable.set_len(1).is_err());
        assert!(writable.set_len(1 << 20).is_err());
        let seals = rustix::fs::fcntl_get_seals(&copy).unwrap();
        let wanted = SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
        assert!(seals.contains(wanted), "{seals:?}");
        // Executable (MFD_EXEC, or a kernel that predates the flag).
        assert_ne!(copy.metadata().unwrap().mode() & 0o111, 0);
    }

    #[test]
    fn the_private_file_copy_holds_the_hashed_bytes_and_leaves_nothing_behind() {
        let (copy, sha256) = private_file::copy_for_exec(&source(b"abc")).unwrap();
        assert_eq!(sha256, Sha256::of(b"abc"));
        assert_eq!(read_all(&copy), b"abc");
        let metadata = copy.metadata().unwrap();
        assert_eq!(metadata.nlink(), 0, "the copy is removed once open");
        assert_eq!(metadata.mode() & 0o7777, 0o500);
    }

    #[test]
    fn copies_stop_past_the_limit() {
        let big = source(&vec![b'x'; usize::try_from(MAX_SCRIPT_LEN).unwrap() + 1]);
        assert!(matches!(copy_for_exec(&big), Err(CopyError::TooLarge)));
        let exact = source(&vec![b'x'; usize::try_from(MAX_SCRIPT_LEN).unwrap()]);
        assert!(copy_for_exec(&exact).is_ok());
    }
}
