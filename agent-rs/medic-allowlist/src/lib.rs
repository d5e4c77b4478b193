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
//!    owned by the trusted user, not writable by group or others, executable, neither setuid
//!    nor setgid, in directories that are trusted the same way. It then copies the bytes into a
//!    private, immutable file — a sealed memfd on Linux — hashing them on the way, and compares
//!    the hash with the listed one; the copy is what the rest of the checks read and what gets
//!    executed ([`VerifiedScript::exec_path`], a `/proc/self/fd/N` path), never the path
//!    again. Nothing renamed over the path and nothing written into the file afterwards can
//!    change what runs: the hash is the hash of the executed bytes.
//! 3. Still in [`Approved::open`], the copy's `#!` line is read as the kernel reads it and the
//!    interpreter it names is held to the same trust rules — resolved one component at a time,
//!    every directory and symbolic link on the way trusted, the file root's or the trusted
//!    user's, executable, not setuid — and so is its own interpreter, if any.
//!    `#!/usr/bin/env NAME` runs only what the allowlist lists in its `[[interpreter]]` table
//!    ([`Interpreters`]), which may also pin interpreters' hashes.
//!
//! Every refusal carries a [`Reason`] with a stable code ([`Reason::as_str`]) for metrics, the
//! audit log and the protocol, and a human-readable detail that never repeats argument or
//! environment values.
//!
//! Who counts as trusted is a parameter ([`FilePolicy`]), not a global: production trusts root
//! only; tests trust the user running them.
//!
//! The crate does no I/O beyond reading files (and making the private copies it executes) and
//! has no async, so the agent and the Python bindings share it unchanged. It is Linux-first:
//! on other Unix systems (macOS) the copy is a removed file in a root-only directory instead of
//! a memfd, a path that is tested on Linux but not built on macOS here.

#![deny(unsafe_code)]

mod allowlist;
mod digest;
mod exec_copy;
mod file;
mod interpreter;
mod load;
mod refusal;
mod rule_set;
mod rules;
mod shebang;

pub use allowlist::{Allowlist, Approved, Request, Script, Verified};
pub use digest::{InvalidSha256, Sha256};
pub use exec_copy::MAX_SCRIPT_LEN;
pub use file::{FilePolicy, VerifiedScript, open_trusted_file, open_verified_script};
pub use interpreter::{BASE_PATH, Interpreter, Interpreters, MAX_INTERPRETER_DEPTH, MAX_SYMLINKS};
pub use load::{FORMAT_VERSION, LoadError, MAX_FILE_LEN, MAX_INTERPRETERS, MAX_SCRIPTS, Problem};
pub use refusal::{Reason, Refusal, UnknownReason};
pub use rule_set::{Allowed, RuleSet};
pub use rules::{
    ArgumentRule, FORBIDDEN_ENV_NAMES, FORBIDDEN_ENV_PREFIXES, Pattern, PatternError,
    RestArguments, RulePosition, RuleSpec, ScriptRules, limits,
};
