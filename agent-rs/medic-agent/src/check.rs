//! `medic-agent check`: validate the configuration and the allowlist, verify every listed
//! script file exactly as an execution would (interpreters included), and print what the server
//! may ask for.

use std::fmt::Write as _;
use std::path::Path;

use medic_allowlist::{Allowlist, ArgumentRule, ScriptRules};

use crate::config::{Config, bootstrap_policy, process_env};

/// The outcome of a check: what to print, and the exit status.
pub struct Report {
    /// The text for standard output (or, for errors, standard error).
    pub text: String,
    /// 0: everything verified; 1: some script would be refused; 2: nothing can run.
    pub status: u8,
}

/// Check the configuration at `config_path` and everything it points to, trusting files owned
/// by `owner_uid` (root when `None`, unless the configuration says otherwise).
pub fn check(config_path: &Path, owner_uid: Option<u32>) -> Report {
    let bootstrap = bootstrap_policy(owner_uid, &process_env);
    let config = match Config::load_with_env(config_path, &bootstrap, &process_env) {
        Ok(config) => config,
        Err(error) => return fatal(format!("{}: {error}", config_path.display())),
    };
    let policy = &config.policy(owner_uid);
    let allowlist = match Allowlist::load(&config.allowlist, policy) {
        Ok(allowlist) => allowlist,
        Err(error) => {
            return fatal(format!(
                "{}: {error} ({})",
                config.allowlist.display(),
                error.code()
            ));
        }
    };
    let mut text = String::new();
    let _ = writeln!(text, "config     {}", config_path.display());
    let _ = writeln!(text, "server     {}", config.server);
    let labels: Vec<String> = config
        .labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let _ = writeln!(text, "labels     {}", none_if_empty(&labels.join(", ")));
    let _ = writeln!(
        text,
        "allowlist  {} (sha256 {}), {} script(s), {} interpreter(s) listed",
        config.allowlist.display(),
        allowlist.sha256(),
        allowlist.len(),
        allowlist.interpreters().len()
    );
    let mut refused = 0;
    for script in allowlist.scripts() {
        let rules = script.rules();
        let (verdict, interpreters) = match allowlist.open_script(script, policy) {
            Ok(verified) => ("ok".to_owned(), verified.interpreters().to_vec()),
            Err(refusal) => {
                refused += 1;
                (format!("REFUSED {refusal}"), Vec::new())
            }
        };
        let _ = writeln!(text, "\n{}  {verdict}", rules.name());
        let _ = writeln!(text, "  path     {}", script.path().display());
        if !interpreters.is_empty() {
            let chain: Vec<String> = interpreters
                .iter()
                .map(|path| path.display().to_string())
                .collect();
            let _ = writeln!(text, "  interp   {}", chain.join(" -> "));
        }
        let _ = writeln!(text, "  args     {}", describe_args(rules));
        let env: Vec<&str> = rules.env().iter().map(String::as_str).collect();
        let _ = writeln!(text, "  env      {}", none_if_empty(&env.join(", ")));
        let _ = writeln!(text, "  timeout  {} s", rules.timeout().as_secs());
    }
    if refused > 0 {
        let _ = writeln!(
            text,
            "\n{refused} script(s) would be refused as they are now"
        );
    }
    Report {
        text,
        status: u8::from(refused > 0),
    }
}

fn fatal(message: String) -> Report {
    Report {
        text: format!("medic-agent check: {message}\nnothing can run\n"),
        status: 2,
    }
}

fn none_if_empty(text: &str) -> &str {
    if text.is_empty() { "(none)" } else { text }
}

/// One line describing the arguments a script accepts.
pub fn describe_args(rules: &ScriptRules) -> String {
    let mut parts: Vec<String> = rules.args().iter().map(describe_rule).collect();
    if let Some(rest) = rules.rest() {
        parts.push(format!(
            "then up to {} x {}",
            rest.max_count,
            describe_rule(&rest.rule)
        ));
    }
    if parts.is_empty() {
        "(none)".to_owned()
    } else {
        parts.join("  ")
    }
}

fn describe_rule(rule: &ArgumentRule) -> String {
    match rule {
        ArgumentRule::Fixed(value) => format!("{value:?}"),
        ArgumentRule::OneOf(values) => format!("one of {values:?}"),
        ArgumentRule::Pattern(pattern) => {
            format!("/{}/ (<= {} bytes)", pattern.source(), pattern.max_len())
        }
    }
}

#[cfg(test)]
mod tests {
    use medic_allowlist::Sha256;

    use super::*;

    #[test]
    fn arguments_are_described_rule_by_rule() {
        let allowlist = Allowlist::from_toml(&format!(
            "version = 1\n[[script]]\nname = \"s\"\npath = \"/opt/s\"\nsha256 = \"{}\"\n\
             timeout = 5\nargs = [{{ fixed = \"-v\" }}, {{ one_of = [\"a\", \"b\"] }}]\n\
             rest = {{ pattern = \"[0-9]+\", max_len = 8, max_count = 3 }}\n",
            Sha256::of(b"")
        ))
        .unwrap();
        let rules = allowlist.get("s").unwrap().rules();
        assert_eq!(
            describe_args(rules),
            "\"-v\"  one of [\"a\", \"b\"]  then up to 3 x /[0-9]+/ (<= 8 bytes)"
        );
    }
}
