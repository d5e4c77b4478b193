//! Reading the allowlist file: TOML in, a valid [`Allowlist`] or the first problem out.
//!
//! The file is a security policy, so reading it is strict: unknown keys, duplicate names, a
//! relative path, a malformed hash, an ambiguous rule or an over-complex pattern make the whole
//! file invalid (the agent then runs nothing) rather than being skipped or guessed at.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::allowlist::{Allowlist, Script};
use crate::digest::Sha256;
use crate::file::{FilePolicy, open_trusted_file, path_spelling_problem};
use crate::interpreter::{Interpreter, Interpreters};
use crate::refusal::{Reason, Refusal};
use crate::rules::{PatternError, RestArguments, RulePosition, RuleSpec, ScriptRules, limits};

/// The format version this crate reads.
pub const FORMAT_VERSION: i64 = 1;
/// The largest allowlist file, in bytes.
pub const MAX_FILE_LEN: u64 = 1024 * 1024;
/// The most entries in one allowlist.
pub const MAX_SCRIPTS: usize = 1024;
/// The most `[[interpreter]]` listings in one allowlist.
pub const MAX_INTERPRETERS: usize = 64;

/// Why an allowlist could not be used. [`code`](LoadError::code) is a stable identifier.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file itself failed the trust checks (owner, mode, directories, path).
    #[error("the allowlist file cannot be trusted: {0}")]
    Untrusted(Refusal),
    /// The file opened but could not be read.
    #[error("cannot read the allowlist file: {0}")]
    Unreadable(io::Error),
    /// Larger than [`MAX_FILE_LEN`].
    #[error("the allowlist file is larger than {MAX_FILE_LEN} bytes")]
    TooLarge,
    /// Not UTF-8, not TOML, or not the shape of an allowlist (unknown or missing keys, wrong
    /// types). The message points at the line.
    #[error("the allowlist is not valid: {0}")]
    Invalid(String),
    /// `version` is not [`FORMAT_VERSION`].
    #[error("allowlist format version {0} is not supported (this verifier reads version 1)")]
    UnsupportedVersion(i64),
    /// More than [`MAX_SCRIPTS`] entries.
    #[error("the allowlist has more than {MAX_SCRIPTS} entries")]
    TooManyScripts,
    /// One entry is invalid.
    #[error("script entry {index} ({name:?}): {problem}")]
    Entry {
        /// Position of the entry in the file, from 1.
        index: usize,
        /// Its name as written.
        name: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// More than [`MAX_INTERPRETERS`] `[[interpreter]]` listings.
    #[error("the allowlist has more than {MAX_INTERPRETERS} [[interpreter]] listings")]
    TooManyInterpreters,
    /// One `[[interpreter]]` listing is invalid.
    #[error("interpreter listing {index} ({path:?}): {problem}")]
    Interpreter {
        /// Position of the listing in the file, from 1.
        index: usize,
        /// Its path as written.
        path: String,
        /// What is wrong with it: `path_not_absolute`, `path_not_canonical`,
        /// `invalid_sha256` or `duplicate_interpreter`.
        problem: Problem,
    },
}

impl LoadError {
    /// Every code [`code`](LoadError::code) can return.
    pub const CODES: [&'static str; 19] = [
        "untrusted_file",
        "unreadable",
        "too_large",
        "invalid_toml",
        "unsupported_version",
        "too_many_scripts",
        "invalid_name",
        "duplicate_name",
        "path_not_absolute",
        "path_not_canonical",
        "invalid_sha256",
        "invalid_timeout",
        "invalid_rule",
        "invalid_pattern",
        "too_many_args",
        "invalid_env_name",
        "forbidden_env_name",
        "too_many_interpreters",
        "duplicate_interpreter",
    ];

    /// A stable identifier of the kind of error, e.g. `invalid_toml` or `invalid_sha256`.
    pub fn code(&self) -> &'static str {
        match self {
            LoadError::Untrusted(_) => "untrusted_file",
            LoadError::Unreadable(_) => "unreadable",
            LoadError::TooLarge => "too_large",
            LoadError::Invalid(_) => "invalid_toml",
            LoadError::UnsupportedVersion(_) => "unsupported_version",
            LoadError::TooManyScripts => "too_many_scripts",
            LoadError::Entry { problem, .. } | LoadError::Interpreter { problem, .. } => {
                problem.code()
            }
            LoadError::TooManyInterpreters => "too_many_interpreters",
        }
    }
}

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The name is not 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit.
    #[error(
        "a name is 1 to {} characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
        limits::MAX_NAME_LEN
    )]
    InvalidName,
    /// An earlier entry has the same name.
    #[error("an earlier entry has the same name")]
    DuplicateName,
    /// The path is relative.
    #[error("path must be absolute")]
    PathNotAbsolute,
    /// The path is not normalized.
    #[error("path must be normalized: no '.', '..', repeated or trailing '/'")]
    PathNotCanonical,
    /// `sha256` is not 64 hexadecimal digits.
    #[error("sha256 must be 64 hexadecimal digits")]
    InvalidSha256,
    /// `timeout` is 0 or more than a day.
    #[error("timeout must be 1 to {} seconds", limits::MAX_TIMEOUT_SECONDS)]
    InvalidTimeout,
    /// An argument rule is not exactly one of `fixed`, `one_of`, `pattern`, or is out of bounds.
    #[error("{position}: {message}")]
    InvalidRule {
        /// `argument N` or `rest`.
        position: String,
        /// What is wrong.
        message: String,
    },
    /// A pattern does not compile or is too large.
    #[error("{position}: invalid pattern: {error}")]
    InvalidPattern {
        /// `argument N` or `rest`.
        position: String,
        /// Why.
        error: PatternError,
    },
    /// Positional rules plus `rest.max_count` exceed [`limits::MAX_ARGS`].
    #[error("an entry accepts at most {} arguments", limits::MAX_ARGS)]
    TooManyArgs,
    /// An environment variable name is not `[A-Za-z_][A-Za-z0-9_]*` (at most 128 bytes), or
    /// there are more than [`limits::MAX_ENV_NAMES`].
    #[error("invalid environment variable name {0:?}")]
    InvalidEnvName(String),
    /// An environment variable that changes how programs are loaded or run.
    #[error(
        "environment variable {0} may not be allow-listed: it changes how programs load or run"
    )]
    ForbiddenEnvName(String),
    /// An earlier `[[interpreter]]` listing has the same path.
    #[error("an earlier listing has the same path")]
    DuplicateInterpreter,
}

impl Problem {
    /// A stable identifier, e.g. `invalid_sha256`.
    pub fn code(&self) -> &'static str {
        match self {
            Problem::InvalidName => "invalid_name",
            Problem::DuplicateName => "duplicate_name",
            Problem::PathNotAbsolute => "path_not_absolute",
            Problem::PathNotCanonical => "path_not_canonical",
            Problem::InvalidSha256 => "invalid_sha256",
            Problem::InvalidTimeout => "invalid_timeout",
            Problem::InvalidRule { .. } => "invalid_rule",
            Problem::InvalidPattern { .. } => "invalid_pattern",
            Problem::TooManyArgs => "too_many_args",
            Problem::InvalidEnvName(_) => "invalid_env_name",
            Problem::ForbiddenEnvName(_) => "forbidden_env_name",
            Problem::DuplicateInterpreter => "duplicate_interpreter",
        }
    }
}

// ---- the file's shape -------------------------------------------------------------------------

#[derive(Deserialize)]
struct VersionProbe {
    version: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllowlist {
    #[allow(dead_code)] // checked through VersionProbe first
    version: i64,
    #[serde(default)]
    script: Vec<RawScript>,
    #[serde(default)]
    interpreter: Vec<RawInterpreter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterpreter {
    path: String,
    sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    name: String,
    description: Option<String>,
    path: String,
    sha256: String,
    timeout: i64,
    #[serde(default)]
    args: Vec<RawRule>,
    rest: Option<RawRest>,
    #[serde(default)]
    env: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    fixed: Option<String>,
    one_of: Option<Vec<String>>,
    pattern: Option<String>,
    max_len: Option<i64>,
}

// serde's `flatten` cannot be combined with `deny_unknown_fields`, hence the repetition.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRest {
    fixed: Option<String>,
    one_of: Option<Vec<String>>,
    pattern: Option<String>,
    max_len: Option<i64>,
    max_count: i64,
}

// ---- reading ----------------------------------------------------------------------------------

impl Allowlist {
    /// Parse and validate allowlist text (at most [`MAX_FILE_LEN`] bytes, like the file).
    pub fn from_toml(text: &str) -> Result<Self, LoadError> {
        if text.len() as u64 > MAX_FILE_LEN {
            return Err(LoadError::TooLarge);
        }
        let probe: VersionProbe =
            toml::from_str(text).map_err(|error| LoadError::Invalid(error.to_string()))?;
        match probe.version {
            Some(FORMAT_VERSION) => {}
            Some(other) => return Err(LoadError::UnsupportedVersion(other)),
            None => return Err(LoadError::Invalid("missing key `version`".into())),
        }
        let raw: RawAllowlist =
            toml::from_str(text).map_err(|error| LoadError::Invalid(error.to_string()))?;
        if raw.script.len() > MAX_SCRIPTS {
            return Err(LoadError::TooManyScripts);
        }
        let mut scripts = BTreeMap::new();
        for (index, entry) in raw.script.into_iter().enumerate() {
            let name = entry.name.clone();
            let entry_error = |problem| LoadError::Entry {
                index: index + 1,
                name: name.clone(),
                problem,
            };
            let script = build_script(entry).map_err(entry_error)?;
            if scripts.contains_key(script.name()) {
                return Err(entry_error(Problem::DuplicateName));
            }
            scripts.insert(script.name().to_owned(), script);
        }
        if raw.interpreter.len() > MAX_INTERPRETERS {
            return Err(LoadError::TooManyInterpreters);
        }
        let listings = raw
            .interpreter
            .into_iter()
            .enumerate()
            .map(|(index, listing)| {
                build_interpreter(&listing).map_err(|problem| LoadError::Interpreter {
                    index: index + 1,
                    path: listing.path.clone(),
                    problem,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Allowlist {
            sha256: Sha256::of(text.as_bytes()),
            scripts,
            interpreters: Interpreters::new(listings)?,
        })
    }

    /// Read the allowlist file at `path`, which must be trusted like a script is (absolute
    /// path, trusted directories, a regular file owned by the policy's owner and not writable
    /// by group or others), then parse it.
    pub fn load(path: &Path, policy: &FilePolicy) -> Result<Self, LoadError> {
        let file = open_trusted_file(path, policy).map_err(LoadError::Untrusted)?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(LoadError::Unreadable)?;
        if bytes.len() as u64 > MAX_FILE_LEN {
            return Err(LoadError::TooLarge);
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| LoadError::Invalid("the file is not UTF-8 text".into()))?;
        Self::from_toml(&text)
    }
}

/// The problem with the path of an entry or a listing, if any: it must be absolute
/// (`path_not_absolute`) and normalized (`path_not_canonical`).
pub(crate) fn entry_path_problem(path: &Path) -> Option<Problem> {
    path_spelling_problem(path).map(|refusal| match refusal.reason() {
        Reason::PathNotAbsolute => Problem::PathNotAbsolute,
        _ => Problem::PathNotCanonical,
    })
}

fn build_interpreter(raw: &RawInterpreter) -> Result<Interpreter, Problem> {
    let path = PathBuf::from(&raw.path);
    if let Some(problem) = entry_path_problem(&path) {
        return Err(problem); // the path first, as for a script entry
    }
    let sha256 = raw
        .sha256
        .as_deref()
        .map(str::parse::<Sha256>)
        .transpose()
        .map_err(|_| Problem::InvalidSha256)?;
    Interpreter::new(path, sha256)
}

fn build_script(raw: RawScript) -> Result<Script, Problem> {
    let path = PathBuf::from(&raw.path);
    if let Some(problem) = entry_path_problem(&path) {
        return Err(problem);
    }
    let sha256: Sha256 = raw.sha256.parse().map_err(|_| Problem::InvalidSha256)?;
    let timeout = u64::try_from(raw.timeout)
        .map(Duration::from_secs)
        .map_err(|_| Problem::InvalidTimeout)?;
    let args = raw
        .args
        .into_iter()
        .enumerate()
        .map(|(index, rule)| rule.into_spec().build(RulePosition::Argument(index + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let rest = raw
        .rest
        .map(|rest| {
            let spec = RuleSpec {
                fixed: rest.fixed,
                one_of: rest.one_of,
                pattern: rest.pattern,
                max_len: rest.max_len,
            };
            Ok::<_, Problem>(RestArguments {
                rule: spec.build(RulePosition::Rest)?,
                // Negative: 0, which `ScriptRules::new` refuses.
                max_count: usize::try_from(rest.max_count).unwrap_or(0),
            })
        })
        .transpose()?;
    let rules = ScriptRules::new(raw.name, sha256, args, rest, raw.env, timeout)?;
    Ok(Script {
        rules,
        path,
        description: raw.description,
    })
}

impl RawRule {
    fn into_spec(self) -> RuleSpec {
        RuleSpec {
            fixed: self.fixed,
            one_of: self.one_of,
            pattern: self.pattern,
            max_len: self.max_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_lists_every_code_once() {
        let problems = [
            Problem::InvalidName,
            Problem::DuplicateName,
            Problem::PathNotAbsolute,
            Problem::PathNotCanonical,
            Problem::InvalidSha256,
            Problem::InvalidTimeout,
            Problem::InvalidRule {
                position: String::new(),
                message: String::new(),
            },
            Problem::InvalidPattern {
                position: String::new(),
                error: PatternError::TooLong,
            },
            Problem::TooManyArgs,
            Problem::InvalidEnvName(String::new()),
            Problem::ForbiddenEnvName(String::new()),
        ];
        let listing = |problem| LoadError::Interpreter {
            index: 1,
            path: String::new(),
            problem,
        };
        let mut errors = vec![
            LoadError::Untrusted(Refusal::new(Reason::BadOwner, "")),
            LoadError::Unreadable(io::Error::other("x")),
            LoadError::TooLarge,
            LoadError::Invalid(String::new()),
            LoadError::UnsupportedVersion(2),
            LoadError::TooManyScripts,
        ];
        errors.extend(problems.into_iter().map(|problem| LoadError::Entry {
            index: 1,
            name: String::new(),
            problem,
        }));
        errors.push(LoadError::TooManyInterpreters);
        errors.push(listing(Problem::DuplicateInterpreter));
        let codes: Vec<&str> = errors.iter().map(LoadError::code).collect();
        assert_eq!(codes, LoadError::CODES);
    }
}
