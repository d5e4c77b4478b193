//! Property tests over generated valid allowlists: they parse, their rules rebuild identically
//! through the path-less constructors, a request built to satisfy an entry is allowed by both
//! the allowlist and its rule set, and each single mutation of it is refused with its own code
//! (and a detail that does not repeat the mutated value).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use medic_allowlist::{Allowlist, Reason, Request, RuleSet, ScriptRules, Sha256};
use proptest::prelude::*;
use proptest::sample::select;

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const OTHER_HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Patterns whose source is also a proptest strategy for the strings they match as a whole,
/// none of which matches a `;` (the mutation below relies on it).
const PATTERNS: [&str; 5] = [
    "[a-z]{1,8}",
    "[0-9]{1,6}",
    "[a-z0-9-]{1,12}",
    "(start|stop|status)",
    "v[0-9]\\.[0-9]",
];

#[derive(Debug, Clone)]
enum Rule {
    Fixed(String),
    OneOf(Vec<String>),
    Pattern(&'static str),
}

impl Rule {
    fn toml(&self) -> String {
        match self {
            Rule::Fixed(value) => format!("{{ fixed = {value:?} }}"),
            Rule::OneOf(values) => format!("{{ one_of = {values:?} }}"),
            // A literal string: the backslash stays as it is.
            Rule::Pattern(source) => format!("{{ pattern = '{source}', max_len = 16 }}"),
        }
    }

    fn value(&self) -> BoxedStrategy<String> {
        match self {
            Rule::Fixed(value) => Just(value.clone()).boxed(),
            Rule::OneOf(values) => select(values.clone()).boxed(),
            Rule::Pattern(source) => (*source).boxed(),
        }
    }
}

fn rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        "[a-z-]{0,6}".prop_map(Rule::Fixed),
        prop::collection::vec("[a-z]{1,4}", 1..4).prop_map(Rule::OneOf),
        select(PATTERNS.to_vec()).prop_map(Rule::Pattern),
    ]
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    args: Vec<Rule>,
    rest: Option<(Rule, usize)>,
    env: Vec<String>,
    timeout: u64,
}

impl Entry {
    fn toml(&self) -> String {
        let args: Vec<String> = self.args.iter().map(Rule::toml).collect();
        let mut text = format!(
            "[[script]]\nname = {:?}\npath = \"/opt/medic/{}\"\nsha256 = \"{HASH}\"\n\
             timeout = {}\nargs = [{}]\nenv = {:?}\n",
            self.name,
            self.name,
            self.timeout,
            args.join(", "),
            self.env
        );
        if let Some((rule, max_count)) = &self.rest {
            let rule = rule.toml();
            let inner = &rule[1..rule.len() - 1];
            text.push_str(&format!("rest = {{{inner}, max_count = {max_count} }}\n"));
        }
        text
    }

    fn min_args(&self) -> usize {
        self.args.len()
    }

    fn max_args(&self) -> usize {
        self.args.len() + self.rest.as_ref().map_or(0, |(_, count)| *count)
    }

    /// The rule argument `index` (from 0) must satisfy.
    fn rule_at(&self, index: usize) -> &Rule {
        self.args
            .get(index)
            .or(self.rest.as_ref().map(|(rule, _)| rule))
            .unwrap()
    }
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        "[a-z][a-z0-9_.-]{0,12}",
        prop::collection::vec(rule(), 0..4),
        prop::option::of((rule(), 1usize..4)),
        prop::collection::vec("MEDIC_[A-Z0-9_]{1,6}", 0..4),
        1u64..=86_400,
    )
        .prop_map(|(name, args, rest, env, timeout)| Entry {
            name,
            args,
            rest,
            env,
            timeout,
        })
}

fn allowlist_text(entries: &[Entry]) -> String {
    let mut text = String::from("version = 1\n");
    for entry in entries {
        text.push('\n');
        text.push_str(&entry.toml());
    }
    text
}

/// A request that satisfies `entry`.
fn satisfying(entry: &Entry) -> BoxedStrategy<Request> {
    let entry = entry.clone();
    (entry.min_args()..=entry.max_args())
        .prop_flat_map(move |count| {
            let args: Vec<BoxedStrategy<String>> = (0..count)
                .map(|index| entry.rule_at(index).value())
                .collect();
            let env = prop::sample::subsequence(entry.env.clone(), 0..=entry.env.len())
                .prop_flat_map(|names| {
                    let values: Vec<_> = names.iter().map(|_| "[ -~]{0,12}").collect();
                    (Just(names), values)
                });
            let timeout = prop::option::of(0..=entry.timeout);
            let expected = prop::option::of(Just(HASH.parse::<Sha256>().unwrap()));
            (Just(entry.name.clone()), args, env, timeout, expected)
        })
        .prop_map(
            |(script, args, (names, values), timeout, expected_sha256)| Request {
                script,
                args,
                env: names.into_iter().zip(values).collect::<BTreeMap<_, _>>(),
                timeout: timeout.map(Duration::from_secs),
                expected_sha256,
            },
        )
        .boxed()
}

fn entry_and_request() -> impl Strategy<Value = (Entry, Request)> {
    entry().prop_flat_map(|entry| (Just(entry.clone()), satisfying(&entry)))
}

fn verdicts(allowlist: &Allowlist, request: &Request) -> (Result<Duration, Reason>, String) {
    let by_allowlist = allowlist.check(request);
    let by_rule_set = allowlist
        .rule_set()
        .check(request)
        .map(|allowed| allowed.timeout())
        .map_err(|refusal| refusal.reason());
    let verdict = by_allowlist
        .as_ref()
        .map(|approved| approved.timeout())
        .map_err(|refusal| refusal.reason());
    assert_eq!(
        verdict, by_rule_set,
        "the allowlist and its rule set disagree"
    );
    let detail = by_allowlist
        .err()
        .map(|refusal| refusal.detail().to_owned());
    (verdict, detail.unwrap_or_default())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn generated_allowlists_parse_and_rebuild_without_a_file(
        entries in prop::collection::vec(entry(), 0..5),
    ) {
        // Names must be distinct: suffix each with its position.
        let entries: Vec<Entry> = entries
            .into_iter()
            .enumerate()
            .map(|(index, entry)| Entry { name: format!("{}{index}", entry.name), ..entry })
            .collect();
        let allowlist = Allowlist::from_toml(&allowlist_text(&entries)).unwrap();
        prop_assert_eq!(allowlist.len(), entries.len());
        let rebuilt: Vec<ScriptRules> = allowlist
            .scripts()
            .map(|script| {
                let rules = script.rules();
                ScriptRules::new(
                    rules.name().to_owned(),
                    rules.sha256(),
                    rules.args().to_vec(),
                    rules.rest().cloned(),
                    rules.env().iter().cloned().collect(),
                    rules.timeout(),
                )
                .unwrap()
            })
            .collect();
        for (rules, script) in rebuilt.iter().zip(allowlist.scripts()) {
            prop_assert_eq!(rules, script.rules());
        }
        let set = RuleSet::new(allowlist.sha256(), rebuilt).unwrap();
        prop_assert_eq!(set, allowlist.rule_set());
    }

    #[test]
    fn a_request_built_to_satisfy_the_rules_is_allowed((entry, request) in entry_and_request()) {
        let allowlist = Allowlist::from_toml(&allowlist_text(std::slice::from_ref(&entry))).unwrap();
        let (verdict, _) = verdicts(&allowlist, &request);
        let expected = match request.timeout {
            Some(timeout) if !timeout.is_zero() => timeout,
            _ => Duration::from_secs(entry.timeout),
        };
        prop_assert_eq!(verdict, Ok(expected));
    }

    #[test]
    fn each_single_mutation_is_refused_with_its_own_code(
        (entry, request) in entry_and_request(),
        mutation in 0usize..8,
        position in any::<prop::sample::Index>(),
    ) {
        let allowlist = Allowlist::from_toml(&allowlist_text(std::slice::from_ref(&entry))).unwrap();
        let mut bad = request.clone();
        let mut secret = None;
        let expected = match mutation {
            0 => {
                bad.script.push('x');
                Reason::NotAllowlisted
            }
            1 => {
                bad.expected_sha256 = Some(OTHER_HASH.parse().unwrap());
                Reason::ExpectedHashMismatch
            }
            2 => {
                bad.timeout = Some(Duration::from_secs(entry.timeout + 1));
                Reason::TimeoutTooLong
            }
            3 if entry.min_args() > 0 => {
                bad.args.truncate(entry.min_args() - 1);
                Reason::MissingArgs
            }
            4 => {
                while bad.args.len() <= entry.max_args() {
                    bad.args.push("a".into());
                }
                Reason::TooManyArgs
            }
            5 if !bad.args.is_empty() => {
                let index = position.index(bad.args.len());
                // No generated rule allows a `;`.
                let value = format!("SECRET-ARG;{}", bad.args[index]);
                bad.args[index] = value.clone();
                secret = Some(value);
                Reason::ArgNotAllowed
            }
            6 => {
                bad.env.insert("NOT_LISTED".into(), "SECRET-VALUE".into());
                secret = Some("SECRET-VALUE".into());
                Reason::EnvNotAllowed
            }
            7 if !entry.env.is_empty() => {
                let name = entry.env[position.index(entry.env.len())].clone();
                bad.env.insert(name, "SECRET-VALUE\0".into());
                secret = Some("SECRET-VALUE".into());
                Reason::EnvValueInvalid
            }
            // The mutation does not apply to this entry: nothing to check.
            _ => return Ok(()),
        };
        let (verdict, detail) = verdicts(&allowlist, &bad);
        prop_assert_eq!(verdict, Err(expected));
        if let Some(secret) = secret {
            prop_assert!(!detail.contains("SECRET"), "{} leaks {}", detail, secret);
        }
    }

    #[test]
    fn arbitrary_requests_get_the_same_verdict_from_the_allowlist_and_its_rule_set(
        entry in entry(),
        args in prop::collection::vec("[a-z0-9;-]{0,6}", 0..8),
        env in prop::collection::btree_map("[A-Z_]{1,8}", "[a-z\0]{0,3}", 0..3),
        timeout in prop::option::of(0u64..100_000),
        known_name in any::<bool>(),
    ) {
        let allowlist = Allowlist::from_toml(&allowlist_text(std::slice::from_ref(&entry))).unwrap();
        let request = Request {
            script: if known_name { entry.name.clone() } else { "other".into() },
            args,
            env,
            timeout: timeout.map(Duration::from_secs),
            expected_sha256: None,
        };
        let _ = verdicts(&allowlist, &request);
    }
}
