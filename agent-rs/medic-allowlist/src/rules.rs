//! The checkable part of an allowlist entry: argument rules, environment names, timeout.
//!
//! [`ScriptRules`] is what an agent advertises to the server (everything but the path), so the
//! server can run [`ScriptRules::check_args`] and [`ScriptRules::check_env`] before it sends a
//! request, with the same code the agent runs before it executes one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use regex::bytes::{Regex, RegexBuilder};

use crate::digest::Sha256;
use crate::refusal::{Reason, Refusal};

/// The bounds every allowlist and request lives within.
pub mod limits {
    /// Longest argument, environment value, fixed or enumerated value, in bytes.
    pub const MAX_VALUE_LEN: usize = 4096;
    /// Most arguments an entry may accept (positional rules plus `rest.max_count`).
    pub const MAX_ARGS: usize = 64;
    /// Most values in one `one_of` rule.
    pub const MAX_ONE_OF_VALUES: usize = 256;
    /// Longest pattern source, in bytes.
    pub const MAX_PATTERN_LEN: usize = 1024;
    /// `max_len` of a pattern rule when the allowlist does not set it, in bytes.
    pub const DEFAULT_PATTERN_MAX_LEN: usize = 256;
    /// Limit on a compiled pattern's size (the `regex` crate's `size_limit`), in bytes.
    pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
    /// Limit on a pattern's lazy DFA cache (the `regex` crate's `dfa_size_limit`), in bytes.
    pub const REGEX_DFA_SIZE_LIMIT: usize = 1024 * 1024;
    /// Deepest nesting of groups and repetitions in a pattern.
    pub const REGEX_NEST_LIMIT: u32 = 32;
    /// Longest environment variable name, in bytes.
    pub const MAX_ENV_NAME_LEN: usize = 128;
    /// Most environment variables one entry may allow.
    pub const MAX_ENV_NAMES: usize = 64;
    /// Longest timeout, in seconds (one day).
    pub const MAX_TIMEOUT_SECONDS: u64 = 86_400;
    /// Longest entry name, in bytes.
    pub const MAX_NAME_LEN: usize = 64;
}

/// A rule one argument must satisfy.
#[derive(Debug, Clone)]
pub enum ArgumentRule {
    /// Exactly this value.
    Fixed(String),
    /// One of these values.
    OneOf(Vec<String>),
    /// The whole argument matches this pattern.
    Pattern(Pattern),
}

impl ArgumentRule {
    /// Whether `arg` satisfies the rule. An argument longer than [`limits::MAX_VALUE_LEN`] or
    /// holding a NUL byte never does.
    pub fn allows(&self, arg: &str) -> bool {
        if arg.len() > limits::MAX_VALUE_LEN || arg.contains('\0') {
            return false;
        }
        match self {
            ArgumentRule::Fixed(value) => arg == value,
            ArgumentRule::OneOf(values) => values.iter().any(|value| value == arg),
            ArgumentRule::Pattern(pattern) => pattern.allows(arg),
        }
    }

    /// A short description for refusal details: the kind of rule, never its values.
    fn kind(&self) -> &'static str {
        match self {
            ArgumentRule::Fixed(_) => "fixed value",
            ArgumentRule::OneOf(_) => "one_of",
            ArgumentRule::Pattern(_) => "pattern",
        }
    }
}

impl PartialEq for ArgumentRule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ArgumentRule::Fixed(a), ArgumentRule::Fixed(b)) => a == b,
            (ArgumentRule::OneOf(a), ArgumentRule::OneOf(b)) => a == b,
            (ArgumentRule::Pattern(a), ArgumentRule::Pattern(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for ArgumentRule {}

/// A bounded regular expression that must match a whole argument.
///
/// The source is compiled as `\A(?:source)\z` (authors cannot forget an anchor) over bytes with
/// Unicode classes off: `\d`, `\w`, `\s` and `(?i)` mean their ASCII versions, `.` any byte but a
/// newline. Matching takes linear time (the `regex` crate has no backtracking), the compiled size
/// is capped, and arguments longer than `max_len` are refused before matching.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    max_len: usize,
    regex: Regex,
}

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The source is longer than [`limits::MAX_PATTERN_LEN`].
    #[error("the pattern is longer than {} bytes", limits::MAX_PATTERN_LEN)]
    TooLong,
    /// `max_len` is 0 or above [`limits::MAX_VALUE_LEN`].
    #[error("max_len must be 1 to {}", limits::MAX_VALUE_LEN)]
    BadMaxLen,
    /// The `regex` crate refused it (syntax, or over the size limits).
    #[error("{0}")]
    Regex(String),
}

impl Pattern {
    /// Compile `source`, accepting arguments of at most `max_len` bytes.
    pub fn new(source: &str, max_len: usize) -> Result<Self, PatternError> {
        if source.len() > limits::MAX_PATTERN_LEN {
            return Err(PatternError::TooLong);
        }
        if max_len == 0 || max_len > limits::MAX_VALUE_LEN {
            return Err(PatternError::BadMaxLen);
        }
        let regex = RegexBuilder::new(&format!(r"\A(?:{source})\z"))
            .unicode(false)
            .size_limit(limits::REGEX_SIZE_LIMIT)
            .dfa_size_limit(limits::REGEX_DFA_SIZE_LIMIT)
            .nest_limit(limits::REGEX_NEST_LIMIT)
            .build()
            .map_err(|error| PatternError::Regex(error.to_string()))?;
        Ok(Self {
            source: source.to_owned(),
            max_len,
            regex,
        })
    }

    /// The pattern as the allowlist wrote it (without the added anchors).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The longest argument it accepts, in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    fn allows(&self, arg: &str) -> bool {
        arg.len() <= self.max_len && self.regex.is_match(arg.as_bytes())
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.max_len == other.max_len
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pattern")
            .field("source", &self.source)
            .field("max_len", &self.max_len)
            .finish()
    }
}

/// Further arguments after the positional ones: each satisfies `rule`, at most `max_count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestArguments {
    /// The rule every further argument satisfies.
    pub rule: ArgumentRule,
    /// How many further arguments at most.
    pub max_count: usize,
}

/// Everything about an allowlist entry except where its file is: what the agent advertises, and
/// all that a request is checked against before any file is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptRules {
    pub(crate) name: String,
    pub(crate) sha256: Sha256,
    pub(crate) args: Vec<ArgumentRule>,
    pub(crate) rest: Option<RestArguments>,
    pub(crate) env: BTreeSet<String>,
    pub(crate) timeout: Duration,
}

impl ScriptRules {
    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SHA-256 the script file must have.
    pub fn sha256(&self) -> Sha256 {
        self.sha256
    }

    /// One rule per positional argument, in order; each is required.
    pub fn args(&self) -> &[ArgumentRule] {
        &self.args
    }

    /// Further arguments, if any are allowed.
    pub fn rest(&self) -> Option<&RestArguments> {
        self.rest.as_ref()
    }

    /// The environment variables a request may set.
    pub fn env(&self) -> &BTreeSet<String> {
        &self.env
    }

    /// The longest, and default, run time.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Fewest arguments a request may have.
    pub fn min_args(&self) -> usize {
        self.args.len()
    }

    /// Most arguments a request may have.
    pub fn max_args(&self) -> usize {
        self.args.len() + self.rest.as_ref().map_or(0, |rest| rest.max_count)
    }

    /// Check an argument vector (without the script itself) against the rules.
    pub fn check_args(&self, args: &[String]) -> Result<(), Refusal> {
        if args.len() < self.min_args() {
            return Err(Refusal::new(
                Reason::MissingArgs,
                format!(
                    "{} needs at least {} arguments, got {}",
                    self.name,
                    self.min_args(),
                    args.len()
                ),
            ));
        }
        if args.len() > self.max_args() {
            return Err(Refusal::new(
                Reason::TooManyArgs,
                format!(
                    "{} accepts at most {} arguments, got {}",
                    self.name,
                    self.max_args(),
                    args.len()
                ),
            ));
        }
        for (index, arg) in args.iter().enumerate() {
            let rule = self
                .args
                .get(index)
                .or_else(|| self.rest.as_ref().map(|rest| &rest.rule));
            // The count check above makes `rule` present; refusing keeps it safe regardless.
            let Some(rule) = rule else {
                return Err(Refusal::new(
                    Reason::TooManyArgs,
                    format!("{} accepts no argument {}", self.name, index + 1),
                ));
            };
            if !rule.allows(arg) {
                return Err(Refusal::new(
                    Reason::ArgNotAllowed,
                    format!(
                        "argument {} of {} does not satisfy its {} rule",
                        index + 1,
                        self.name,
                        rule.kind()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Check the environment variables a request sets against the allowed names and the value
    /// bounds (no NUL byte, at most [`limits::MAX_VALUE_LEN`] bytes).
    pub fn check_env(&self, env: &BTreeMap<String, String>) -> Result<(), Refusal> {
        for (name, value) in env {
            if !self.env.contains(name) {
                return Err(Refusal::new(
                    Reason::EnvNotAllowed,
                    format!(
                        "{} may not receive the environment variable {name:?}",
                        self.name
                    ),
                ));
            }
            if value.len() > limits::MAX_VALUE_LEN || value.contains('\0') {
                return Err(Refusal::new(
                    Reason::EnvValueInvalid,
                    format!(
                        "the value of {name} is longer than {} bytes or holds a NUL byte",
                        limits::MAX_VALUE_LEN
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The timeout for a request asking for `requested` (`None` or zero: the entry's own, as
    /// `Execute.timeout_seconds = 0` means in the protocol).
    pub fn check_timeout(&self, requested: Option<Duration>) -> Result<Duration, Refusal> {
        match requested {
            None => Ok(self.timeout),
            Some(requested) if requested.is_zero() => Ok(self.timeout),
            Some(requested) if requested <= self.timeout => Ok(requested),
            Some(requested) => Err(Refusal::new(
                Reason::TimeoutTooLong,
                format!(
                    "{} may run for at most {} s, {} s requested",
                    self.name,
                    self.timeout.as_secs(),
                    requested.as_secs()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(source: &str) -> ArgumentRule {
        ArgumentRule::Pattern(Pattern::new(source, 16).unwrap())
    }

    #[test]
    fn pattern_must_match_the_whole_argument() {
        let rule = pattern("[a-z]+");
        assert!(rule.allows("nginx"));
        assert!(!rule.allows("nginx;reboot"));
        assert!(!rule.allows(" nginx"));
        assert!(!rule.allows("nginx\n"));
        assert!(!rule.allows(""));
    }

    #[test]
    fn alternation_cannot_escape_the_anchors() {
        let rule = pattern("a|b");
        assert!(rule.allows("a"));
        assert!(rule.allows("b"));
        assert!(!rule.allows("ab"));
        assert!(!rule.allows("xa"));
        assert!(!rule.allows("bx"));
    }

    #[test]
    fn classes_are_ascii_only() {
        assert!(pattern(r"\d+").allows("42"));
        assert!(
            !pattern(r"\d+").allows("٤٢"),
            "Arabic-Indic digits are not \\d here"
        );
        assert!(!pattern(r"\w+").allows("é"));
        assert!(pattern("(?i)abc").allows("ABC"));
    }

    #[test]
    fn pattern_refuses_arguments_longer_than_max_len() {
        let rule = ArgumentRule::Pattern(Pattern::new(".*", 4).unwrap());
        assert!(rule.allows("abcd"));
        assert!(!rule.allows("abcde"));
    }

    #[test]
    fn no_rule_allows_a_nul_byte_or_an_oversized_argument() {
        let long = "a".repeat(limits::MAX_VALUE_LEN + 1);
        for rule in [
            ArgumentRule::Fixed("a\0b".into()),
            ArgumentRule::OneOf(vec!["a\0b".into(), long.clone()]),
            ArgumentRule::Pattern(Pattern::new("(?s).*", limits::MAX_VALUE_LEN).unwrap()),
        ] {
            assert!(!rule.allows("a\0b"), "{rule:?}");
            assert!(!rule.allows(&long), "{rule:?}");
        }
    }

    #[test]
    fn oversized_or_over_complex_patterns_are_refused() {
        let long = "a".repeat(limits::MAX_PATTERN_LEN + 1);
        assert_eq!(Pattern::new(&long, 8).unwrap_err(), PatternError::TooLong);
        assert!(matches!(
            Pattern::new("a{1000}{1000}", 8),
            Err(PatternError::Regex(_))
        ));
        assert!(matches!(
            Pattern::new(
                "(((((((((((((((((((((((((((((((((a)))))))))))))))))))))))))))))))))",
                8
            ),
            Err(PatternError::Regex(_))
        ));
        assert!(matches!(Pattern::new("(", 8), Err(PatternError::Regex(_))));
        assert_eq!(Pattern::new("a", 0).unwrap_err(), PatternError::BadMaxLen);
        assert_eq!(
            Pattern::new("a", limits::MAX_VALUE_LEN + 1).unwrap_err(),
            PatternError::BadMaxLen
        );
    }
}
