//! The shared test vectors (`tests/vectors/allowlist`, described in its README): the same cases
//! the Python bindings are tested with, so the agent and the server agree case by case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use medic_allowlist::{Allowlist, LoadError, Reason, Request};
use toml::{Table, Value};

fn vectors(kind: &str) -> Vec<(PathBuf, Table)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/allowlist")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no vectors in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            let table =
                toml::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            (path, table)
        })
        .collect()
}

fn cases(file: &Table) -> &[Value] {
    file["case"].as_array().expect("an array of [[case]]")
}

/// A text of the vectors: a string, `{ repeat, times }` or `{ concat = [...] }`.
fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Table(table) if table.contains_key("repeat") => {
            let times = table["times"].as_integer().expect("times");
            table["repeat"]
                .as_str()
                .expect("repeat")
                .repeat(usize::try_from(times).unwrap())
        }
        Value::Table(table) => table["concat"]
            .as_array()
            .expect("concat")
            .iter()
            .map(text)
            .collect(),
        other => panic!("not a text: {other:?}"),
    }
}

fn name(case: &Value) -> &str {
    case["name"].as_str().expect("name")
}

fn expect(case: &Value) -> &str {
    case["expect"].as_str().expect("expect")
}

fn request(case: &Value) -> Request {
    let case = case.as_table().unwrap();
    Request {
        script: case["script"].as_str().expect("script").to_owned(),
        args: case
            .get("args")
            .map(|args| args.as_array().unwrap().iter().map(text).collect())
            .unwrap_or_default(),
        env: case
            .get("env")
            .map(|env| {
                env.as_table()
                    .unwrap()
                    .iter()
                    .map(|(name, value)| (name.clone(), text(value)))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default(),
        timeout: case
            .get("timeout_seconds")
            .map(|seconds| Duration::from_secs(seconds.as_integer().unwrap().try_into().unwrap())),
        expected_sha256: case
            .get("expected_sha256")
            .map(|hash| hash.as_str().unwrap().parse().unwrap()),
    }
}

#[test]
fn every_check_vector_gets_its_verdict_from_the_allowlist_and_from_its_rule_set() {
    let mut failures = Vec::new();
    for (path, file) in vectors("check") {
        let allowlist = Allowlist::from_toml(&text(&file["allowlist"]))
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let rule_set = allowlist.rule_set();
        for case in cases(&file) {
            let request = request(case);
            let by_allowlist = allowlist
                .check(&request)
                .map(|approved| approved.timeout())
                .map_err(|refusal| refusal.reason().as_str());
            let by_rule_set = rule_set
                .check(&request)
                .map(|allowed| allowed.timeout())
                .map_err(|refusal| refusal.reason().as_str());
            let verdict = by_allowlist.map_or_else(|code| code, |_| "ok");
            if verdict != expect(case) || by_allowlist != by_rule_set {
                failures.push(format!(
                    "{} / {}: expected {}, got {by_allowlist:?} (rule set: {by_rule_set:?})",
                    path.display(),
                    name(case),
                    expect(case)
                ));
            }
            if let (Some(applied), Ok(timeout)) = (case.get("timeout_applied"), by_allowlist) {
                let applied = Duration::from_secs(applied.as_integer().unwrap() as u64);
                assert_eq!(timeout, applied, "{}", name(case));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_load_vector_gets_its_verdict() {
    let mut failures = Vec::new();
    for (path, file) in vectors("load") {
        for case in cases(&file) {
            let verdict = match Allowlist::from_toml(&text(&case["allowlist"])) {
                Ok(_) => "ok",
                Err(error) => error.code(),
            };
            if verdict != expect(case) {
                failures.push(format!(
                    "{} / {}: expected {}, got {verdict}",
                    path.display(),
                    name(case),
                    expect(case)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn expected_codes(kind: &str) -> BTreeSet<String> {
    vectors(kind)
        .iter()
        .flat_map(|(_, file)| cases(file).iter().map(|case| expect(case).to_owned()))
        .collect()
}

#[test]
fn the_check_vectors_cover_every_reason_of_the_rule_check() {
    let covered = expected_codes("check");
    for reason in Reason::RULE_CHECKS {
        assert!(covered.contains(reason.as_str()), "no vector for {reason}");
    }
    assert!(covered.contains("ok"));
}

#[test]
fn the_load_vectors_cover_every_load_error_that_text_can_cause() {
    let covered = expected_codes("load");
    let file_only = ["untrusted_file", "unreadable"];
    for code in LoadError::CODES {
        assert_eq!(
            covered.contains(code),
            !file_only.contains(&code),
            "load vectors and {code}"
        );
    }
}
