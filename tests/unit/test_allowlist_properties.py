"""Property tests of the allowlist parser and verifier, through the medic_allowlist bindings.

Generated valid allowlists go the server's way (TOML text → advertised summary → ``Rules``);
requests built to satisfy an entry are allowed, each single mutation of one is refused with its
own code, and no refusal detail ever repeats an argument or environment value. Arbitrary text
and arbitrary dicts only ever raise the module's own errors.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import medic_allowlist
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medic_allowlist import LoadError, Rules, SummaryError

HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
OTHER_HASH = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# Whole-match patterns that are also generators of what they match; none matches MARKER.
PATTERNS = ["[a-z]{1,8}", "[0-9]{1,6}", "[a-z0-9-]{1,12}", "(start|stop|status)", r"v[0-9]\.[0-9]"]
# Put into mutated values; generated values never hold it, so a detail holding it leaks a value.
MARKER = "§SECRET§"
VALUE_TEXT = st.text(st.characters(exclude_characters="\0§", exclude_categories=["Cs"]))

PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@dataclass(frozen=True)
class Rule:
    kind: str  # fixed, one_of, pattern
    value: Any  # str, list[str], or the pattern source
    max_len: int | None = None

    def toml(self) -> str:
        if self.kind == "fixed":
            return f"fixed = {_toml_str(self.value)}"
        if self.kind == "one_of":
            return f"one_of = [{', '.join(_toml_str(v) for v in self.value)}]"
        max_len = "" if self.max_len is None else f", max_len = {self.max_len}"
        return f"pattern = {_toml_str(self.value)}{max_len}"

    def summary(self) -> dict[str, Any]:
        if self.kind == "fixed":
            return {"fixed": self.value}
        if self.kind == "one_of":
            return {"one_of": {"values": list(self.value)}}
        return {"pattern": {"regex": self.value, "max_len": self.max_len or 256}}

    def values(self) -> st.SearchStrategy[str]:
        if self.kind == "fixed":
            return st.just(self.value)
        if self.kind == "one_of":
            return st.sampled_from(self.value)
        return st.from_regex(self.value, fullmatch=True)


@dataclass(frozen=True)
class Entry:
    name: str
    args: list[Rule]
    rest: tuple[Rule, int] | None
    env: list[str]
    timeout: int
    description: str | None = field(default=None)

    def toml(self) -> str:
        lines = [
            "[[script]]",
            f"name = {_toml_str(self.name)}",
            f'path = "/opt/medic/{self.name}"',
            f'sha256 = "{HASH}"',
            f"timeout = {self.timeout}",
            "args = [" + ", ".join("{ " + rule.toml() + " }" for rule in self.args) + "]",
            "env = [" + ", ".join(_toml_str(name) for name in self.env) + "]",
        ]
        if self.description is not None:
            lines.append(f"description = {_toml_str(self.description)}")
        if self.rest is not None:
            rule, count = self.rest
            lines.append(f"rest = {{ {rule.toml()}, max_count = {count} }}")
        return "\n".join(lines) + "\n"

    def summary(self) -> dict[str, Any]:
        script: dict[str, Any] = {
            "name": self.name,
            "sha256": HASH,
            "args": [rule.summary() for rule in self.args],
        }
        if self.rest is not None:
            script["rest"] = {"rule": self.rest[0].summary(), "max_count": self.rest[1]}
        script["env"] = sorted(set(self.env))
        script["timeout_seconds"] = self.timeout
        return script

    @property
    def min_args(self) -> int:
        return len(self.args)

    @property
    def max_args(self) -> int:
        return len(self.args) + (self.rest[1] if self.rest else 0)

    def rule_at(self, index: int) -> Rule:
        if index < len(self.args):
            return self.args[index]
        assert self.rest is not None
        return self.rest[0]


def _toml_str(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _allowlist(entries: list[Entry]) -> str:
    return "version = 1\n" + "".join("\n" + entry.toml() for entry in entries)


rules = st.one_of(
    st.builds(Rule, st.just("fixed"), VALUE_TEXT.filter(lambda v: len(v.encode()) <= 4096)),
    st.builds(
        Rule, st.just("one_of"), st.lists(VALUE_TEXT.map(lambda v: v[:20]), min_size=1, max_size=5)
    ),
    st.builds(
        Rule,
        st.just("pattern"),
        st.sampled_from(PATTERNS),
        st.one_of(st.none(), st.integers(12, 4096)),
    ),
)


@st.composite
def entries(draw: st.DrawFn, name: str | None = None) -> Entry:
    return Entry(
        name=name or draw(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)),
        args=draw(st.lists(rules, max_size=4)),
        rest=draw(st.one_of(st.none(), st.tuples(rules, st.integers(1, 4)))),
        env=draw(st.lists(st.from_regex(r"MEDIC_[A-Z0-9_]{1,6}", fullmatch=True), max_size=4)),
        timeout=draw(st.integers(1, 86_400)),
        description=draw(st.one_of(st.none(), VALUE_TEXT)),
    )


@st.composite
def allowlists(draw: st.DrawFn) -> list[Entry]:
    names = draw(
        st.lists(
            st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True), max_size=5, unique=True
        )
    )
    return [draw(entries(name=name)) for name in names]


@dataclass
class Request:
    script: str
    args: list[str]
    env: dict[str, str]
    timeout_seconds: int | None
    expected_sha256: str | None

    def check(self, rules: Rules) -> medic_allowlist.Refusal | None:
        return rules.check(
            self.script,
            self.args,
            self.env,
            timeout_seconds=self.timeout_seconds,
            expected_sha256=self.expected_sha256,
        )


@st.composite
def entry_and_request(draw: st.DrawFn) -> tuple[Entry, Request]:
    entry = draw(entries())
    count = draw(st.integers(entry.min_args, entry.max_args))
    args = [draw(entry.rule_at(index).values()) for index in range(count)]
    names = draw(st.lists(st.sampled_from(entry.env), unique=True) if entry.env else st.just([]))
    env = {name: draw(VALUE_TEXT.map(lambda v: v[:40])) for name in names}
    return entry, Request(
        script=entry.name,
        args=args,
        env=env,
        timeout_seconds=draw(st.one_of(st.none(), st.integers(0, entry.timeout))),
        expected_sha256=draw(st.sampled_from([None, HASH, HASH.upper()])),
    )


def _rules_of(entries: list[Entry]) -> Rules:
    summary = medic_allowlist.summary_from_toml(_allowlist(entries))
    return Rules.from_summary(json.loads(json.dumps(summary)))


# ---- the parser never crashes -------------------------------------------------------------------


def _parses_or_refuses(text: str) -> None:
    try:
        summary = medic_allowlist.summary_from_toml(text)
    except LoadError as error:
        assert error.code in medic_allowlist.LOAD_ERROR_CODES
    else:
        assert Rules.from_summary(summary).to_summary() == summary


@given(st.text() | st.text().map(lambda text: text + "\ud800"))
def test_arbitrary_text_only_ever_raises_load_error(text: str) -> None:
    _parses_or_refuses(text)


@PROPERTY_SETTINGS
@given(allowlists(), st.data())
def test_damaged_allowlists_only_ever_raise_load_error(
    entries: list[Entry], data: st.DataObject
) -> None:
    text = _allowlist(entries)
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 40)))
    _parses_or_refuses(text[:start] + data.draw(st.text(max_size=10)) + text[end:])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_arbitrary_values_only_ever_raise_summary_error(value: Any) -> None:
    try:
        Rules.from_summary(value)
    except SummaryError as error:
        assert error.code in medic_allowlist.SUMMARY_ERROR_CODES


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*path, index))
    return found


@PROPERTY_SETTINGS
@given(allowlists(), st.data())
def test_damaged_summaries_only_ever_raise_summary_error(
    entries: list[Entry], data: st.DataObject
) -> None:
    summary = medic_allowlist.summary_from_toml(_allowlist(entries))
    path = data.draw(st.sampled_from(_paths(summary)[1:]))
    target = summary
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = data.draw(json_values)
    try:
        Rules.from_summary(summary)
    except SummaryError as error:
        assert error.code in medic_allowlist.SUMMARY_ERROR_CODES


# ---- valid allowlists round-trip ----------------------------------------------------------------


@PROPERTY_SETTINGS
@given(allowlists())
def test_generated_allowlists_round_trip_from_toml_to_summary_to_rules(
    entries: list[Entry],
) -> None:
    text = _allowlist(entries)
    summary = medic_allowlist.summary_from_toml(text)
    assert summary == {
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "scripts": [entry.summary() for entry in sorted(entries, key=lambda e: e.name)],
    }
    rules = Rules.from_summary(json.loads(json.dumps(summary)))
    assert rules.to_summary() == summary
    assert rules.names() == sorted(entry.name for entry in entries)
    assert rules.sha256 == summary["sha256"]


# ---- the [[interpreter]] table -------------------------------------------------------------------

# Listing paths and the problem each has on its own (None: a valid path).
INTERPRETER_PATHS: dict[str, str | None] = {
    "/usr/bin/python3": None,
    "/usr/bin/perl": None,
    "/opt/tools/bin/ruby": None,
    "python3": "path_not_absolute",
    "": "path_not_absolute",
    "/usr/bin/../bin/perl": "path_not_canonical",
    "/usr/bin/": "path_not_canonical",
    "/": "path_not_canonical",
}
MAX_INTERPRETERS = 64


def _interpreter_oracle(listings: list[tuple[str, str | None]]) -> str:
    """The loader's verdict: the count, then each listing in order (path, hash), then
    duplicates."""
    if len(listings) > MAX_INTERPRETERS:
        return "too_many_interpreters"
    for path, sha256 in listings:
        problem = INTERPRETER_PATHS[path]
        if problem is not None:
            return problem
        if sha256 is not None and len(sha256) != 64:
            return "invalid_sha256"
    paths = [path for path, _ in listings]
    return "duplicate_interpreter" if len(set(paths)) != len(paths) else "ok"


interpreter_listings = st.lists(
    st.tuples(
        st.sampled_from(sorted(INTERPRETER_PATHS)),
        st.sampled_from([None, HASH, OTHER_HASH.upper(), "abc"]),
    ),
    max_size=4,
) | st.just([("/usr/bin/python3", None)] * (MAX_INTERPRETERS + 1))


@PROPERTY_SETTINGS
@given(allowlists(), interpreter_listings)
def test_an_interpreter_table_loads_exactly_when_valid_and_is_never_advertised(
    entries: list[Entry], listings: list[tuple[str, str | None]]
) -> None:
    tables = "".join(
        f"\n[[interpreter]]\npath = {_toml_str(path)}\n"
        + ("" if sha256 is None else f"sha256 = {_toml_str(sha256)}\n")
        for path, sha256 in listings
    )
    text = _allowlist(entries) + tables
    try:
        summary = medic_allowlist.summary_from_toml(text)
    except LoadError as error:
        assert error.code == _interpreter_oracle(listings), str(error)
        return
    assert _interpreter_oracle(listings) == "ok"
    # The table is the agent's business: the summary (what the server checks) is unchanged.
    assert summary["scripts"] == medic_allowlist.summary_from_toml(_allowlist(entries))["scripts"]


# ---- requests ------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(entry_and_request())
def test_a_request_built_to_satisfy_the_rules_is_allowed(case: tuple[Entry, Request]) -> None:
    entry, request = case
    assert request.check(_rules_of([entry])) is None


MUTATIONS = [
    "not_allowlisted",
    "expected_hash_mismatch",
    "timeout_too_long",
    "missing_args",
    "too_many_args",
    "arg_not_allowed",
    "env_not_allowed",
    "env_value_invalid",
]


def _mutate(entry: Entry, request: Request, reason: str, data: st.DataObject) -> bool:
    """Break exactly one rule of `request`; False when `reason` cannot apply to `entry`."""
    if reason == "not_allowlisted":
        request.script += "x"
    elif reason == "expected_hash_mismatch":
        request.expected_sha256 = OTHER_HASH
    elif reason == "timeout_too_long":
        request.timeout_seconds = entry.timeout + data.draw(st.integers(1, 10**6))
    elif reason == "missing_args":
        if entry.min_args == 0:
            return False
        del request.args[data.draw(st.integers(0, entry.min_args - 1)) :]
    elif reason == "too_many_args":
        while len(request.args) <= entry.max_args:
            request.args.append(MARKER)
    elif reason == "arg_not_allowed":
        if not request.args:
            return False
        index = data.draw(st.integers(0, len(request.args) - 1))
        request.args[index] = data.draw(
            st.sampled_from(
                [
                    request.args[index] + MARKER,
                    MARKER,
                    request.args[index] + "\0",
                    MARKER * 600,
                    request.args[index] + "\ud800",
                ]
            )
        )
    elif reason == "env_not_allowed":
        request.env["NOT_LISTED"] = MARKER
    elif reason == "env_value_invalid":
        if not entry.env:
            return False
        name = data.draw(st.sampled_from(entry.env))
        request.env[name] = data.draw(st.sampled_from([MARKER + "\0", MARKER * 600, "\ud800"]))
    return True


@PROPERTY_SETTINGS
@given(entry_and_request(), st.sampled_from(MUTATIONS), st.data())
def test_each_single_mutation_is_refused_with_its_own_code(
    case: tuple[Entry, Request], reason: str, data: st.DataObject
) -> None:
    entry, request = case
    if not _mutate(entry, request, reason, data):
        return
    refusal = request.check(_rules_of([entry]))
    assert refusal is not None
    assert refusal.reason == reason
    assert "§" not in refusal.detail


@PROPERTY_SETTINGS
@given(
    allowlists(),
    st.data(),
    st.lists(VALUE_TEXT.map(lambda v: v + MARKER), max_size=6),
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
        VALUE_TEXT.map(lambda v: MARKER + v),
        max_size=3,
    ),
)
def test_refusal_details_never_hold_argument_or_environment_values(
    entries: list[Entry], data: st.DataObject, args: list[str], env: dict[str, str]
) -> None:
    rules = _rules_of(entries)
    names = [entry.name for entry in entries] + ["unknown"]
    script = data.draw(st.sampled_from(names))
    refusal = rules.check(script, args, env)
    if refusal is not None:
        assert refusal.reason in medic_allowlist.CHECK_REASON_CODES
        assert "§" not in refusal.detail
