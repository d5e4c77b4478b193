//! The parsed allowlist and the verification of one requested execution.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::digest::Sha256;
use crate::file::{FilePolicy, VerifiedScript, open_verified_script};
use crate::interpreter::Interpreters;
use crate::refusal::Refusal;
use crate::rules::{ScriptRules, not_allowlisted};

/// A parsed, valid allowlist: entries by name, the `[[interpreter]]` table, and the SHA-256 of
/// the text it was read from.
///
/// Build one with [`Allowlist::from_toml`] or [`Allowlist::load`].
#[derive(Debug, Clone)]
pub struct Allowlist {
    pub(crate) sha256: Sha256,
    pub(crate) scripts: BTreeMap<String, Script>,
    pub(crate) interpreters: Interpreters,
}

/// One allowlist entry: its rules and where its file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub(crate) rules: ScriptRules,
    pub(crate) path: PathBuf,
    pub(crate) description: Option<String>,
}

impl Script {
    /// The entry's name.
    pub fn name(&self) -> &str {
        self.rules.name()
    }

    /// The absolute path of the script file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the script does, as the allowlist's author wrote it.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Everything but the path: what the agent advertises and requests are checked against.
    pub fn rules(&self) -> &ScriptRules {
        &self.rules
    }
}

/// A requested execution, as the server sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The allowlist entry's name.
    pub script: String,
    /// The argument vector after the script itself.
    pub args: Vec<String>,
    /// Environment variables to set.
    pub env: BTreeMap<String, String>,
    /// How long it may run; `None` means the entry's timeout.
    pub timeout: Option<Duration>,
    /// The script hash the server checked the request against, if it says.
    pub expected_sha256: Option<Sha256>,
}

impl Allowlist {
    /// The SHA-256 of the allowlist text: tells which version of the file is in force.
    pub fn sha256(&self) -> Sha256 {
        self.sha256
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&Script> {
        self.scripts.get(name)
    }

    /// Every entry, by name.
    pub fn scripts(&self) -> impl Iterator<Item = &Script> {
        self.scripts.values()
    }

    /// The `[[interpreter]]` table: what `#!/usr/bin/env NAME` may run, and pinned hashes.
    pub fn interpreters(&self) -> &Interpreters {
        &self.interpreters
    }

    /// Open and verify the file of `script` (one of this allowlist's entries) exactly as an
    /// execution would, without a request: what `medic-agent check` reports.
    pub fn open_script(
        &self,
        script: &Script,
        policy: &FilePolicy,
    ) -> Result<VerifiedScript, Refusal> {
        open_verified_script(
            script.path(),
            script.rules.sha256(),
            policy,
            &self.interpreters,
        )
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.scripts.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.scripts.is_empty()
    }

    /// Check a request against the rules, without touching any file. In this order: a known
    /// name (`not_allowlisted`), the expected hash (`expected_hash_mismatch`), the timeout
    /// (`timeout_too_long`), the argument count and each argument (`missing_args`,
    /// `too_many_args`, `arg_not_allowed`), the environment (`env_not_allowed`,
    /// `env_value_invalid`).
    pub fn check<'a>(&'a self, request: &'a Request) -> Result<Approved<'a>, Refusal> {
        let script = self
            .get(&request.script)
            .ok_or_else(|| not_allowlisted(&request.script))?;
        let timeout = script.rules().check(request)?;
        Ok(Approved {
            script,
            interpreters: &self.interpreters,
            request,
            timeout,
        })
    }

    /// [`check`](Self::check) the request, then [`open`](Approved::open) the script: the whole
    /// verification an agent runs right before executing.
    pub fn verify<'a>(
        &'a self,
        request: &'a Request,
        policy: &FilePolicy,
    ) -> Result<Verified<'a>, Refusal> {
        self.check(request)?.open(policy)
    }
}

/// A request that satisfies its entry's rules; its file is not opened yet.
#[derive(Debug, Clone)]
pub struct Approved<'a> {
    script: &'a Script,
    interpreters: &'a Interpreters,
    request: &'a Request,
    timeout: Duration,
}

impl<'a> Approved<'a> {
    /// The entry the request names.
    pub fn script(&self) -> &'a Script {
        self.script
    }

    /// The timeout that applies.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Open the script file once, verify it and copy it to execute (see
    /// [`open_verified_script`]).
    pub fn open(self, policy: &FilePolicy) -> Result<Verified<'a>, Refusal> {
        let file = open_verified_script(
            self.script.path(),
            self.script.rules.sha256(),
            policy,
            self.interpreters,
        )?;
        Ok(Verified {
            file,
            script: self.script,
            request: self.request,
            timeout: self.timeout,
        })
    }
}

/// Everything an agent needs to run a verified request: the open script, the argument vector,
/// the environment to add and the timeout.
#[derive(Debug)]
pub struct Verified<'a> {
    file: VerifiedScript,
    script: &'a Script,
    request: &'a Request,
    timeout: Duration,
}

impl<'a> Verified<'a> {
    /// The entry.
    pub fn script(&self) -> &'a Script {
        self.script
    }

    /// The verified copy of the script, open.
    pub fn file(&self) -> &VerifiedScript {
        &self.file
    }

    /// What to execute: the path of the copy's descriptor (see [`VerifiedScript`]).
    pub fn exec_path(&self) -> PathBuf {
        self.file.exec_path()
    }

    /// The arguments after the script.
    pub fn args(&self) -> &'a [String] {
        &self.request.args
    }

    /// The environment variables to add to the agent's scrubbed environment.
    pub fn env(&self) -> &'a BTreeMap<String, String> {
        &self.request.env
    }

    /// How long it may run.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Give up the wrapper and keep the open file.
    pub fn into_file(self) -> File {
        self.file.into_file()
    }
}
