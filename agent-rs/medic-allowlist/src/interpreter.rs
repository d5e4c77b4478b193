//! Interpreters: what the kernel runs when a verified script starts with `#!`.
//!
//! # Design
//!
//! A script's `#!` line names a program that the kernel starts **by its path**, as root, with
//! the script as its argument. A listed, root-owned script is only as safe as that program: if
//! someone else can change the file at that path — or a directory or a symbolic link on the way
//! to it — they run their code as root. So the verifier reads the `#!` line from the very bytes
//! that will run (the sealed copy made by `exec_copy`), parses it as the kernel does
//! (`shebang`), and holds the interpreter to the trust rules of scripts:
//!
//! - The path is absolute. It is resolved one component at a time ([`walk`], never with a
//!   `canonicalize`, which would hide where the links sit): every directory that holds a
//!   component must be owned by root or the policy's owner and not writable by its group or
//!   others (a root-owned sticky directory is accepted, as for scripts), and every symbolic link
//!   followed must be owned by root or the policy's owner. Links are followed — on a merged-/usr
//!   system `/bin/sh` goes through `/bin -> usr/bin` — at most [`MAX_SYMLINKS`] of them.
//! - The file is regular, owned by root or the policy's owner, not writable by its group or
//!   others, executable, and has neither the setuid nor the setgid bit.
//! - An interpreter that is itself a `#!` script is checked the same way, at most
//!   [`MAX_INTERPRETER_DEPTH`] interpreters in a row (a kernel's nesting limit).
//! - `#!/usr/bin/env NAME` (any `env`, recognised by its name) makes `env` search `NAME` in the
//!   script's `PATH`, [`BASE_PATH`]. It is accepted only in that plain form (no options, no
//!   `VAR=value`), and only when what the search finds is listed in the allowlist's
//!   `[[interpreter]]` table. The search is the one `env` makes: the first directory of the path
//!   holding an entry of that name wins. Each directory searched must be trusted **and closed
//!   to others even when sticky**: an entry someone adds later would be found instead.
//!
//! A listing ([`Interpreter`]) may also pin an interpreter's SHA-256. It never relaxes the rules
//! above: a hash covers one file, not the modules and libraries an interpreter loads from its
//! own directories, which only their ownership protects. A listing matches an interpreter by any
//! name it was reached by: the path written (or found in `PATH`), a symbolic link to the file
//! followed on the way, or the real file — so a listing of `/usr/bin/python3` matches where it
//! links to `python3.11`.
//!
//! Limits of the check: the kernel opens the interpreter by path a moment after the check; only
//! root or the policy's owner can change it in between (a pinned hash cannot cover that window
//! as the script's sealed copy does). What an interpreter loads or runs afterwards — its
//! modules, the commands of the script — is protected by the ownership of its directories and
//! by the fixed [`BASE_PATH`], not by this check.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::digest::Sha256;
use crate::file::{FilePolicy, Owner, Sticky, directory_refusal, execution_refusal, file_refusal};
use crate::load::{LoadError, MAX_INTERPRETERS, Problem, entry_path_problem};
use crate::refusal::{Reason, Refusal};
use crate::shebang::{self, SHEBANG_LEN, Shebang};

/// The search path every script gets from the agent (its executor sets `PATH` to this), and so
/// where `#!/usr/bin/env NAME` finds `NAME`.
pub const BASE_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// The most interpreters in a row: a script's, its interpreter's if that is a `#!` script too,
/// and so on (`env` and the program it finds count as two). 4 is the nesting limit of older
/// kernels (`BINPRM_MAX_RECURSION`); Linux 5.8 and later allow one more, which is refused here.
pub const MAX_INTERPRETER_DEPTH: usize = 4;

/// The most symbolic links followed to reach one interpreter (the kernel's `MAXSYMLINKS`).
pub const MAX_SYMLINKS: usize = 40;

/// One `[[interpreter]]` listing: an interpreter `#!/usr/bin/env NAME` may find, optionally
/// with the SHA-256 its file must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    path: PathBuf,
    sha256: Option<Sha256>,
}

impl Interpreter {
    /// A listing of the interpreter at `path`, which must be absolute and normalized
    /// (`path_not_absolute`, `path_not_canonical`, as for a script's path).
    pub fn new(path: PathBuf, sha256: Option<Sha256>) -> Result<Self, Problem> {
        entry_path_problem(&path).map_or(Ok(Self { path, sha256 }), Err)
    }

    /// The interpreter's path, as listed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SHA-256 the interpreter's file must have, if the listing pins one.
    pub fn sha256(&self) -> Option<Sha256> {
        self.sha256
    }
}

/// The allowlist's `[[interpreter]]` table, by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interpreters {
    by_path: BTreeMap<PathBuf, Interpreter>,
}

impl Interpreters {
    /// No listing: `#!/usr/bin/env NAME` is refused, no interpreter hash is pinned.
    pub const NONE: Interpreters = Interpreters {
        by_path: BTreeMap::new(),
    };

    /// A table of these listings: at most [`MAX_INTERPRETERS`] (`too_many_interpreters`), each
    /// path once (`duplicate_interpreter`, reported for the later listing, counting from 1).
    pub fn new(listings: impl IntoIterator<Item = Interpreter>) -> Result<Self, LoadError> {
        let listings: Vec<Interpreter> = listings.into_iter().take(MAX_INTERPRETERS + 1).collect();
        if listings.len() > MAX_INTERPRETERS {
            return Err(LoadError::TooManyInterpreters);
        }
        let mut by_path = BTreeMap::new();
        for (index, listing) in listings.into_iter().enumerate() {
            if by_path.contains_key(&listing.path) {
                return Err(LoadError::Interpreter {
                    index: index + 1,
                    path: listing.path.display().to_string(),
                    problem: Problem::DuplicateInterpreter,
                });
            }
            by_path.insert(listing.path.clone(), listing);
        }
        Ok(Self { by_path })
    }

    /// The listing of exactly this path.
    pub fn get(&self, path: &Path) -> Option<&Interpreter> {
        self.by_path.get(path)
    }

    /// Every listing, by path.
    pub fn iter(&self) -> impl Iterator<Item = &Interpreter> {
        self.by_path.values()
    }

    /// How many listings.
    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// The listings that name one of `names`.
    fn matching<'a>(&'a self, names: &'a [PathBuf]) -> impl Iterator<Item = &'a Interpreter> {
        names.iter().filter_map(|name| self.by_path.get(name))
    }
}

fn untrusted(detail: String) -> Refusal {
    Refusal::new(Reason::InterpreterUntrusted, detail)
}

fn not_found(detail: String) -> Refusal {
    Refusal::new(Reason::InterpreterNotFound, detail)
}

/// A refusal of the script-file checks, restated for an interpreter: `setuid` stays, a missing
/// or unreadable file is `interpreter_not_found`, anything else `interpreter_untrusted`.
fn as_interpreter(refusal: Refusal, interpreter: &Path) -> Refusal {
    let reason = match refusal.reason() {
        Reason::Setuid => Reason::Setuid,
        Reason::FileNotFound | Reason::FileUnreadable => Reason::InterpreterNotFound,
        _ => Reason::InterpreterUntrusted,
    };
    Refusal::new(
        reason,
        format!(
            "interpreter {}: {}",
            interpreter.display(),
            refusal.detail()
        ),
    )
}

/// Where a path leads, found one component at a time.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Something other than a directory: its real path (no link, `.` or `..` in it), and every
    /// name it was reached by (the path as given, each link to it that was followed, the real
    /// path).
    File { real: PathBuf, names: Vec<PathBuf> },
    /// A directory, by its real path.
    Directory(PathBuf),
    /// A component does not exist (or is not a directory where more components follow).
    /// `closed`: nobody but root and the policy's owner could add it to the directory that
    /// lacks it (no sticky exception), so it stays missing.
    Missing { closed: bool },
}

/// The parts of a path to follow: names and `..` (`/` and `.` need no step).
fn parts(path: &Path) -> impl DoubleEndedIterator<Item = OsString> + '_ {
    path.components().filter_map(|component| match component {
        Component::Normal(name) => Some(name.to_owned()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// Follow the absolute `path` from `/`, one component at a time, checking every directory
/// that holds a component and every symbolic link on the way.
fn walk(path: &Path, policy: &FilePolicy) -> Result<End, Refusal> {
    let trusted_directory = |directory: &Path| -> Result<(), Refusal> {
        let metadata = fs::symlink_metadata(directory).map_err(|error| {
            not_found(format!("cannot inspect {}: {error}", directory.display()))
        })?;
        directory_refusal(directory, &metadata, policy, Sticky::Trusted)
            .map_or(Ok(()), |refusal| Err(as_interpreter(refusal, path)))
    };
    let missing = |holder: &Path| End::Missing {
        closed: fs::symlink_metadata(holder).is_ok_and(|metadata| {
            directory_refusal(holder, &metadata, policy, Sticky::Untrusted).is_none()
        }),
    };
    let mut names = vec![path.to_owned()];
    let mut directory = PathBuf::from("/");
    trusted_directory(&directory)?;
    let mut pending: VecDeque<OsString> = parts(path).collect();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            directory.pop(); // a real directory's parent, checked on the way down
            continue;
        }
        let here = directory.join(&part);
        let metadata = match fs::symlink_metadata(&here) {
            Ok(metadata) => metadata,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(missing(&directory));
            }
            Err(error) => {
                return Err(not_found(format!(
                    "cannot inspect {}: {error}",
                    here.display()
                )));
            }
        };
        if metadata.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(untrusted(format!(
                    "interpreter {}: more than {MAX_SYMLINKS} symbolic links on the way",
                    path.display()
                )));
            }
            if !policy.trusts_directory_owner(metadata.uid()) {
                return Err(untrusted(format!(
                    "interpreter {}: symbolic link {} is owned by uid {}, not root or uid {}",
                    path.display(),
                    here.display(),
                    metadata.uid(),
                    policy.owner_uid()
                )));
            }
            let target = fs::read_link(&here).map_err(|error| {
                not_found(format!("cannot read the link {}: {error}", here.display()))
            })?;
            if target.as_os_str().is_empty() {
                return Ok(missing(&directory));
            }
            if pending.is_empty() {
                names.push(here.clone()); // a link to the file itself: another of its names
            }
            if target.is_absolute() {
                directory = PathBuf::from("/");
            }
            for part in parts(&target).rev() {
                pending.push_front(part);
            }
            continue;
        }
        if metadata.is_dir() {
            trusted_directory(&here)?;
            directory = here;
            continue;
        }
        if !pending.is_empty() {
            return Ok(missing(&directory)); // a file where a directory should be (ENOTDIR)
        }
        names.push(here.clone());
        return Ok(End::File { real: here, names });
    }
    Ok(End::Directory(directory))
}

/// An interpreter found at `path`: its open file, its real path and the names it has.
struct Found {
    file: File,
    real: PathBuf,
    names: Vec<PathBuf>,
}

/// Resolve `path` and open the interpreter file at its end, checking it.
fn find(path: &Path, policy: &FilePolicy) -> Result<Found, Refusal> {
    // `Path::components` forgets a final `/` or `/.`, after which the kernel wants a directory
    // (`ENOTDIR` for a file): no such interpreter.
    let bytes = path.as_os_str().as_bytes();
    if bytes.ends_with(b"/") || bytes.ends_with(b"/.") {
        return Err(not_found(format!(
            "interpreter {}: a path ending in '/' or '/.' names a directory",
            path.display()
        )));
    }
    let (real, names) = match walk(path, policy)? {
        End::File { real, names } => (real, names),
        End::Directory(real) => {
            return Err(untrusted(format!(
                "interpreter {}: {} is a directory",
                path.display(),
                real.display()
            )));
        }
        End::Missing { .. } => {
            return Err(not_found(format!(
                "interpreter {}: no such file",
                path.display()
            )));
        }
    };
    // O_NOFOLLOW: `real` has no link left in it; if one appeared, it is refused, not followed.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&real)
        .map_err(|error| {
            not_found(format!(
                "cannot open interpreter {}: {error}",
                real.display()
            ))
        })?;
    let metadata = file
        .metadata()
        .map_err(|error| not_found(format!("cannot inspect {}: {error}", real.display())))?;
    if let Some(refusal) = file_refusal(&real, &metadata, policy, Owner::RootOrPolicy)
        .or_else(|| execution_refusal(&real, &metadata))
    {
        return Err(as_interpreter(refusal, path));
    }
    Ok(Found { file, real, names })
}

/// The path `#!/usr/bin/env NAME` runs: `NAME` in the first directory of `search` (the
/// scripts' `PATH`, [`BASE_PATH`]) that has it, each directory searched being trusted and
/// closed to others.
fn search_path(name: &OsStr, search: &str, policy: &FilePolicy) -> Result<PathBuf, Refusal> {
    let shown = Path::new(name).display();
    for entry in search.split(':').map(Path::new) {
        let directory = match walk(entry, policy)? {
            End::Directory(real) => real,
            // A missing directory (or a file in its place) cannot hold NAME; the search goes
            // on, as env's does, if nobody else could create it later.
            End::Missing { closed: true } | End::File { .. } => continue,
            End::Missing { closed: false } => {
                return Err(untrusted(format!(
                    "PATH directory {} is missing from a directory others may write to",
                    entry.display()
                )));
            }
        };
        let metadata = fs::symlink_metadata(&directory).map_err(|error| {
            not_found(format!("cannot inspect {}: {error}", directory.display()))
        })?;
        if let Some(refusal) = directory_refusal(&directory, &metadata, policy, Sticky::Untrusted) {
            return Err(untrusted(format!(
                "searching {shown} in PATH: {}",
                refusal.detail()
            )));
        }
        match fs::symlink_metadata(directory.join(name)) {
            Ok(_) => return Ok(entry.join(name)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(not_found(format!(
                    "cannot inspect {}: {error}",
                    entry.join(name).display()
                )));
            }
        }
    }
    Err(not_found(format!(
        "{shown} is in no directory of the scripts' PATH ({search})"
    )))
}

/// The program of `#!/usr/bin/env NAME`: a plain name (no option, no `VAR=value`, no path, no
/// blank: the kernel passes everything after `env` as one argument).
fn env_program<'a>(arg: Option<&'a [u8]>, holder: &str) -> Result<&'a OsStr, Refusal> {
    match arg {
        Some(name)
            if !name.is_empty()
                && name[0] != b'-'
                && !name
                    .iter()
                    .any(|&byte| byte == b'=' || byte == b'/' || byte.is_ascii_whitespace()) =>
        {
            Ok(OsStr::from_bytes(name))
        }
        _ => Err(Refusal::new(
            Reason::InterpreterInvalid,
            format!(
                "the #! line of {holder} runs env without a plain program name: only \
                 `#!/usr/bin/env NAME` is accepted (no options, no VAR=value, no path)"
            ),
        )),
    }
}

/// Check the pinned hashes of the listings that match `found`.
fn check_pins(found: &Found, listed: &Interpreters) -> Result<(), Refusal> {
    let pins: Vec<Sha256> = listed
        .matching(&found.names)
        .filter_map(Interpreter::sha256)
        .collect();
    if pins.is_empty() {
        return Ok(());
    }
    let actual = Sha256::of_reader(&found.file)
        .map_err(|error| not_found(format!("cannot read {}: {error}", found.real.display())))?;
    match pins.into_iter().find(|&expected| expected != actual) {
        Some(expected) => Err(Refusal::new(
            Reason::InterpreterHashMismatch,
            format!(
                "interpreter {} has SHA-256 {actual}, its [[interpreter]] listing says {expected}",
                found.real.display()
            ),
        )),
        None => Ok(()),
    }
}

/// Whether one of the names is `env`'s.
fn is_env(names: &[PathBuf]) -> bool {
    names
        .iter()
        .any(|name| name.file_name() == Some(OsStr::new("env")))
}

/// The first bytes of `file`, as many as hold a `#!` line, read without moving its offset.
pub(crate) fn read_head(file: &File) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; SHEBANG_LEN];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    head.truncate(filled);
    Ok(head)
}

/// Check every interpreter the kernel will run for a script whose (verified) bytes start with
/// `head`. Returns their real paths in the order they are started: empty for a binary.
pub(crate) fn check_interpreters(
    head: &[u8],
    policy: &FilePolicy,
    listed: &Interpreters,
) -> Result<Vec<PathBuf>, Refusal> {
    let mut chain = Vec::new();
    let mut head = head.to_vec();
    let mut holder = String::from("the script");
    loop {
        let (written, arg) = match shebang::parse(&head) {
            Shebang::None => return Ok(chain),
            Shebang::Invalid => {
                return Err(Refusal::new(
                    Reason::InterpreterInvalid,
                    format!(
                        "the #! line of {holder} names no interpreter, or one cut off by the \
                         {SHEBANG_LEN} bytes the kernel reads"
                    ),
                ));
            }
            Shebang::Interpreter { path, arg } => (PathBuf::from(OsStr::from_bytes(&path)), arg),
        };
        if chain.len() >= MAX_INTERPRETER_DEPTH {
            return Err(untrusted(format!(
                "{holder} is a #! script too: more than {MAX_INTERPRETER_DEPTH} interpreters \
                 in a row"
            )));
        }
        if !written.is_absolute() {
            return Err(Refusal::new(
                Reason::InterpreterNotAbsolute,
                format!(
                    "the #! line of {holder} names {}, a relative path: write the absolute one",
                    written.display()
                ),
            ));
        }
        let found = find(&written, policy)?;
        check_pins(&found, listed)?;
        chain.push(found.real.clone());
        let runs = if is_env(&found.names) {
            let name = env_program(arg.as_deref(), &holder)?;
            let program = find(&search_path(name, BASE_PATH, policy)?, policy)?;
            if listed.matching(&program.names).next().is_none() {
                return Err(Refusal::new(
                    Reason::InterpreterNotListed,
                    format!(
                        "the #! line of {holder} runs {} through env: {} is not listed as an \
                         [[interpreter]]",
                        Path::new(name).display(),
                        program.names.first().unwrap_or(&program.real).display()
                    ),
                ));
            }
            check_pins(&program, listed)?;
            chain.push(program.real.clone());
            program
        } else {
            found
        };
        head = read_head(&runs.file)
            .map_err(|error| not_found(format!("cannot read {}: {error}", runs.real.display())))?;
        holder = format!("interpreter {}", runs.real.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_accepts_a_plain_name_only() {
        assert_eq!(
            env_program(Some(b"python3"), "s").map(OsStr::to_owned),
            Ok("python3".into())
        );
        for bad in [
            &b""[..],
            b"-S python3",
            b"-i",
            b"A=1",
            b"/tmp/x",
            b"./x",
            b"python3 -u",
        ] {
            assert_eq!(
                env_program(Some(bad), "s").unwrap_err().reason(),
                Reason::InterpreterInvalid,
                "{bad:?}"
            );
        }
        assert_eq!(
            env_program(None, "s").unwrap_err().reason(),
            Reason::InterpreterInvalid
        );
    }

    #[test]
    fn merged_usr_links_are_followed_and_every_name_is_kept() {
        // This machine's /bin/sh, whatever it links to, is reached through root-owned
        // directories; the names start with the path as written and end with the real file.
        let End::File { real, names } = walk(Path::new("/bin/sh"), &FilePolicy::ROOT).unwrap()
        else {
            panic!("/bin/sh is not a file");
        };
        assert_eq!(names.first(), Some(&PathBuf::from("/bin/sh")));
        assert_eq!(names.last(), Some(&real));
        assert_eq!(fs::canonicalize("/bin/sh").unwrap(), real);
    }

    /// A private directory in /tmp (root-owned and sticky: trusted on the way to a file), and
    /// the policy trusting whoever runs the tests.
    fn scratch() -> (tempfile::TempDir, FilePolicy) {
        let dir = tempfile::tempdir().unwrap();
        let uid = fs::metadata(dir.path()).unwrap().uid();
        (dir, FilePolicy::owned_by(uid))
    }

    fn mkdir(path: &Path, mode: u32) {
        fs::create_dir(path).unwrap();
        fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }

    #[test]
    fn the_path_search_takes_the_first_match_and_skips_closed_missing_directories() {
        let (dir, policy) = scratch();
        let (first, second) = (dir.path().join("first"), dir.path().join("second"));
        mkdir(&first, 0o755);
        mkdir(&second, 0o755);
        fs::write(second.join("tool"), b"").unwrap();
        let search = format!(
            "{}:{}:{}",
            dir.path().join("missing").display(),
            first.display(),
            second.display()
        );
        let name = OsStr::new("tool");
        assert_eq!(search_path(name, &search, &policy), Ok(second.join("tool")));
        fs::write(first.join("tool"), b"").unwrap();
        assert_eq!(search_path(name, &search, &policy), Ok(first.join("tool")));
        let refused = search_path(OsStr::new("nothing"), &search, &policy).unwrap_err();
        assert_eq!(refused.reason(), Reason::InterpreterNotFound);
    }

    #[test]
    fn a_path_directory_others_may_add_to_is_refused_even_without_a_match_in_it() {
        let (dir, policy) = scratch();
        let (open, trusted) = (dir.path().join("open"), dir.path().join("trusted"));
        mkdir(&open, 0o755);
        mkdir(&trusted, 0o755);
        fs::write(trusted.join("tool"), b"").unwrap();
        let search = format!("{}:{}", open.display(), trusted.display());
        // World-writable, or sticky: either way someone else could add `tool` to it later, and
        // then that file would be the one env runs.
        for mode in [0o777, 0o1777, 0o775] {
            fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
            let refused = search_path(OsStr::new("tool"), &search, &policy).unwrap_err();
            assert_eq!(refused.reason(), Reason::InterpreterUntrusted, "{mode:o}");
        }
        // A missing directory in one that others may write to: they could create it.
        let under_open = format!("{}:{}", open.join("bin").display(), trusted.display());
        fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
        let refused = search_path(OsStr::new("tool"), &under_open, &policy).unwrap_err();
        assert_eq!(refused.reason(), Reason::InterpreterUntrusted);
    }

    #[test]
    fn dot_dot_and_missing_components_resolve_like_the_kernel() {
        let End::File { real, .. } =
            walk(Path::new("/usr/../usr/bin/./env"), &FilePolicy::ROOT).unwrap()
        else {
            panic!("not a file");
        };
        assert_eq!(real, fs::canonicalize("/usr/bin/env").unwrap());
        assert_eq!(
            walk(Path::new("/usr/bin/no-such-program"), &FilePolicy::ROOT).unwrap(),
            End::Missing { closed: true }
        );
        assert_eq!(
            walk(Path::new("/usr/bin/env/below"), &FilePolicy::ROOT).unwrap(),
            End::Missing { closed: true }
        );
        assert_eq!(
            walk(Path::new("/"), &FilePolicy::ROOT).unwrap(),
            End::Directory(PathBuf::from("/"))
        );
    }
}
