"""The CI/CD workflows (.github/workflows) keep the PR #10 review findings fixed.

Every property is a check in ``infracheck.workflows``; each is run on the real tree and then on
a temporary copy with its defect put back, to show the check would catch it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from infracheck import workflows as wf
from infracheck.gha_expr import ExpressionError, JobContext, evaluate, evaluate_job_if
from infracheck.tools import ROOT, require, run, yamllint

CD = ".github/workflows/cd-eks.yml"
BUILD = ".github/workflows/build.yml"
CI = ".github/workflows/ci.yml"


def with_defect(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """A copy of the repository's .github with ``old`` replaced by ``new`` in ``file``."""
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    path = tmp_path / file
    text = path.read_text()
    assert old in text, f"the defect's anchor {old!r} is no longer in {file}"
    path.write_text(text.replace(old, new, 1))
    return tmp_path


# -- the expression evaluator itself ---------------------------------------------------------


def ctx(**results: str) -> JobContext:
    return JobContext(
        needs={j.replace("_", "-"): {"result": r, "outputs": {}} for j, r in results.items()},
        ancestor_results={j.replace("_", "-"): r for j, r in results.items()},
    )


def test_evaluator_follows_github_operators_and_comparisons() -> None:
    c = ctx(a="success")
    assert evaluate("needs.a.result == 'SUCCESS'", c) is True  # strings compare case-insensitively
    assert evaluate("needs.a.result != 'success'", c) is False
    assert evaluate("!(needs.a.result == 'failure') && 'x' || 'y'", c) == "x"
    assert evaluate("false || needs.missing.outputs.x", c) is None
    assert evaluate("'it''s' == 'IT''S'", c) is True
    assert evaluate("null == 0 && true == 1 && '1' == 1 && !('a' == 0)", c) is True


def test_a_job_if_without_status_function_implies_success() -> None:
    assert evaluate_job_if("needs.a.result == 'failure'", ctx(a="failure")) is False
    assert evaluate_job_if("always() && needs.a.result == 'failure'", ctx(a="failure")) is True
    assert evaluate_job_if(None, ctx(a="skipped")) is False
    assert evaluate_job_if("${{ failure() }}", ctx(a="success", b="failure")) is True


@pytest.mark.parametrize(
    "expression",
    ["contains(github.ref, 'main')", "needs.a.result > 1", "needs['a']", "steps.x.outputs.y"],
)
def test_evaluator_refuses_what_it_does_not_model(expression: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate_job_if(expression, ctx(a="success"))


# -- the checks pass on the real workflows, and catch their defect in a copy -------------------

# (check, file, the text put back, the defect's text)
DEFECTS: list[tuple[Callable[[Path], list[str]], str, str, str]] = [
    # 1.6: the original `if: failure()`-style conditions and near misses.
    (
        wf.check_notify_failure,
        CD,
        "always() && (needs.prepare.result == 'failure'",
        "(needs.prepare.result == 'failure'",
    ),
    (
        wf.check_notify_failure,
        CD,
        "always() && (needs.prepare.result == 'failure'",
        "always() || (needs.prepare.result == 'failure'",
    ),
    (
        wf.check_notify_failure,
        CD,
        "needs.deploy-dev.result == 'failure'",
        "needs.deploy-dev.result != 'success'",
    ),
    (
        wf.check_notify_failure,
        CD,
        "needs: [prepare, deploy-dev, deploy-prod]",
        "needs: [deploy-dev, deploy-prod]",
    ),
    (wf.check_notify_failure, CD, "|| needs.deploy-prod.result == 'failure')", ")"),
    # deploy jobs: wrong environment, deploy without an image.
    (
        wf.check_deploy_conditions,
        CD,
        "needs.prepare.outputs.environment == 'prod' &&",
        "needs.prepare.outputs.environment == 'dev' &&",
    ),
    (wf.check_deploy_conditions, CD, " && needs.prepare.outputs.image-exists == 'true'\n", "\n"),
    # 1.5: ternary group, no comment, cancel in progress.
    (
        wf.check_concurrency,
        CD,
        "group: medic-deploy-${{ needs.prepare.outputs.environment }}",
        "group: medic-deploy-${{ github.event_name == 'pull_request' && 'dev' || 'prod' }}",
    ),
    (
        wf.check_concurrency,
        CD,
        "    # Same group expression and guarantee as deploy-dev (see there).\n",
        "",
    ),
    (wf.check_concurrency, CD, "cancel-in-progress: false", "cancel-in-progress: true"),
    # 1.1 C: prod silently skipped, ECR errors taken for a missing image.
    (
        wf.check_image_precheck,
        CD,
        'if [ "$ENVIRONMENT" = "prod" ]; then',
        'if [ "$ENVIRONMENT" = "production" ]; then',
    ),
    (
        wf.check_image_precheck,
        CD,
        "elif grep -q ImageNotFoundException",
        "elif true || grep -q ImageNotFoundException",
    ),
    (wf.check_image_precheck, CD, "printf '### dev deploy skipped", "printf '### dev deploy"),
    (wf.check_choose_environment, CD, '[ "$REF" != "refs/heads/main" ]', "false"),
    (
        wf.check_choose_environment,
        CD,
        "pull_request) environment=dev ;;",
        "pull_request) environment=prod ;;",
    ),
    # 1.1 A: no PR image, PR tag wrong, pushes from forks.
    (wf.check_build, BUILD, "on:\n  pull_request:\n", "on:\n"),
    (wf.check_build, BUILD, 'tag="pr-${PR_NUMBER}"', 'tag="latest"'),
    (
        wf.check_build,
        BUILD,
        'if [ "$PR_REPO" = "$REPO" ]; then push=true; else push=false; fi',
        "push=true",
    ),
    (wf.check_build, BUILD, "image-tag: ${{ needs.image.outputs.tag }}", "image-tag: latest"),
    # OIDC, no static keys.
    (
        wf.check_oidc,
        BUILD,
        "role-to-assume: ${{ vars.AWS_ECR_PUSH_ROLE_ARN }}",
        "aws-access-key-id: ${{ secrets.AWS_ACCESS_KEY_ID }}",
    ),
    (
        wf.check_oidc,
        CD,
        "      id-token: write # OIDC token for the environment's deploy role\n    # One",
        "    # One",
    ),
    (wf.check_ci, CI, "run: make test", "run: make lint"),
]


@pytest.mark.parametrize(
    "check", sorted({d[0] for d in DEFECTS}, key=lambda c: c.__name__), ids=lambda c: c.__name__
)
def test_check_passes_on_the_workflows(check: Callable[[Path], list[str]]) -> None:
    assert check(ROOT) == []


@pytest.mark.parametrize(
    ("check", "file", "old", "new"),
    DEFECTS,
    ids=[f"{d[0].__name__}-{i}" for i, d in enumerate(DEFECTS)],
)
def test_check_catches_its_defect(
    tmp_path: Path, check: Callable[[Path], list[str]], file: str, old: str, new: str
) -> None:
    assert check(with_defect(tmp_path, file, old, new)) != []


def test_notify_failure_is_silent_when_jobs_were_only_skipped() -> None:
    """The finding's own scenario: dev skipped, nothing failed -> nobody is paged; prod failed
    while dev was skipped -> Slack is told."""
    cd = wf.load(ROOT, "cd-eks.yml")
    notify = cd["jobs"]["notify-failure"]
    skipped = ctx(prepare="success", deploy_dev="skipped", deploy_prod="skipped")
    assert evaluate_job_if(notify["if"], skipped) is False
    failed = ctx(prepare="success", deploy_dev="skipped", deploy_prod="failure")
    assert evaluate_job_if(notify["if"], failed) is True


# -- the linters -------------------------------------------------------------------------------


def actionlint(root: Path):  # type: ignore[no-untyped-def]
    files = sorted(str(p) for p in (root / ".github" / "workflows").glob("*.yml"))
    return run([require("actionlint"), "-no-color", *files], cwd=root)


def test_actionlint_passes_on_every_workflow() -> None:
    proc = actionlint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_reference_to_a_missing_job_output(tmp_path: Path) -> None:
    copy = with_defect(
        tmp_path,
        CD,
        "needs.prepare.outputs.image-exists == 'true'",
        "needs.prepare.outputs.image-found == 'true'",
    )
    proc = actionlint(copy)
    assert proc.returncode != 0 and "image-found" in proc.stdout


def test_yamllint_passes_on_workflows_and_actions() -> None:
    code, out = yamllint(ROOT / ".github")
    assert code == 0, out


def test_yamllint_catches_a_duplicated_key(tmp_path: Path) -> None:
    copy = with_defect(
        tmp_path, CD, "    timeout-minutes: 5\n", "    timeout-minutes: 5\n    timeout-minutes: 6\n"
    )
    code, out = yamllint(copy / ".github")
    assert code != 0 and "duplication" in out
