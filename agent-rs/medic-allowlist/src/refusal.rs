//! Why an execution was refused: a stable code and a human-readable detail.

use std::fmt;
use std::str::FromStr;

/// The reason for a refusal. Its [`as_str`](Reason::as_str) code is stable: it is sent to the
/// server, stored in the audit log and used as a metric label. New reasons may be added; a code
/// is never renamed or reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    /// No allowlist entry has the requested name.
    NotAllowlisted,
    /// The request names a script hash other than the allowlist's (the allowlist changed after
    /// the server checked the request).
    ExpectedHashMismatch,
    /// The request asks for more time than the entry allows.
    TimeoutTooLong,
    /// Fewer arguments than the entry's positional rules.
    MissingArgs,
    /// More arguments than the positional rules plus the allowed further ones.
    TooManyArgs,
    /// An argument does not satisfy its rule (or is too long, or holds a NUL byte).
    ArgNotAllowed,
    /// An environment variable the entry does not allow.
    EnvNotAllowed,
    /// An allowed environment variable with a value that is too long, holds a NUL byte, or
    /// breaks its name's value rule (a locale with `/`, a `TZ` naming a file).
    EnvValueInvalid,
    /// The file's path is not absolute.
    PathNotAbsolute,
    /// The file's path has `.` or `..` components, repeated or trailing slashes.
    PathNotCanonical,
    /// The path goes through a symbolic link, or is one.
    SymlinkInPath,
    /// A directory above the file is not owned by root or the trusted user.
    DirectoryBadOwner,
    /// A directory above the file is writable by its group or by others.
    DirectoryWritableByOthers,
    /// No file at the path.
    FileNotFound,
    /// The file cannot be opened or read.
    FileUnreadable,
    /// Not a regular file (a directory, device, FIFO, socket).
    NotRegularFile,
    /// The file is not owned by the trusted user.
    BadOwner,
    /// The file is writable by its group or by others.
    WritableByOthers,
    /// No execute permission bit is set.
    NotExecutable,
    /// The file's SHA-256 is not the one in the allowlist.
    HashMismatch,
    /// The script, or an interpreter it names, has the setuid or setgid bit.
    Setuid,
    /// The script is larger than [`MAX_SCRIPT_LEN`](crate::MAX_SCRIPT_LEN), the most the agent
    /// copies to execute.
    ScriptTooLarge,
    /// The sealed copy the agent executes could not be made (no memory or descriptors left, or
    /// the kernel forbids executable memory files).
    ExecCopyFailed,
    /// The `#!` line names no interpreter, one longer than the kernel reads, or `env` with
    /// options, assignments or a path instead of a plain name.
    InterpreterInvalid,
    /// The `#!` line names a relative path.
    InterpreterNotAbsolute,
    /// `#!/usr/bin/env NAME` where what `NAME` finds is not listed as an `[[interpreter]]`.
    InterpreterNotListed,
    /// The interpreter (or `NAME` in the search path) does not exist or cannot be read.
    InterpreterNotFound,
    /// The interpreter, a directory or a symbolic link on its way, is not trusted (owner, mode,
    /// type), there are too many symbolic links, or interpreters nest too deep.
    InterpreterUntrusted,
    /// The interpreter's SHA-256 is not the one its `[[interpreter]]` listing pins.
    InterpreterHashMismatch,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 29] = [
        Reason::NotAllowlisted,
        Reason::ExpectedHashMismatch,
        Reason::TimeoutTooLong,
        Reason::MissingArgs,
        Reason::TooManyArgs,
        Reason::ArgNotAllowed,
        Reason::EnvNotAllowed,
        Reason::EnvValueInvalid,
        Reason::PathNotAbsolute,
        Reason::PathNotCanonical,
        Reason::SymlinkInPath,
        Reason::DirectoryBadOwner,
        Reason::DirectoryWritableByOthers,
        Reason::FileNotFound,
        Reason::FileUnreadable,
        Reason::NotRegularFile,
        Reason::BadOwner,
        Reason::WritableByOthers,
        Reason::NotExecutable,
        Reason::HashMismatch,
        Reason::Setuid,
        Reason::ScriptTooLarge,
        Reason::ExecCopyFailed,
        Reason::InterpreterInvalid,
        Reason::InterpreterNotAbsolute,
        Reason::InterpreterNotListed,
        Reason::InterpreterNotFound,
        Reason::InterpreterUntrusted,
        Reason::InterpreterHashMismatch,
    ];

    /// The reasons the rule check ([`ScriptRules::check`], so [`Allowlist::check`] and
    /// [`RuleSet::check`]) can give, in its order; the others come from opening the file.
    ///
    /// [`ScriptRules::check`]: crate::ScriptRules::check
    /// [`Allowlist::check`]: crate::Allowlist::check
    /// [`RuleSet::check`]: crate::RuleSet::check
    pub const RULE_CHECKS: [Reason; 8] = [
        Reason::NotAllowlisted,
        Reason::ExpectedHashMismatch,
        Reason::TimeoutTooLong,
        Reason::MissingArgs,
        Reason::TooManyArgs,
        Reason::ArgNotAllowed,
        Reason::EnvNotAllowed,
        Reason::EnvValueInvalid,
    ];

    /// The stable code, e.g. `hash_mismatch`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::NotAllowlisted => "not_allowlisted",
            Reason::ExpectedHashMismatch => "expected_hash_mismatch",
            Reason::TimeoutTooLong => "timeout_too_long",
            Reason::MissingArgs => "missing_args",
            Reason::TooManyArgs => "too_many_args",
            Reason::ArgNotAllowed => "arg_not_allowed",
            Reason::EnvNotAllowed => "env_not_allowed",
            Reason::EnvValueInvalid => "env_value_invalid",
            Reason::PathNotAbsolute => "path_not_absolute",
            Reason::PathNotCanonical => "path_not_canonical",
            Reason::SymlinkInPath => "symlink_in_path",
            Reason::DirectoryBadOwner => "directory_bad_owner",
            Reason::DirectoryWritableByOthers => "directory_writable_by_others",
            Reason::FileNotFound => "file_not_found",
            Reason::FileUnreadable => "file_unreadable",
            Reason::NotRegularFile => "not_regular_file",
            Reason::BadOwner => "bad_owner",
            Reason::WritableByOthers => "writable_by_others",
            Reason::NotExecutable => "not_executable",
            Reason::HashMismatch => "hash_mismatch",
            Reason::Setuid => "setuid",
            Reason::ScriptTooLarge => "script_too_large",
            Reason::ExecCopyFailed => "exec_copy_failed",
            Reason::InterpreterInvalid => "interpreter_invalid",
            Reason::InterpreterNotAbsolute => "interpreter_not_absolute",
            Reason::InterpreterNotListed => "interpreter_not_listed",
            Reason::InterpreterNotFound => "interpreter_not_found",
            Reason::InterpreterUntrusted => "interpreter_untrusted",
            Reason::InterpreterHashMismatch => "interpreter_hash_mismatch",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not a known reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reason code {0:?}")]
pub struct UnknownReason(pub String);

impl FromStr for Reason {
    type Err = UnknownReason;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == code)
            .ok_or_else(|| UnknownReason(code.to_owned()))
    }
}

/// A refused execution: why (a stable code) and a detail for people. The detail names
/// positions, rules, paths and variable names, never argument or environment values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Refusal {
    reason: Reason,
    detail: String,
}

impl Refusal {
    /// A refusal for `reason`, explained by `detail`.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    /// Why, as a stable code.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The explanation for people.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_reason_has_a_distinct_snake_case_code_that_parses_back() {
        let codes: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(codes.len(), Reason::ALL.len());
        for reason in Reason::ALL {
            let code = reason.as_str();
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
            assert_eq!(code.parse::<Reason>(), Ok(reason));
        }
        assert!("nope".parse::<Reason>().is_err());
    }

    #[test]
    fn refusal_displays_code_then_detail() {
        let refusal = Refusal::new(Reason::HashMismatch, "file changed");
        assert_eq!(refusal.to_string(), "hash_mismatch: file changed");
        assert_eq!(refusal.reason(), Reason::HashMismatch);
        assert_eq!(refusal.detail(), "file changed");
    }
}
