"""Medic's alerts (the chart's PrometheusRule) checked by promtool.

The rules are written once, in infra/helm/medic/templates/prometheusrule.yaml. Each check
renders the chart, turns the PrometheusRule's ``spec`` into a Prometheus rules file and runs
promtool on it:

- ``check_rules``: ``promtool check rules`` on the rules of every value set in both roles modes
  (PromQL parses, durations are valid, no duplicate rule);
- ``check_rule_tests``: ``promtool test rules`` with the unit tests in infra/prometheus/tests/,
  against the rules as prod renders them in split mode (the only rendering with every alert);
  every alert must fire in at least one of those tests.

promtool comes from Debian's ``prometheus`` package (``make infra-tools`` installs it). Without
it these checks fail, saying so; they are never skipped.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from . import helm_chart
from .tools import require, run

RULES_FILE = "medic-rules.yaml"
# The rendering the unit tests are written against (see the header of the test files).
TEST_VALUE_SET = "prod"
TEST_MODE = "split"


def rule_tests_dir(root: Path) -> Path:
    return root / "infra" / "prometheus" / "tests"


def rules_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rule groups of every PrometheusRule, as a Prometheus rules file."""
    groups = [
        g for d in docs if d.get("kind") == "PrometheusRule" for g in d["spec"].get("groups", [])
    ]
    return {"groups": groups}


def alert_names(rules: dict[str, Any]) -> set[str]:
    return {r["alert"] for g in rules["groups"] for r in g.get("rules", []) if "alert" in r}


def check_rules(root: Path) -> list[str]:
    promtool = require("promtool")
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, docs, error in helm_chart.renderings(root):
            if error:
                problems.append(f"helm template ({label}) failed: {error}")
                continue
            rules = rules_of(docs)
            if not alert_names(rules):
                problems.append(f"{label}: the chart renders no alerting rule")
                continue
            path = Path(tmp) / RULES_FILE
            path.write_text(yaml.safe_dump(rules, sort_keys=False))
            proc = run([promtool, "check", "rules", str(path)])
            if proc.returncode != 0:
                problems.append(f"{label}: promtool check rules: {proc.stdout}{proc.stderr}")
    return problems


def check_rule_tests(root: Path) -> list[str]:
    promtool = require("promtool")
    docs, error = helm_chart.render(root, TEST_VALUE_SET, ["--set", f"roles.mode={TEST_MODE}"])
    if error:
        return [f"helm template ({TEST_VALUE_SET}, {TEST_MODE}) failed: {error}"]
    rules = rules_of(docs)
    tests = sorted(rule_tests_dir(root).glob("*.test.yaml"))
    if not tests:
        return [f"no promtool unit tests (*.test.yaml) in {rule_tests_dir(root)}"]
    problems = []
    fired: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / RULES_FILE).write_text(yaml.safe_dump(rules, sort_keys=False))
        for test in tests:
            shutil.copy(test, Path(tmp) / test.name)
            proc = run([promtool, "test", "rules", test.name], cwd=Path(tmp))
            if proc.returncode != 0:
                problems.append(f"promtool test rules {test.name}: {proc.stdout}{proc.stderr}")
            spec = yaml.safe_load(test.read_text())
            for case in spec.get("tests", []):
                for t in case.get("alert_rule_test", []):
                    if t.get("exp_alerts"):
                        fired.add(t["alertname"])
    for name in sorted(alert_names(rules) - fired):
        problems.append(f"alert {name} has no promtool test in which it fires")
    return problems
