//! The allowlist of a Medic agent: what the server may ask a host to run.
//!
//! A host's owner lists, in a root-owned TOML file, the scripts Medic may run there: a name, an
//! absolute path, the SHA-256 of the file, rules for its arguments, the environment variables it
//! may receive and its longest run time (`docs/allowlist.md` describes the format). This crate
//! parses that file and decides, for each requested execution, whether it may run. The agent
//! uses it before every execution; the server uses the same code (through Python bindings) to
//! check a request against an agent's advertised rules before sending it, so the two sides can
//! never disagree.
//!
//! # Design
//!
//! Verification happens in two steps, because only the second needs the host:
//!
//! 1. [`Allowlist::check`] (pure, no I/O) matches a [`Request`] against the entry's
//!    [`ScriptRules`]: known name, expected hash, timeout, argument rules, environment names.
//!    The server runs the very same check ([`ScriptRules::check`]) on the rules an agent
//!    advertises, held in a [`RuleSet`] built without any file ([`ScriptRules::new`],
//!    [`RuleSpec::build`], [`RuleSet::new`]).
//! 2. [`Approved::open`] opens the script **once** and checks the opened file: a regular file,
//!    owned by the trusted user, not writable by group or others, executable, in directories
//!    that are trusted the same way, and with the listed SHA-256 computed from that very file
//!    descriptor. It returns a [`VerifiedScript`] that keeps the descriptor open; the caller
//!    executes *the descriptor* ([`VerifiedScript::exec_path`], a `/proc/self/fd/N` path),
//!    never the path again, so nothing can be swapped between the check and the execution.
//!
//! Every refusal carries a [`Reason`] with a stable code ([`Reason::as_str`]) for metrics, the
//! audit log and the protocol, and a human-readable detail that never repeats argument or
//! environment values.
//!
//! Who counts as trusted is a parameter ([`FilePolicy`]), not a global: production trusts root
//! only; tests trust the user running them.
//!
//! The crate does no I/O beyond reading files and has no async, so the agent and the Python
//! bindings share it unchanged.

#![deny(unsafe_code)]

mod allowlist;
mod digest;
mod file;
mod load;
mod refusal;
mod rule_set;
mod rules;

pub use allowlist::{Allowlist, Approved, Request, Script, Verified};
pub use digest::{InvalidSha256, Sha256};
pub use file::{FilePolicy, VerifiedScript, open_trusted_file, open_verified_script};
pub use load::{FORMAT_VERSION, LoadError, MAX_FILE_LEN, MAX_SCRIPTS, Problem};
pub use refusal::{Reason, Refusal, UnknownReason};
pub use rule_set::{Allowed, RuleSet};
pub use rules::{
    ArgumentRule, Pattern, PatternError, RestArguments, RulePosition, RuleSpec, ScriptRules, limits,
};
