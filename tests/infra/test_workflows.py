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
AGENT = ".github/workflows/agent-release.yml"


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


def test_evaluator_compares_prefixes_and_suffixes_like_github() -> None:
    c = JobContext(needs={}, ancestor_results={}, github={"ref": "refs/tags/agent-v0.1.0"})
    assert evaluate("startsWith(github.ref, 'REFS/tags/agent-v')", c) is True  # case-insensitive
    assert evaluate("endsWith(github.ref, '0.1.0') && !startsWith(github.ref, 'v')", c) is True
    assert evaluate("startsWith(github.missing, '')", c) is True  # null is ''
    with pytest.raises(ExpressionError):
        evaluate("startsWith(github.ref)", c)


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
    # The agent's release: a platform dropped or built on the wrong runner, --locked without a
    # lock file, no strip, the 5 MB gate loosened, off by one or gone, the version unchecked,
    # a release from any tag, write access for the build.
    (
        wf.check_agent_release,
        AGENT,
        "          - target: x86_64-apple-darwin\n            runner: macos-15-intel\n",
        "",
    ),
    (
        wf.check_agent_release,
        AGENT,
        "runner: ubuntu-24.04-arm",
        "runner: ubuntu-24.04",
    ),
    (
        wf.check_agent_release,
        AGENT,
        "cargo build --release -p medic-agent",
        "cargo build --release --locked -p medic-agent",
    ),
    (wf.check_agent_release, AGENT, "          strip dist/medic-agent\n", ""),
    (wf.check_agent_release, AGENT, "MAX_BYTES: 5000000", "MAX_BYTES: 50000000"),
    (
        wf.check_agent_release,
        AGENT,
        'if [ "$size" -ge "$MAX_BYTES" ]; then',
        'if [ "$size" -gt "$MAX_BYTES" ]; then',
    ),
    (wf.check_agent_release, AGENT, "- name: Check the size", "- name: Report the size"),
    (wf.check_agent_release, AGENT, 'if [[ "$version" != "$want"* ]]; then', "if false; then"),
    (
        wf.check_agent_release,
        AGENT,
        "if: startsWith(github.ref, 'refs/tags/agent-v')",
        "if: startsWith(github.ref, 'refs/tags/')",
    ),
    (
        wf.check_agent_release,
        AGENT,
        "    permissions:\n      contents: read\n    strategy:",
        "    permissions:\n      contents: write\n    strategy:",
    ),
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


def test_agent_release_builds_exactly_the_four_platforms_under_5_mb() -> None:
    release = wf.load(ROOT, "agent-release.yml")
    matrix = release["jobs"]["build"]["strategy"]["matrix"]["include"]
    assert {row["target"]: row["runner"] for row in matrix} == {
        "x86_64-unknown-linux-musl": "ubuntu-24.04",
        "aarch64-unknown-linux-musl": "ubuntu-24.04-arm",
        "x86_64-apple-darwin": "macos-15-intel",
        "aarch64-apple-darwin": "macos-15",
    }
    gate = wf.step_named(release, "build", "Check the size")
    assert int(gate["env"]["MAX_BYTES"]) == wf.AGENT_MAX_BYTES == 5_000_000


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


def test_actionlint_checks_the_agent_release_workflow(tmp_path: Path) -> None:
    proc = actionlint(ROOT)
    assert "agent-release.yml" in " ".join(proc.args)
    copy = with_defect(
        tmp_path, AGENT, "runs-on: ${{ matrix.runner }}", "runs-on: ${{ matrix.os }}"
    )
    proc = actionlint(copy)
    assert proc.returncode != 0 and "agent-release.yml" in proc.stdout, proc.stdout


def test_yamllint_passes_on_workflows_and_actions() -> None:
    code, out = yamllint(ROOT / ".github")
    assert code == 0, out


def test_yamllint_catches_a_duplicated_key(tmp_path: Path) -> None:
    copy = with_defect(
        tmp_path, CD, "    timeout-minutes: 5\n", "    timeout-minutes: 5\n    timeout-minutes: 6\n"
    )
    code, out = yamllint(copy / ".github")
    assert code != 0 and "duplication" in out
