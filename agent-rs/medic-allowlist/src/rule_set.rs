//! The advertised part of an allowlist: every entry's rules, without paths.
//!
//! An agent tells the server what it may run by sending its rules (the protocol's
//! `AllowlistSummary`); the server builds a [`RuleSet`] from them and checks each request before
//! sending it. [`RuleSet::check`] and [`Allowlist::check`] run the same code
//! ([`ScriptRules::check`]), so a request the server lets through is refused by the agent only
//! when the allowlist changed in between (`expected_hash_mismatch`) or the script file fails
//! its checks.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::allowlist::{Allowlist, Request};
use crate::digest::Sha256;
use crate::load::{LoadError, MAX_SCRIPTS, Problem};
use crate::refusal::Refusal;
use crate::rules::{ScriptRules, not_allowlisted};

/// Entry rules by name, and the SHA-256 of the allowlist they come from. Build one with
/// [`RuleSet::new`] (from rules received over the wire) or [`Allowlist::rule_set`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    sha256: Sha256,
    scripts: BTreeMap<String, ScriptRules>,
}

impl RuleSet {
    /// A rule set of these entries: at most [`MAX_SCRIPTS`] (`too_many_scripts`, checked
    /// first, as the loader does), with distinct names (`duplicate_name`, reported for the later
    /// entry, counting from 1). Each
    /// [`ScriptRules`] is valid already: [`ScriptRules::new`] checked it.
    pub fn new(
        sha256: Sha256,
        scripts: impl IntoIterator<Item = ScriptRules>,
    ) -> Result<Self, LoadError> {
        let scripts: Vec<ScriptRules> = scripts.into_iter().collect();
        if scripts.len() > MAX_SCRIPTS {
            return Err(LoadError::TooManyScripts);
        }
        let mut by_name = BTreeMap::new();
        for (index, rules) in scripts.into_iter().enumerate() {
            if by_name.contains_key(rules.name()) {
                return Err(LoadError::Entry {
                    index: index + 1,
                    name: rules.name().to_owned(),
                    problem: Problem::DuplicateName,
                });
            }
            by_name.insert(rules.name().to_owned(), rules);
        }
        Ok(Self {
            sha256,
            scripts: by_name,
        })
    }

    /// The SHA-256 of the allowlist text the rules come from.
    pub fn sha256(&self) -> Sha256 {
        self.sha256
    }

    /// The rules of the entry named `name`.
    pub fn get(&self, name: &str) -> Option<&ScriptRules> {
        self.scripts.get(name)
    }

    /// Every entry's rules, by name.
    pub fn scripts(&self) -> impl Iterator<Item = &ScriptRules> {
        self.scripts.values()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.scripts.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.scripts.is_empty()
    }

    /// Check a request against the rules of the entry it names, exactly as
    /// [`Allowlist::check`] does (see [`ScriptRules::check`] for the order of the checks).
    pub fn check<'a>(&'a self, request: &Request) -> Result<Allowed<'a>, Refusal> {
        let rules = self
            .get(&request.script)
            .ok_or_else(|| not_allowlisted(&request.script))?;
        let timeout = rules.check(request)?;
        Ok(Allowed { rules, timeout })
    }
}

/// A request that satisfies the rules of its entry.
#[derive(Debug, Clone, Copy)]
pub struct Allowed<'a> {
    rules: &'a ScriptRules,
    timeout: Duration,
}

impl<'a> Allowed<'a> {
    /// The entry's rules.
    pub fn rules(&self) -> &'a ScriptRules {
        self.rules
    }

    /// The timeout that applies.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Allowlist {
    /// What the agent advertises: every entry's rules, without paths or descriptions, and the
    /// allowlist's SHA-256.
    pub fn rule_set(&self) -> RuleSet {
        RuleSet {
            sha256: self.sha256,
            scripts: self
                .scripts
                .iter()
                .map(|(name, script)| (name.clone(), script.rules.clone()))
                .collect(),
        }
    }
}
