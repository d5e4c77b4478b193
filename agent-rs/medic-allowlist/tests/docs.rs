//! docs/allowlist.md stays true: its example parses and allows what the text says, and its
//! tables list exactly the codes this crate produces.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use medic_allowlist::{
    Allowlist, FORBIDDEN_ENV_NAMES, FORBIDDEN_ENV_PREFIXES, LoadError, Reason, Request,
};

const DOC: &str = include_str!("../../../docs/allowlist.md");

/// The codes in the first column of the table under the `## {heading}` section.
fn table_codes(heading: &str) -> Vec<&'static str> {
    let start = DOC
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading}"));
    let section = &DOC[start + 1..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 3)];
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(code, _)| code))
        .collect()
}

#[test]
fn the_reason_table_lists_every_reason_code_in_order() {
    let codes: Vec<&str> = Reason::ALL.iter().map(|reason| reason.as_str()).collect();
    assert_eq!(table_codes("Reason codes"), codes);
}

#[test]
fn the_error_table_lists_every_load_error_code_in_order() {
    assert_eq!(table_codes("Errors in the file"), LoadError::CODES);
}

#[test]
fn the_environment_section_names_every_forbidden_variable_and_family() {
    let start = DOC
        .find("### Environment\n")
        .expect("an Environment section");
    let section = &DOC[start..start + DOC[start..].find("\n### Interpreters").unwrap()];
    for name in FORBIDDEN_ENV_NAMES {
        assert!(
            section.contains(&format!("`{name}`")),
            "{name} is not documented"
        );
    }
    for prefix in FORBIDDEN_ENV_PREFIXES {
        assert!(
            section.contains(&format!("`{prefix}*`")),
            "{prefix}* is not documented"
        );
    }
}

#[test]
fn the_example_parses_and_allows_what_the_text_says() {
    let start = DOC.find("```toml\n").expect("an example") + "```toml\n".len();
    let example = &DOC[start..start + DOC[start..].find("```").expect("end of the example")];
    let allowlist = Allowlist::from_toml(example).unwrap();
    let allowed = |script: &str, args: &[&str]| {
        let request = Request {
            script: script.into(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            ..Request::default()
        };
        allowlist.check(&request).is_ok()
    };
    assert!(allowed("restart-service", &["--graceful", "nginx"]));
    assert!(allowed(
        "restart-service",
        &["--graceful", "php-fpm", "eu-west-1", "canary"]
    ));
    assert!(allowed("rotate-logs", &["/var/log/nginx.log"]));
    assert!(!allowed("restart-service", &["--graceful", "nginx;reboot"]));
    for traversal in ["/var/log/..", "/var/log/../shadow", "/var/log/.hidden"] {
        assert!(!allowed("rotate-logs", &[traversal]), "{traversal}");
    }
    assert!(!allowed("restart-service", &["nginx"]));
    assert!(
        allowlist
            .interpreters()
            .get(std::path::Path::new("/usr/bin/python3"))
            .is_some()
    );
}
