//! The agent's `Hello`: who it is, the allowlist it advertises, and how many executions it
//! runs at once (`max_concurrent`), so that the server never sends more than fit: whichever
//! replica dispatches, the rest wait on the server, not as `too_many_running` refusals.
//!
//! The summary carries every rule of every entry, but never a script's path: the server only
//! ever names scripts, and checks requests against these rules (with the same verifier, through
//! its Python bindings) before sending them.

use std::collections::BTreeMap;

use medic_allowlist::{Allowlist, ArgumentRule};

use crate::containment::Mode;
use crate::killswitch::Pause;
use crate::proto;

/// What does not change while the agent runs.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The stable agent id.
    pub agent_id: String,
    /// The host's name.
    pub hostname: String,
}

/// The `Hello` for the agent's current state. `allowlist` is `None` when none could be loaded;
/// `containment` is the mode in force; `max_concurrent` the configured limit (1 to 1024).
pub fn hello(
    identity: &Identity,
    labels: &BTreeMap<String, String>,
    allowlist: Option<&Allowlist>,
    pause: &Pause,
    containment: Mode,
    max_concurrent: usize,
) -> proto::Hello {
    proto::Hello {
        agent_id: identity.agent_id.clone(),
        hostname: identity.hostname.clone(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        labels: labels
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        allowlist: allowlist.map(summary),
        executions_paused: pause.paused,
        paused_reason: pause.reason.clone(),
        capabilities: Vec::new(),
        containment: containment.as_str().into(),
        // The configuration bounds it to 1..=1024; saturating keeps a bad value visible to the
        // server's own check instead of wrapping to a small number.
        max_concurrent_executions: u32::try_from(max_concurrent).unwrap_or(u32::MAX),
    }
}

/// The allowlist as advertised.
pub fn summary(allowlist: &Allowlist) -> proto::AllowlistSummary {
    proto::AllowlistSummary {
        sha256: allowlist.sha256().to_string(),
        scripts: allowlist
            .scripts()
            .map(|script| {
                let rules = script.rules();
                proto::ScriptRules {
                    name: rules.name().into(),
                    sha256: rules.sha256().to_string(),
                    args: rules.args().iter().map(argument_rule).collect(),
                    rest: rules.rest().map(|rest| proto::RestArguments {
                        rule: Some(argument_rule(&rest.rule)),
                        max_count: u32::try_from(rest.max_count).unwrap_or(u32::MAX),
                    }),
                    env: rules.env().iter().cloned().collect(),
                    timeout_seconds: u32::try_from(rules.timeout().as_secs()).unwrap_or(u32::MAX),
                }
            })
            .collect(),
    }
}

fn argument_rule(rule: &ArgumentRule) -> proto::ArgumentRule {
    use proto::argument_rule::Rule;
    let rule = match rule {
        ArgumentRule::Fixed(value) => Rule::Fixed(value.clone()),
        ArgumentRule::OneOf(values) => Rule::OneOf(proto::ValueSet {
            values: values.clone(),
        }),
        ArgumentRule::Pattern(pattern) => Rule::Pattern(proto::Pattern {
            regex: pattern.source().into(),
            max_len: u32::try_from(pattern.max_len()).unwrap_or(u32::MAX),
        }),
    };
    proto::ArgumentRule { rule: Some(rule) }
}

#[cfg(test)]
mod tests {
    use medic_allowlist::Sha256;

    use super::*;

    #[test]
    fn the_summary_carries_every_rule_and_no_path() {
        let script_sha = Sha256::of(b"#!/bin/sh\n");
        let text = format!(
            "version = 1\n[[script]]\nname = \"restart\"\npath = \"/opt/medic/restart.sh\"\n\
             sha256 = \"{script_sha}\"\ntimeout = 30\n\
             args = [{{ fixed = \"--now\" }}, {{ one_of = [\"nginx\", \"php\"] }}]\n\
             rest = {{ pattern = \"[a-z]+\", max_len = 16, max_count = 2 }}\n\
             env = [\"LOG_LEVEL\"]\n"
        );
        let allowlist = Allowlist::from_toml(&text).unwrap();
        let identity = Identity {
            agent_id: "0b0e3c9a-6a1f-4c52-8d7e-1f2a3b4c5d6e".into(),
            hostname: "web-1".into(),
        };
        let labels = BTreeMap::from([("role".to_owned(), "web".to_owned())]);
        let pause = Pause {
            paused: true,
            reason: "freeze".into(),
        };
        let hello = hello(
            &identity,
            &labels,
            Some(&allowlist),
            &pause,
            Mode::Cgroup,
            16,
        );
        assert_eq!(hello.agent_id, identity.agent_id);
        assert_eq!(hello.hostname, "web-1");
        assert_eq!(hello.agent_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(hello.os, std::env::consts::OS);
        assert_eq!(hello.labels.get("role").map(String::as_str), Some("web"));
        assert!(hello.executions_paused);
        assert_eq!(hello.paused_reason, "freeze");
        assert_eq!(hello.containment, "cgroup");
        assert_eq!(hello.max_concurrent_executions, 16);
        let summary = hello.allowlist.unwrap();
        assert_eq!(summary.sha256, allowlist.sha256().to_string());
        let rules = &summary.scripts[0];
        assert_eq!(rules.name, "restart");
        assert_eq!(rules.sha256, script_sha.to_string());
        assert_eq!(rules.timeout_seconds, 30);
        assert_eq!(rules.env, ["LOG_LEVEL"]);
        assert_eq!(
            rules.args[0].rule,
            Some(proto::argument_rule::Rule::Fixed("--now".into()))
        );
        assert_eq!(
            rules.args[1].rule,
            Some(proto::argument_rule::Rule::OneOf(proto::ValueSet {
                values: vec!["nginx".into(), "php".into()]
            }))
        );
        let rest = rules.rest.as_ref().unwrap();
        assert_eq!(rest.max_count, 2);
        assert_eq!(
            rest.rule.as_ref().unwrap().rule,
            Some(proto::argument_rule::Rule::Pattern(proto::Pattern {
                regex: "[a-z]+".into(),
                max_len: 16
            }))
        );
        assert!(!format!("{summary:?}").contains("/opt/medic"));
    }

    #[test]
    fn without_an_allowlist_nothing_is_advertised() {
        let identity = Identity {
            agent_id: "x".into(),
            hostname: "h".into(),
        };
        let hello = hello(
            &identity,
            &BTreeMap::new(),
            None,
            &Pause::default(),
            Mode::ProcessGroup,
            3,
        );
        assert!(hello.allowlist.is_none());
        assert!(!hello.executions_paused);
        assert_eq!(hello.containment, "process_group");
        assert_eq!(hello.max_concurrent_executions, 3);
    }
}
