//! Rules built without any file, as the server builds them from an agent's advertised summary:
//! the same bounds as the allowlist loader, and the same check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use medic_allowlist::{
    Allowlist, ArgumentRule, LoadError, Pattern, Problem, Reason, Request, RestArguments,
    RulePosition, RuleSet, RuleSpec, ScriptRules, Sha256,
};

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn hash() -> Sha256 {
    HASH.parse().unwrap()
}

fn rules(name: &str, args: Vec<ArgumentRule>, rest: Option<RestArguments>) -> ScriptRules {
    ScriptRules::new(
        name.into(),
        hash(),
        args,
        rest,
        vec!["LOG_LEVEL".into()],
        Duration::from_secs(60),
    )
    .unwrap()
}

fn new_problem(
    name: &str,
    args: Vec<ArgumentRule>,
    rest: Option<RestArguments>,
    env: &[&str],
    timeout: Duration,
) -> &'static str {
    let env = env.iter().map(|name| (*name).to_owned()).collect();
    ScriptRules::new(name.into(), hash(), args, rest, env, timeout)
        .unwrap_err()
        .code()
}

fn spec_problem(spec: RuleSpec) -> Problem {
    spec.build(RulePosition::Argument(2)).unwrap_err()
}

#[test]
fn script_rules_new_holds_rules_to_the_bounds_of_the_format() {
    let minute = Duration::from_secs(60);
    assert_eq!(
        new_problem("Bad", vec![], None, &[], minute),
        "invalid_name"
    );
    assert_eq!(
        new_problem("x", vec![], None, &[], Duration::ZERO),
        "invalid_timeout"
    );
    assert_eq!(
        new_problem("x", vec![], None, &[], Duration::from_millis(1500)),
        "invalid_timeout",
        "whole seconds only"
    );
    assert_eq!(
        new_problem("x", vec![], None, &[], Duration::from_secs(86_401)),
        "invalid_timeout"
    );
    let empty_one_of = ArgumentRule::OneOf(vec![]);
    assert_eq!(
        new_problem("x", vec![empty_one_of], None, &[], minute),
        "invalid_rule"
    );
    let nul = ArgumentRule::Fixed("a\0".into());
    assert_eq!(
        new_problem("x", vec![nul], None, &[], minute),
        "invalid_rule"
    );
    let long = ArgumentRule::OneOf(vec!["a".repeat(4097)]);
    assert_eq!(
        new_problem("x", vec![long], None, &[], minute),
        "invalid_rule"
    );
    let zero_rest = RestArguments {
        rule: ArgumentRule::Fixed("a".into()),
        max_count: 0,
    };
    assert_eq!(
        new_problem("x", vec![], Some(zero_rest), &[], minute),
        "invalid_rule"
    );
    let huge_rest = RestArguments {
        rule: ArgumentRule::Fixed("a".into()),
        max_count: usize::MAX,
    };
    assert_eq!(
        new_problem("x", vec![], Some(huge_rest), &[], minute),
        "too_many_args"
    );
    assert_eq!(
        new_problem("x", vec![], None, &["A B"], minute),
        "invalid_env_name"
    );
    assert_eq!(
        new_problem("x", vec![], None, &["LD_AUDIT"], minute),
        "forbidden_env_name"
    );
    let many: Vec<String> = (0..65).map(|i| format!("V{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        new_problem("x", vec![], None, &many, minute),
        "invalid_env_name"
    );
}

#[test]
fn rule_specs_need_exactly_one_kind_and_name_their_position() {
    let problem = spec_problem(RuleSpec::default());
    assert_eq!(problem.code(), "invalid_rule");
    assert!(problem.to_string().starts_with("argument 2: "), "{problem}");
    let both = RuleSpec {
        fixed: Some("a".into()),
        pattern: Some("a".into()),
        ..RuleSpec::default()
    };
    assert_eq!(spec_problem(both).code(), "invalid_rule");
    let stray_max_len = RuleSpec {
        one_of: Some(vec!["a".into()]),
        max_len: Some(4),
        ..RuleSpec::default()
    };
    assert_eq!(spec_problem(stray_max_len).code(), "invalid_rule");
    for max_len in [Some(0), Some(-1), Some(4097), Some(i64::MAX)] {
        let spec = RuleSpec {
            pattern: Some("a".into()),
            max_len,
            ..RuleSpec::default()
        };
        assert_eq!(spec_problem(spec).code(), "invalid_pattern", "{max_len:?}");
    }
    let rest = RuleSpec {
        pattern: Some("(".into()),
        ..RuleSpec::default()
    };
    let problem = rest.build(RulePosition::Rest).unwrap_err();
    assert_eq!(problem.code(), "invalid_pattern");
    assert!(problem.to_string().starts_with("rest: "), "{problem}");
    let default_len = RuleSpec {
        pattern: Some("[a-z]+".into()),
        ..RuleSpec::default()
    };
    assert_eq!(
        default_len.build(RulePosition::Rest).unwrap(),
        ArgumentRule::Pattern(Pattern::new("[a-z]+", 256).unwrap())
    );
}

#[test]
fn a_rule_set_refuses_duplicate_names_and_more_than_1024_entries() {
    let error =
        RuleSet::new(hash(), [rules("a", vec![], None), rules("a", vec![], None)]).unwrap_err();
    assert_eq!(error.code(), "duplicate_name");
    assert!(matches!(error, LoadError::Entry { index: 2, .. }));
    let many = (0..1025).map(|i| rules(&format!("s{i}"), vec![], None));
    assert_eq!(
        RuleSet::new(hash(), many).unwrap_err().code(),
        "too_many_scripts"
    );
    let set = RuleSet::new(
        hash(),
        (0..1024).map(|i| rules(&format!("s{i}"), vec![], None)),
    );
    assert_eq!(set.unwrap().len(), 1024);
}

#[test]
fn a_rule_set_checks_requests_like_the_allowlist_it_was_advertised_from() {
    let text = format!(
        "version = 1\n[[script]]\nname = \"restart\"\npath = \"/opt/restart\"\n\
         sha256 = \"{HASH}\"\ntimeout = 60\nargs = [{{ one_of = [\"nginx\"] }}]\n\
         rest = {{ fixed = \"-v\", max_count = 1 }}\nenv = [\"LOG_LEVEL\"]\n"
    );
    let allowlist = Allowlist::from_toml(&text).unwrap();
    let built = RuleSet::new(
        allowlist.sha256(),
        [rules(
            "restart",
            vec![ArgumentRule::OneOf(vec!["nginx".into()])],
            Some(RestArguments {
                rule: ArgumentRule::Fixed("-v".into()),
                max_count: 1,
            }),
        )],
    )
    .unwrap();
    assert_eq!(built, allowlist.rule_set());
    assert!(!built.is_empty());
    assert_eq!(built.get("restart").unwrap().name(), "restart");
    assert_eq!(built.scripts().count(), 1);
    let request = |script: &str, args: &[&str]| Request {
        script: script.into(),
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        timeout: Some(Duration::from_secs(10)),
        ..Request::default()
    };
    let allowed = built.check(&request("restart", &["nginx", "-v"])).unwrap();
    assert_eq!(allowed.timeout(), Duration::from_secs(10));
    assert_eq!(allowed.rules().name(), "restart");
    for (script, args, reason) in [
        ("stop", &["nginx"][..], Reason::NotAllowlisted),
        ("restart", &[][..], Reason::MissingArgs),
        ("restart", &["apache"][..], Reason::ArgNotAllowed),
        ("restart", &["nginx", "-v", "-v"][..], Reason::TooManyArgs),
    ] {
        let request = request(script, args);
        assert_eq!(built.check(&request).unwrap_err().reason(), reason);
        assert_eq!(allowlist.check(&request).unwrap_err().reason(), reason);
    }
}

#[test]
fn script_rules_check_refuses_a_request_for_another_entry() {
    let rules = rules("restart", vec![], None);
    let other = Request {
        script: "stop".into(),
        ..Request::default()
    };
    assert_eq!(
        rules.check(&other).unwrap_err().reason(),
        Reason::NotAllowlisted
    );
    let same = Request {
        script: "restart".into(),
        ..Request::default()
    };
    assert_eq!(rules.check(&same), Ok(Duration::from_secs(60)));
}

#[test]
fn allowlist_text_over_1_mib_is_too_large() {
    let text = format!("version = 1\n#{}\n", "x".repeat(1024 * 1024));
    assert_eq!(Allowlist::from_toml(&text).unwrap_err().code(), "too_large");
}

#[test]
fn the_rule_check_reasons_are_the_first_eight_in_order() {
    assert_eq!(Reason::RULE_CHECKS[..], Reason::ALL[..8]);
}
