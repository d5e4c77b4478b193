//! Property tests: argument rules against simple oracles, counts, the `[[interpreter]]` table
//! against an oracle, and a parser that never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use medic_allowlist::{Allowlist, ArgumentRule, Pattern, Reason, Request};
use proptest::prelude::*;

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Arguments as the server might send them: short, any Unicode (NUL included), biased towards
/// the characters the rules below care about.
fn argument() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,10}",
        "[a-z0-9;| \\-]{0,10}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
        Just(String::from("a\0")),
    ]
}

/// Interpreter paths, and the problem each has on its own (`None`: a valid listing path).
const INTERPRETER_PATHS: &[(&str, Option<&str>)] = &[
    ("/usr/bin/python3", None),
    ("/usr/bin/perl", None),
    ("/opt/tools/bin/ruby", None),
    ("python3", Some("path_not_absolute")),
    ("", Some("path_not_absolute")),
    ("/usr/bin/../bin/perl", Some("path_not_canonical")),
    ("/usr/bin/", Some("path_not_canonical")),
    ("/", Some("path_not_canonical")),
];

/// The verdict the loader must give for these listings (path index, valid hash or not): the
/// count first, then each listing in order (its path, then its hash), then duplicates.
fn interpreter_oracle(listings: &[(usize, bool)]) -> &'static str {
    if listings.len() > medic_allowlist::MAX_INTERPRETERS {
        return "too_many_interpreters";
    }
    for &(path, good_hash) in listings {
        if let Some(problem) = INTERPRETER_PATHS[path].1 {
            return problem;
        }
        if !good_hash {
            return "invalid_sha256";
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    if listings.iter().any(|&(path, _)| !seen.insert(path)) {
        return "duplicate_interpreter";
    }
    "ok"
}

proptest! {
    #[test]
    fn the_interpreter_table_loads_exactly_when_every_listing_is_valid(
        listings in prop::collection::vec(
            (0..INTERPRETER_PATHS.len(), prop::bool::weighted(0.9)),
            0..4,
        ),
        many in prop::bool::weighted(0.1),
    ) {
        let mut listings = listings;
        if many {
            listings = (0..=medic_allowlist::MAX_INTERPRETERS).map(|_| (0, true)).collect();
        }
        let tables: String = listings
            .iter()
            .map(|&(path, good_hash)| {
                let hash = if good_hash { HASH } else { "not-a-hash" };
                format!(
                    "\n[[interpreter]]\npath = {:?}\nsha256 = \"{hash}\"\n",
                    INTERPRETER_PATHS[path].0
                )
            })
            .collect();
        let text = format!(
            "version = 1\n[[script]]\nname = \"s\"\npath = \"/opt/s\"\nsha256 = \"{HASH}\"\n\
             timeout = 1\n{tables}"
        );
        let verdict = match Allowlist::from_toml(&text) {
            Ok(allowlist) => {
                prop_assert_eq!(allowlist.interpreters().len(), listings.len());
                for &(path, _) in &listings {
                    let listed = allowlist
                        .interpreters()
                        .get(std::path::Path::new(INTERPRETER_PATHS[path].0))
                        .unwrap();
                    prop_assert_eq!(listed.sha256(), Some(HASH.parse().unwrap()));
                }
                "ok"
            }
            Err(error) => error.code(),
        };
        prop_assert_eq!(verdict, interpreter_oracle(&listings));
    }

    #[test]
    fn fixed_allows_exactly_its_value(value in "[ -~]{0,12}", arg in argument()) {
        let rule = ArgumentRule::Fixed(value.clone());
        prop_assert!(rule.allows(&value));
        prop_assert_eq!(rule.allows(&arg), arg == value);
    }

    #[test]
    fn one_of_allows_exactly_its_values(
        values in prop::collection::vec("[a-z]{1,4}", 1..6),
        arg in argument(),
    ) {
        let rule = ArgumentRule::OneOf(values.clone());
        prop_assert_eq!(rule.allows(&arg), values.contains(&arg));
    }

    #[test]
    fn an_anchored_pattern_allows_exactly_what_it_describes(arg in argument()) {
        let rule = ArgumentRule::Pattern(Pattern::new("[a-z]{1,8}", 8).unwrap());
        let oracle = (1..=8).contains(&arg.len()) && arg.bytes().all(|b| b.is_ascii_lowercase());
        prop_assert_eq!(rule.allows(&arg), oracle);
    }

    #[test]
    fn a_pattern_never_allows_more_than_max_len_bytes(max_len in 1usize..16, arg in ".{0,24}") {
        let rule = ArgumentRule::Pattern(Pattern::new("(?s).*", max_len).unwrap());
        prop_assert_eq!(rule.allows(&arg), arg.len() <= max_len && !arg.contains('\0'));
    }

    #[test]
    fn the_count_decides_between_missing_too_many_and_checking_each(
        positional in 0usize..4,
        rest in prop::option::of(1usize..4),
        count in 0usize..10,
    ) {
        let args: String = (0..positional).map(|i| format!("{{ fixed = \"p{i}\" }},")).collect();
        let rest_line = rest
            .map(|max| format!("rest = {{ pattern = \"[0-9]+\", max_count = {max} }}\n"))
            .unwrap_or_default();
        let allowlist = Allowlist::from_toml(&format!(
            "version = 1\n[[script]]\nname = \"s\"\npath = \"/opt/s\"\nsha256 = \"{HASH}\"\n\
             timeout = 1\nargs = [{args}]\n{rest_line}"
        )).unwrap();
        let request = Request {
            script: "s".into(),
            args: (0..count)
                .map(|i| if i < positional { format!("p{i}") } else { i.to_string() })
                .collect(),
            ..Request::default()
        };
        let max = positional + rest.unwrap_or(0);
        let outcome = allowlist.check(&request).map(|_| ()).map_err(|r| r.reason());
        let expected = if count < positional {
            Err(Reason::MissingArgs)
        } else if count > max {
            Err(Reason::TooManyArgs)
        } else {
            Ok(())
        };
        prop_assert_eq!(outcome, expected);
    }

    #[test]
    fn the_parser_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = Allowlist::from_toml(&text);
    }

    #[test]
    fn the_parser_never_panics_on_damaged_allowlists(cut in 0usize..400, len in 0usize..40) {
        let text = format!(
            "version = 1\n[[script]]\nname = \"s\"\npath = \"/opt/s\"\nsha256 = \"{HASH}\"\n\
             timeout = 1\nargs = [{{ one_of = [\"a\"] }}, {{ pattern = \"[a-z]+\", max_len = 9 }}]\n\
             rest = {{ fixed = \"x\", max_count = 2 }}\nenv = [\"A\"]\n"
        );
        let start = cut.min(text.len());
        let end = (start + len).min(text.len());
        let damaged: String = text
            .char_indices()
            .filter(|(i, _)| *i < start || *i >= end)
            .map(|(_, c)| c)
            .collect();
        let _ = Allowlist::from_toml(&damaged);
    }
}
