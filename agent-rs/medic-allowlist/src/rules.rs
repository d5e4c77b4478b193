//! The checkable part of an allowlist entry: argument rules, environment names, timeout.
//!
//! [`ScriptRules`] is what an agent advertises to the server (everything but the path), so the
//! server can run [`ScriptRules::check`] before it sends a request, with the same code the agent
//! runs before it executes one.
//!
//! Rules are valid by construction: [`ScriptRules::new`] and [`RuleSpec::build`] enforce every
//! limit of the allowlist format, and the file loader builds its rules through them too, so a
//! rule set received from an agent is held to exactly the same bounds as the file it came from.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use regex::bytes::{Regex, RegexBuilder};

use crate::allowlist::Request;
use crate::digest::Sha256;
use crate::load::Problem;
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

/// Environment variables no entry may allow, by family (docs/allowlist.md gives the reasons):
/// they make the dynamic loader, a shell, an interpreter or a common tool load code, read
/// configuration or trust roots from elsewhere, or run another program. Compared ignoring ASCII
/// case, since some programs read either case.
pub const FORBIDDEN_ENV_NAMES: &[&str] = &[
    // The C library (glibc's own list of variables it ignores in setuid programs).
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
    "TEMP",
    "TMP",
    "TMPDIR",
    "TZDIR",
    // Shells, readline and the terminal.
    "BASHOPTS",
    "CDPATH",
    "ENV",
    "FCEDIT",
    "FPATH",
    "GLOBIGNORE",
    "HISTFILE",
    "IFS",
    "INPUTRC",
    "PATH",
    "PROMPT_COMMAND",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "SHELL",
    "SHELLOPTS",
    "TERMCAP",
    "TERMINFO",
    "TERMINFO_DIRS",
    "ZDOTDIR",
    // Where programs find their dotfiles, configuration and per-user code.
    "HOME",
    "APT_CONFIG",
    "AWKLIBPATH",
    "AWKPATH",
    "CURL_HOME",
    "GNUPGHOME",
    "KUBECONFIG",
    "MAKEFILES",
    "MAKEFLAGS",
    "SYSTEM_WGETRC",
    "TAR_OPTIONS",
    "WGETRC",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "GOOGLE_APPLICATION_CREDENTIALS",
    // Interpreters and language runtimes.
    "CLASSPATH",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "GEM_HOME",
    "GEM_PATH",
    "BUNDLE_GEMFILE",
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    "GODEBUG",
    "GOENV",
    "GOFLAGS",
    "GOPATH",
    "GOROOT",
    "GOTOOLCHAIN",
    // Programs that other programs start: editors, pagers, password prompts, remote shells.
    "BROWSER",
    "CVS_RSH",
    "EDITOR",
    "EXINIT",
    "MANOPT",
    "MANPAGER",
    "MYVIMRC",
    "PAGER",
    "RSYNC_CONNECT_PROG",
    "RSYNC_RSH",
    "SSH_ASKPASS",
    "SSH_ASKPASS_REQUIRE",
    "SSH_AUTH_SOCK",
    "SUDO_ASKPASS",
    "SUDO_EDITOR",
    "SYSTEMD_EDITOR",
    "SYSTEMD_LESS",
    "SYSTEMD_PAGER",
    "SYSTEMD_PAGERSECURE",
    "VIMINIT",
    "VIMRUNTIME",
    "VISUAL",
    // Trust roots, TLS, Kerberos, LDAP, SASL.
    "AWS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GNUTLS_SYSTEM_PRIORITY_FILE",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "REQUESTS_CA_BUNDLE",
    "SASL_CONF_PATH",
    "SASL_PATH",
    "SSLKEYLOGFILE",
    "SSL_CERT_DIR",
    "SSL_CERT_FILE",
    // Buses and plugin directories.
    "DBUS_SESSION_BUS_ADDRESS",
    "DBUS_SYSTEM_BUS_ADDRESS",
    "GIO_EXTRA_MODULES",
    "GIO_MODULE_DIR",
    "GST_PLUGIN_PATH",
    "GST_PLUGIN_SYSTEM_PATH",
    "GTK_MODULES",
    "GTK_PATH",
    "QT_PLUGIN_PATH",
];

/// Whole families of forbidden variables, by prefix (also compared ignoring ASCII case): each
/// has many members that load code or files, and new ones appear with every release.
pub const FORBIDDEN_ENV_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "MALLOC_", // the dynamic loader, the C library's allocator
    "BASH_",   // BASH_ENV, BASH_FUNC_*, BASH_XTRACEFD, BASH_LOADABLES_PATH, …
    "XDG_",    // configuration and data directories
    "PYTHON",  // PYTHONPATH, PYTHONSTARTUP, PYTHONWARNINGS, PYTHONUSERBASE, PYTHON_HISTORY, …
    "PERL",    // PERL5LIB, PERL5OPT, PERL5DB, PERLDB_OPTS, PERLIO, …
    "RUBY",    // RUBYLIB, RUBYOPT, RUBYSHELL, …
    "NODE_",   // NODE_OPTIONS, NODE_PATH, NODE_EXTRA_CA_CERTS, NODE_TLS_REJECT_UNAUTHORIZED, …
    "JAVA_",   // JAVA_TOOL_OPTIONS, JAVA_HOME, JAVA_OPTS, …
    "LUA_",    // LUA_INIT, LUA_PATH, LUA_CPATH, …
    "TCL",     // TCLLIBPATH, TCL_LIBRARY
    "PIP_",    // PIP_INDEX_URL, PIP_CONFIG_FILE, …
    "NPM_CONFIG_",
    "GIT_",     // GIT_SSH_COMMAND, GIT_CONFIG_*, GIT_EXEC_PATH, GIT_TEMPLATE_DIR, GIT_PAGER, …
    "LESS",     // LESSOPEN, LESSCLOSE, LESSKEY, …
    "DOCKER_",  // DOCKER_CONFIG (credential helpers), DOCKER_HOST, DOCKER_CERT_PATH, …
    "OPENSSL_", // OPENSSL_CONF, OPENSSL_ENGINES, OPENSSL_MODULES
    "KRB5",     // KRB5_CONFIG, KRB5CCNAME, KRB5_KTNAME, KRB5_TRACE, …
    "LDAP",     // LDAPCONF, LDAPRC, LDAPTLS_CACERT, …
];

fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= limits::MAX_NAME_LEN
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
        })
}

fn valid_env_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= limits::MAX_ENV_NAME_LEN
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

fn forbidden_env_name(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    FORBIDDEN_ENV_NAMES.contains(&name.as_str())
        || FORBIDDEN_ENV_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// Why `value` is refused for the variable `name`, when the name is useful but some values
/// make programs read files: a locale (`LANG`, `LANGUAGE`, `LC_*`) with a `/` is read as a path
/// to load locale data or message catalogs from; a `TZ` starting with `:` or `/` or holding
/// `..` names a time zone file. The detail never repeats the value.
fn value_problem(name: &str, value: &str) -> Option<&'static str> {
    let name = name.to_ascii_uppercase();
    let locale = name == "LANG" || name == "LANGUAGE" || name.starts_with("LC_");
    if locale && value.contains('/') {
        return Some("a locale value may not hold '/' (it would be read as a path)");
    }
    let tz_file = value.starts_with(':') || value.starts_with('/') || value.contains("..");
    if name == "TZ" && tz_file {
        return Some(
            "a TZ value may not start with ':' or '/' or hold '..' (it would name a file)",
        );
    }
    None
}

/// Whether a `fixed` or `one_of` value is within bounds: at most [`limits::MAX_VALUE_LEN`]
/// bytes, no NUL.
fn value_ok(value: &str) -> bool {
    value.len() <= limits::MAX_VALUE_LEN && !value.contains('\0')
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

/// Where a rule sits in an entry; error messages name it (`argument 2`, `rest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RulePosition {
    /// The positional argument with this number, from 1.
    Argument(usize),
    /// The rule for further arguments.
    Rest,
}

impl fmt::Display for RulePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RulePosition::Argument(number) => write!(f, "argument {number}"),
            RulePosition::Rest => f.write_str("rest"),
        }
    }
}

/// An argument rule as it is written down — a table of the allowlist file, or the protocol's
/// `ArgumentRule` — before it is validated. Exactly one of `fixed`, `one_of` and `pattern`
/// must be set, and `max_len` only with `pattern`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSpec {
    /// The argument must be exactly this.
    pub fixed: Option<String>,
    /// The argument must be one of these.
    pub one_of: Option<Vec<String>>,
    /// The argument must match this pattern as a whole.
    pub pattern: Option<String>,
    /// The longest argument the pattern accepts, in bytes; `None` means
    /// [`limits::DEFAULT_PATTERN_MAX_LEN`].
    pub max_len: Option<i64>,
}

impl RuleSpec {
    /// Validate the spec and compile its pattern, if any. `position` only names the rule in
    /// the error: `invalid_rule` for an ambiguous rule or out-of-bounds values,
    /// `invalid_pattern` for a pattern that does not compile or a `max_len` outside 1 to 4096.
    pub fn build(self, position: RulePosition) -> Result<ArgumentRule, Problem> {
        let invalid = |message: &str| Problem::InvalidRule {
            position: position.to_string(),
            message: message.into(),
        };
        if self.max_len.is_some() && self.pattern.is_none() {
            return Err(invalid("max_len applies to a pattern only"));
        }
        let rule = match (self.fixed, self.one_of, self.pattern) {
            (Some(value), None, None) => ArgumentRule::Fixed(value),
            (None, Some(values), None) => ArgumentRule::OneOf(values),
            (None, None, Some(source)) => {
                let max_len = match self.max_len {
                    None => limits::DEFAULT_PATTERN_MAX_LEN,
                    // Negative or beyond usize: out of bounds, like 0 (refused by `Pattern`).
                    Some(len) => usize::try_from(len).unwrap_or(0),
                };
                let pattern =
                    Pattern::new(&source, max_len).map_err(|error| Problem::InvalidPattern {
                        position: position.to_string(),
                        error,
                    })?;
                ArgumentRule::Pattern(pattern)
            }
            _ => return Err(invalid("give exactly one of fixed, one_of or pattern")),
        };
        validate_rule(position, &rule)?;
        Ok(rule)
    }
}

/// The bounds of a rule's values: what [`ArgumentRule`]'s public variants cannot enforce by
/// themselves. (A [`Pattern`] is valid once built.)
fn validate_rule(position: RulePosition, rule: &ArgumentRule) -> Result<(), Problem> {
    let invalid = |message: &str| Problem::InvalidRule {
        position: position.to_string(),
        message: message.into(),
    };
    match rule {
        ArgumentRule::Fixed(value) if !value_ok(value) => {
            Err(invalid("a value is at most 4096 bytes, without NUL"))
        }
        ArgumentRule::OneOf(values)
            if values.is_empty() || values.len() > limits::MAX_ONE_OF_VALUES =>
        {
            Err(invalid("one_of lists 1 to 256 values"))
        }
        ArgumentRule::OneOf(values) if !values.iter().all(|value| value_ok(value)) => {
            Err(invalid("a value is at most 4096 bytes, without NUL"))
        }
        _ => Ok(()),
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

/// The refusal of a request that names no entry.
pub(crate) fn not_allowlisted(name: &str) -> Refusal {
    Refusal::new(
        Reason::NotAllowlisted,
        format!("no allowlist entry is named {name:?}"),
    )
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
    /// The rules of one entry, held to every bound of the allowlist format (the file loader
    /// builds its entries with this too): a valid `name`, a `timeout` of 1 s to a day in whole
    /// seconds, rule values within bounds, `rest.max_count` at least 1, at most
    /// [`limits::MAX_ARGS`] arguments in all, and at most [`limits::MAX_ENV_NAMES`] valid,
    /// not forbidden environment variable names (repeated names count once).
    pub fn new(
        name: String,
        sha256: Sha256,
        args: Vec<ArgumentRule>,
        rest: Option<RestArguments>,
        env: Vec<String>,
        timeout: Duration,
    ) -> Result<Self, Problem> {
        if !valid_name(&name) {
            return Err(Problem::InvalidName);
        }
        let seconds = timeout.as_secs();
        if timeout.subsec_nanos() != 0 || !(1..=limits::MAX_TIMEOUT_SECONDS).contains(&seconds) {
            return Err(Problem::InvalidTimeout);
        }
        for (index, rule) in args.iter().enumerate() {
            validate_rule(RulePosition::Argument(index + 1), rule)?;
        }
        if let Some(rest) = &rest {
            if rest.max_count < 1 {
                return Err(Problem::InvalidRule {
                    position: RulePosition::Rest.to_string(),
                    message: "max_count must be at least 1".into(),
                });
            }
            validate_rule(RulePosition::Rest, &rest.rule)?;
        }
        let total = args.len() as u128 + rest.as_ref().map_or(0, |rest| rest.max_count as u128);
        if total > limits::MAX_ARGS as u128 {
            return Err(Problem::TooManyArgs);
        }
        if env.len() > limits::MAX_ENV_NAMES {
            return Err(Problem::InvalidEnvName(format!(
                "(more than {} names)",
                limits::MAX_ENV_NAMES
            )));
        }
        let mut names = BTreeSet::new();
        for name in env {
            if !valid_env_name(&name) {
                return Err(Problem::InvalidEnvName(name));
            }
            if forbidden_env_name(&name) {
                return Err(Problem::ForbiddenEnvName(name));
            }
            names.insert(name);
        }
        Ok(Self {
            name,
            sha256,
            args,
            rest,
            env: names,
            timeout,
        })
    }

    /// Check a request against these rules, without touching any file, in the documented
    /// order: the name (`not_allowlisted` unless it is this entry's), the expected hash
    /// (`expected_hash_mismatch`), the timeout (`timeout_too_long`), the argument count and each
    /// argument (`missing_args`, `too_many_args`, `arg_not_allowed`), the environment
    /// (`env_not_allowed`, `env_value_invalid`). Returns the timeout that applies.
    ///
    /// This is the one implementation of the rule checks: [`Allowlist::check`] (the agent) and
    /// [`RuleSet::check`] (the server, on advertised rules) both end here.
    ///
    /// [`Allowlist::check`]: crate::Allowlist::check
    /// [`RuleSet::check`]: crate::RuleSet::check
    pub fn check(&self, request: &Request) -> Result<Duration, Refusal> {
        if request.script != self.name {
            return Err(not_allowlisted(&request.script));
        }
        if let Some(expected) = request.expected_sha256
            && expected != self.sha256
        {
            return Err(Refusal::new(
                Reason::ExpectedHashMismatch,
                format!(
                    "the request expects {} to have SHA-256 {expected}, the allowlist says {}",
                    self.name, self.sha256
                ),
            ));
        }
        let timeout = self.check_timeout(request.timeout)?;
        self.check_args(&request.args)?;
        self.check_env(&request.env)?;
        Ok(timeout)
    }

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

    /// Check the environment variables a request sets against the allowed names, the value
    /// bounds (no NUL byte, at most [`limits::MAX_VALUE_LEN`] bytes) and the value rules of
    /// locale variables (no `/`) and `TZ` (no leading `:` or `/`, no `..`).
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
            if let Some(problem) = value_problem(name, value) {
                return Err(Refusal::new(
                    Reason::EnvValueInvalid,
                    format!("the value of {name} is refused: {problem}"),
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

    #[test]
    fn names_follow_the_slug_rules() {
        for good in ["a", "restart-nginx", "db.vacuum_full", "0day"] {
            assert!(valid_name(good), "{good}");
        }
        let long = "a".repeat(limits::MAX_NAME_LEN + 1);
        for bad in ["", "-x", ".x", "Restart", "a b", "a/b", long.as_str()] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn environment_names_are_portable_identifiers_and_loader_variables_are_forbidden() {
        for good in ["LOG_LEVEL", "_X", "a1"] {
            assert!(valid_env_name(good) && !forbidden_env_name(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "A=B", "A B"] {
            assert!(!valid_env_name(bad), "{bad}");
        }
        for forbidden in [
            "LD_PRELOAD",
            "DYLD_INSERT_LIBRARIES",
            "BASH_ENV",
            "PATH",
            "IFS",
        ] {
            assert!(forbidden_env_name(forbidden), "{forbidden}");
        }
    }

    #[test]
    fn variables_that_load_code_or_files_are_forbidden_in_any_case() {
        for forbidden in [
            "JAVA_TOOL_OPTIONS",
            "_JAVA_OPTIONS",
            "JDK_JAVA_OPTIONS",
            "PYTHONWARNINGS",
            "PYTHONUSERBASE",
            "PYTHON_HISTORY",
            "PERL5DB",
            "PERLDB_OPTS",
            "BASH_XTRACEFD",
            "GIT_SSH_COMMAND",
            "GIT_CONFIG_COUNT",
            "GIT_EXEC_PATH",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "OPENSSL_CONF",
            "HOME",
            "XDG_CONFIG_HOME",
            "EDITOR",
            "VISUAL",
            "PAGER",
            "LESSOPEN",
            "TERMINFO",
            "INPUTRC",
            "KRB5_CONFIG",
            "KRB5CCNAME",
            "TZDIR",
            "MALLOC_TRACE",
            "TAR_OPTIONS",
            // Case does not help: some programs read either.
            "ld_preload",
            "Home",
            "npm_config_script_shell",
            "git_ssh_command",
        ] {
            assert!(forbidden_env_name(forbidden), "{forbidden}");
        }
        for allowed in [
            "LANG",
            "LC_ALL",
            "TZ",
            "TERM",
            "LOG_LEVEL",
            "SERVICE",
            "LESSON",
        ] {
            // LESSON: a family prefix is a prefix, whatever follows.
            assert_eq!(
                forbidden_env_name(allowed),
                allowed == "LESSON",
                "{allowed}"
            );
        }
    }

    #[test]
    fn locale_and_time_zone_values_cannot_name_files() {
        for (name, value) in [
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "de_DE.UTF-8@euro"),
            ("LANGUAGE", "fr:en"),
            ("TZ", "Europe/Paris"),
            ("TZ", "UTC"),
            ("TZ", "EST5EDT,M3.2.0/2,M11.1.0/2"),
            ("OTHER", "/anything/../at:all"),
        ] {
            assert_eq!(value_problem(name, value), None, "{name}={value}");
        }
        let rules = ScriptRules::new(
            "s".into(),
            Sha256::of(b""),
            Vec::new(),
            None,
            vec!["LC_ALL".into(), "TZ".into()],
            Duration::from_secs(1),
        )
        .unwrap();
        for (name, value) in [("LC_ALL", "/secret/path"), ("TZ", ":/secret/zone")] {
            let refusal = rules
                .check_env(&[(name.to_owned(), value.to_owned())].into())
                .unwrap_err();
            assert_eq!(refusal.reason(), Reason::EnvValueInvalid);
            assert!(refusal.detail().contains(name), "{}", refusal.detail());
            assert!(!refusal.detail().contains("secret"), "{}", refusal.detail());
        }
        for (name, value) in [
            ("LANG", "/tmp/x"),
            ("LC_ALL", "../../tmp/x"),
            ("LC_MESSAGES", "x/y"),
            ("LANGUAGE", "fr:/tmp/evil"),
            ("TZ", ":/tmp/zone"),
            ("TZ", ":Europe/Paris"),
            ("TZ", "/tmp/zone"),
            ("TZ", "../../tmp/zone"),
            ("TZ", "Europe/../../tmp/zone"),
        ] {
            assert!(value_problem(name, value).is_some(), "{name}={value}");
        }
    }

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
