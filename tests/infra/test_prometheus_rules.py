"""Medic's alerts, rendered from the Helm chart, checked by promtool: `promtool check rules` on
every rendering, `promtool test rules` with infra/prometheus/tests/; each check is shown to catch
its defect in a temporary copy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from infracheck import helm_chart as h
from infracheck import prometheus_rules as pr
from infracheck.tools import ROOT, yamllint

CHECKS = [pr.check_rules, pr.check_rule_tests]

RULE = "infra/helm/medic/templates/prometheusrule.yaml"
TESTS = "infra/prometheus/tests/medic-alerts.test.yaml"


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_check_passes_on_the_rules(check: Callable[[Path], list[str]]) -> None:
    assert check(ROOT) == []


DEFECTS = [
    # PromQL that does not parse.
    (pr.check_rules, RULE, "> {{ .Values.metrics.prometheusRule.monitorLagSeconds }}", ">> 60"),
    # Two rule groups of the same name.
    (
        pr.check_rules,
        RULE,
        "        - alert: MedicNotificationsFailing",
        "    - name: medic\n      rules:\n        - alert: MedicNotificationsFailing",
    ),
    # MedicDown waits three times longer before it pages.
    (pr.check_rule_tests, RULE, "          for: 5m\n", "          for: 15m\n"),
    # A rejection rate that has to reach 5/s before anyone hears of it.
    (
        pr.check_rule_tests,
        RULE,
        '{job="{{ $job }}"}[5m])) > 0',
        '{job="{{ $job }}"}[5m])) > 5',
    ),
    # Workers deleted or scaled to nothing: without absent(), no series, no alert.
    (
        pr.check_rule_tests,
        RULE,
        ' == 0 or absent(up{job="{{ $job }}", service="{{ $workers }}"})',
        " == 0",
    ),
    # Only failed deliveries count, not all of them.
    (pr.check_rule_tests, RULE, ', outcome="error"}', "}"),
    # An alert nobody tested.
    (
        pr.check_rule_tests,
        RULE,
        "        - alert: MedicNotificationsFailing",
        "        - alert: MedicUntested\n          expr: vector(1) == 0\n          for: 1m\n"
        "          labels:\n            severity: warning\n          annotations:\n"
        "            summary: untested\n        - alert: MedicNotificationsFailing",
    ),
    # A test that expects what the rule does not say.
    (pr.check_rule_tests, TESTS, "more than 60s behind", "more than 30s behind"),
]


@pytest.mark.parametrize(
    ("check", "file", "old", "new"),
    DEFECTS,
    ids=[f"{d[0].__name__}-{i}" for i, d in enumerate(DEFECTS)],
)
def test_check_catches_its_defect(
    tmp_path: Path, check: Callable[[Path], list[str]], file: str, old: str, new: str
) -> None:
    copy = h.copy_chart(ROOT, tmp_path)
    path = copy / file
    text = path.read_text()
    assert old in text, f"the defect's anchor {old!r} is no longer in {file}"
    path.write_text(text.replace(old, new, 1))
    assert check(copy) != []


def test_promtool_is_found_or_the_checks_fail_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # No promtool anywhere: the check fails (it is never skipped) and names the install step.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("GOBIN", str(tmp_path))
    monkeypatch.delenv("MEDIC_PROMTOOL", raising=False)
    with pytest.raises(pytest.fail.Exception, match=r"promtool is not installed.*apt-get install"):
        pr.check_rules(ROOT)


def test_yamllint_passes_on_the_rule_tests() -> None:
    code, out = yamllint(ROOT / "infra" / "prometheus")
    assert code == 0, out
