//! Reading allowlist text, and checking requests against it (no files involved).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use medic_allowlist::{Allowlist, ArgumentRule, LoadError, Reason, Request, Sha256};

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const OTHER_HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn allowlist() -> Allowlist {
    Allowlist::from_toml(&format!(
        r#"
version = 1

[[script]]
name = "restart-service"
description = "Restart one of the web services"
path = "/opt/medic/scripts/restart-service.sh"
sha256 = "{HASH}"
timeout = 120
args = [
  {{ fixed = "--graceful" }},
  {{ one_of = ["nginx", "php-fpm"] }},
]
rest = {{ pattern = "[a-z0-9-]{{1,32}}", max_count = 2 }}
env = ["LOG_LEVEL", "DRY_RUN"]

[[script]]
name = "no-args"
path = "/opt/medic/scripts/no-args"
sha256 = "{OTHER_HASH}"
timeout = 5
"#
    ))
    .unwrap()
}

fn request(args: &[&str]) -> Request {
    Request {
        script: "restart-service".into(),
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        ..Request::default()
    }
}

fn refused(allowlist: &Allowlist, request: &Request) -> Reason {
    allowlist.check(request).unwrap_err().reason()
}

fn load_error(text: &str) -> LoadError {
    Allowlist::from_toml(text).unwrap_err()
}

fn entry(body: &str) -> String {
    format!(
        "version = 1\n[[script]]\nname = \"x\"\npath = \"/opt/x\"\nsha256 = \"{HASH}\"\ntimeout = 10\n{body}\n"
    )
}

// ---- reading ----------------------------------------------------------------------------------

#[test]
fn a_valid_allowlist_exposes_its_entries_and_rules() {
    let allowlist = allowlist();
    assert_eq!(allowlist.len(), 2);
    let names: Vec<&str> = allowlist.scripts().map(|script| script.name()).collect();
    assert_eq!(names, ["no-args", "restart-service"]);
    let script = allowlist.get("restart-service").unwrap();
    assert_eq!(
        script.path().to_str(),
        Some("/opt/medic/scripts/restart-service.sh")
    );
    assert_eq!(
        script.description(),
        Some("Restart one of the web services")
    );
    let rules = script.rules();
    assert_eq!(rules.sha256().to_string(), HASH);
    assert_eq!(rules.timeout(), Duration::from_secs(120));
    assert_eq!(
        rules.args()[0],
        ArgumentRule::Fixed("--graceful".to_owned())
    );
    assert_eq!((rules.min_args(), rules.max_args()), (2, 4));
    assert_eq!(rules.rest().unwrap().max_count, 2);
    assert!(rules.env().contains("DRY_RUN"));
}

#[test]
fn allowlist_digest_is_the_sha256_of_its_text() {
    let text = entry("");
    assert_eq!(
        Allowlist::from_toml(&text).unwrap().sha256(),
        Sha256::of(text.as_bytes())
    );
}

#[test]
fn an_allowlist_without_scripts_is_valid_and_allows_nothing() {
    let empty = Allowlist::from_toml("version = 1\n").unwrap();
    assert!(empty.is_empty());
    assert_eq!(refused(&empty, &request(&[])), Reason::NotAllowlisted);
}

#[test]
fn syntax_errors_unknown_keys_and_missing_keys_make_the_file_invalid() {
    for text in [
        "version = ",
        "",
        "version = \"1\"",
        "version = 1\nextra = true",
        &entry("argz = []"),
        &entry("args = [{ fixed = \"a\", typo = 1 }]"),
        "version = 1\n[[script]]\nname = \"x\"\npath = \"/opt/x\"\ntimeout = 10\n",
    ] {
        assert_eq!(load_error(text).code(), "invalid_toml", "{text}");
    }
}

#[test]
fn other_format_versions_are_refused_by_name() {
    let error = load_error("version = 2\n[[script]]\nnew_key = 1\n");
    assert!(matches!(error, LoadError::UnsupportedVersion(2)));
    assert_eq!(error.code(), "unsupported_version");
}

#[test]
fn each_invalid_entry_is_reported_with_its_code_position_and_name() {
    let cases = [
        (entry("").replace("\"x\"", "\"Bad Name\""), "invalid_name"),
        (entry("").replace("/opt/x", "opt/x"), "path_not_absolute"),
        (
            entry("").replace("/opt/x", "/opt/../x"),
            "path_not_canonical",
        ),
        (entry("").replace("/opt/x", "/opt/x/"), "path_not_canonical"),
        (entry("").replace(HASH, "abc"), "invalid_sha256"),
        (
            entry("").replace("timeout = 10", "timeout = 0"),
            "invalid_timeout",
        ),
        (
            entry("").replace("timeout = 10", "timeout = 86401"),
            "invalid_timeout",
        ),
        (
            entry("").replace("timeout = 10", "timeout = -1"),
            "invalid_timeout",
        ),
        (entry("args = [{}]"), "invalid_rule"),
        (
            entry("args = [{ fixed = \"a\", one_of = [\"a\"] }]"),
            "invalid_rule",
        ),
        (entry("args = [{ one_of = [] }]"), "invalid_rule"),
        (
            entry("args = [{ fixed = \"a\", max_len = 3 }]"),
            "invalid_rule",
        ),
        (entry("args = [{ fixed = \"a\\u0000\" }]"), "invalid_rule"),
        (entry("args = [{ pattern = \"(\" }]"), "invalid_pattern"),
        (
            entry("args = [{ pattern = \"a\", max_len = 0 }]"),
            "invalid_pattern",
        ),
        (
            entry("args = [{ pattern = \"a\", max_len = 4097 }]"),
            "invalid_pattern",
        ),
        (
            entry("args = [{ pattern = \"a{1000}{1000}\" }]"),
            "invalid_pattern",
        ),
        (
            entry("rest = { pattern = \"a\", max_count = 0 }"),
            "invalid_rule",
        ),
        (
            entry("rest = { pattern = \"a\", max_count = 65 }"),
            "too_many_args",
        ),
        (entry("env = [\"A-B\"]"), "invalid_env_name"),
        (entry("env = [\"LD_PRELOAD\"]"), "forbidden_env_name"),
        (entry("env = [\"PATH\"]"), "forbidden_env_name"),
    ];
    for (text, code) in cases {
        let error = load_error(&text);
        assert_eq!(error.code(), code, "{text}\n{error}");
        assert!(
            matches!(&error, LoadError::Entry { index: 1, .. }),
            "{error}"
        );
    }
}

#[test]
fn duplicate_names_are_refused() {
    let text = format!("{}\n{}", entry(""), entry("").replace("version = 1\n", ""));
    let error = load_error(&text);
    assert_eq!(error.code(), "duplicate_name");
    assert!(matches!(error, LoadError::Entry { index: 2, .. }));
}

// ---- checking requests ------------------------------------------------------------------------

#[test]
fn a_request_within_every_rule_is_approved_with_the_entry_timeout() {
    let allowlist = allowlist();
    let mut ok = request(&["--graceful", "nginx", "eu-west-1", "b2"]);
    ok.env = BTreeMap::from([("LOG_LEVEL".into(), "debug".into())]);
    let approved = allowlist.check(&ok).unwrap();
    assert_eq!(approved.script().name(), "restart-service");
    assert_eq!(approved.timeout(), Duration::from_secs(120));
    assert!(
        allowlist
            .check(&request(&["--graceful", "php-fpm"]))
            .is_ok()
    );
}

#[test]
fn an_unknown_script_is_not_allowlisted() {
    let mut unknown = request(&[]);
    unknown.script = "rm-rf".into();
    assert_eq!(refused(&allowlist(), &unknown), Reason::NotAllowlisted);
}

#[test]
fn a_request_expecting_another_hash_is_refused() {
    let allowlist = allowlist();
    let mut stale = request(&["--graceful", "nginx"]);
    stale.expected_sha256 = Some(OTHER_HASH.parse().unwrap());
    assert_eq!(refused(&allowlist, &stale), Reason::ExpectedHashMismatch);
    stale.expected_sha256 = Some(HASH.parse().unwrap());
    assert!(allowlist.check(&stale).is_ok());
}

#[test]
fn a_shorter_timeout_applies_and_a_longer_one_is_refused() {
    let allowlist = allowlist();
    let mut shorter = request(&["--graceful", "nginx"]);
    shorter.timeout = Some(Duration::from_secs(30));
    assert_eq!(
        allowlist.check(&shorter).unwrap().timeout(),
        Duration::from_secs(30)
    );
    shorter.timeout = Some(Duration::ZERO);
    assert_eq!(
        allowlist.check(&shorter).unwrap().timeout(),
        Duration::from_secs(120),
        "zero means the entry's timeout"
    );
    shorter.timeout = Some(Duration::from_secs(121));
    assert_eq!(refused(&allowlist, &shorter), Reason::TimeoutTooLong);
}

#[test]
fn argument_counts_outside_the_rules_are_refused() {
    let allowlist = allowlist();
    assert_eq!(
        refused(&allowlist, &request(&["--graceful"])),
        Reason::MissingArgs
    );
    assert_eq!(
        refused(
            &allowlist,
            &request(&["--graceful", "nginx", "a", "b", "c"])
        ),
        Reason::TooManyArgs
    );
    let mut none = request(&["x"]);
    none.script = "no-args".into();
    assert_eq!(refused(&allowlist, &none), Reason::TooManyArgs);
    none.args.clear();
    assert!(allowlist.check(&none).is_ok());
}

#[test]
fn each_argument_must_satisfy_its_own_rule() {
    let allowlist = allowlist();
    for args in [
        ["--force", "nginx", "a"],      // fixed
        ["--graceful", "apache", "a"],  // one_of
        ["--graceful", "nginx", "A"],   // rest pattern (ASCII lower case only)
        ["--graceful", "nginx", "a;b"], // rest pattern, anchored
        ["--graceful", "nginx", "a\0"], // NUL
        ["--graceful", "nginx\0", "a"], // NUL in a one_of argument
    ] {
        assert_eq!(
            refused(&allowlist, &request(&args)),
            Reason::ArgNotAllowed,
            "{args:?}"
        );
    }
    let long = "a".repeat(33);
    assert_eq!(
        refused(&allowlist, &request(&["--graceful", "nginx", &long])),
        Reason::ArgNotAllowed
    );
}

#[test]
fn environment_names_must_be_allowed_and_values_bounded() {
    let allowlist = allowlist();
    let mut with_env = request(&["--graceful", "nginx"]);
    with_env.env = BTreeMap::from([("LD_PRELOAD".into(), "/tmp/x.so".into())]);
    assert_eq!(refused(&allowlist, &with_env), Reason::EnvNotAllowed);
    with_env.env = BTreeMap::from([("log_level".into(), "debug".into())]);
    assert_eq!(refused(&allowlist, &with_env), Reason::EnvNotAllowed);
    with_env.env = BTreeMap::from([("DRY_RUN".into(), "1\u{0}2".into())]);
    assert_eq!(refused(&allowlist, &with_env), Reason::EnvValueInvalid);
    with_env.env = BTreeMap::from([("DRY_RUN".into(), "1".repeat(4097))]);
    assert_eq!(refused(&allowlist, &with_env), Reason::EnvValueInvalid);
    with_env.env = BTreeMap::from([("DRY_RUN".into(), "1".repeat(4096))]);
    assert!(allowlist.check(&with_env).is_ok());
}

#[test]
fn checks_run_in_the_documented_order() {
    let allowlist = allowlist();
    // Everything wrong at once: the hash is reported first, then the timeout, the arguments,
    // the environment.
    let mut bad = request(&["--force"]);
    bad.expected_sha256 = Some(OTHER_HASH.parse().unwrap());
    bad.timeout = Some(Duration::from_secs(999));
    bad.env = BTreeMap::from([("NOPE".into(), String::new())]);
    assert_eq!(refused(&allowlist, &bad), Reason::ExpectedHashMismatch);
    bad.expected_sha256 = None;
    assert_eq!(refused(&allowlist, &bad), Reason::TimeoutTooLong);
    bad.timeout = None;
    assert_eq!(refused(&allowlist, &bad), Reason::MissingArgs);
    bad.args = vec!["--force".into(), "nginx".into()];
    assert_eq!(refused(&allowlist, &bad), Reason::ArgNotAllowed);
    bad.args[0] = "--graceful".into();
    assert_eq!(refused(&allowlist, &bad), Reason::EnvNotAllowed);
}

#[test]
fn refusal_details_never_repeat_argument_or_environment_values() {
    let allowlist = allowlist();
    let mut secret = request(&["--graceful", "nginx", "hunter2-SECRET"]);
    let detail = allowlist.check(&secret).unwrap_err().detail().to_owned();
    assert!(!detail.contains("hunter2"), "{detail}");
    assert!(detail.contains("argument 3"), "{detail}");
    secret.args.truncate(2);
    secret.env = BTreeMap::from([("DRY_RUN".into(), "SECRET\0".into())]);
    let detail = allowlist.check(&secret).unwrap_err().detail().to_owned();
    assert!(!detail.contains("SECRET"), "{detail}");
}
