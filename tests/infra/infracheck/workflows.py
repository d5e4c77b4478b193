"""Checks of .github/workflows: the properties the PR #10 review findings (1.1, 1.5, 1.6) ask
for. Each ``check_*`` returns a list of problems for a repository root, so tests can run it on
the real tree and on a temporary copy with a defect put back."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from .gha_expr import JobContext, evaluate_job_if

RESULTS = ("success", "failure", "skipped", "cancelled")
ENVIRONMENTS = ("dev", "prod")
STATIC_KEY_PATTERN = re.compile(
    r"aws-access-key-id|aws-secret-access-key|AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY",
)


def load(root: Path, name: str) -> dict[str, Any]:
    data = yaml.safe_load((root / ".github" / "workflows" / name).read_text())
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    if True in data:
        data["on"] = data.pop(True)
    return data


def job_if(job: Mapping[str, Any]) -> Any:
    return job.get("if")


def needs_of(job: Mapping[str, Any]) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def ancestors(jobs: Mapping[str, Any], name: str) -> set[str]:
    seen: set[str] = set()
    todo = needs_of(jobs[name])
    while todo:
        job = todo.pop()
        if job not in seen:
            seen.add(job)
            todo.extend(needs_of(jobs[job]))
    return seen


def deploy_jobs(wf: Mapping[str, Any]) -> list[str]:
    return sorted(j for j in wf["jobs"] if j.startswith("deploy-"))


# -- the job graph ---------------------------------------------------------------------------


def simulate(
    wf: Mapping[str, Any],
    outcomes: Mapping[str, tuple[str, Mapping[str, str]]],
    *,
    cancelled: bool = False,
    github: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The result of every job: a job whose ``if`` is false is ``skipped``; one that runs ends
    as ``outcomes[job]`` says (default: success, no outputs)."""
    jobs = wf["jobs"]
    results: dict[str, str] = {}
    outputs: dict[str, Mapping[str, str]] = {}
    pending = list(jobs)
    while pending:
        for name in pending:
            if all(n in results for n in needs_of(jobs[name])):
                break
        else:  # pragma: no cover - a cycle; GitHub rejects those too
            raise ValueError(f"job dependency cycle among {pending}")
        pending.remove(name)
        ctx = JobContext(
            needs={n: {"result": results[n], "outputs": outputs[n]} for n in needs_of(jobs[name])},
            ancestor_results={a: results[a] for a in ancestors(jobs, name)},
            cancelled=cancelled,
            github=github or {},
        )
        if evaluate_job_if(job_if(jobs[name]), ctx):
            result, outs = outcomes.get(name, ("success", {}))
            results[name], outputs[name] = result, dict(outs)
        else:
            results[name], outputs[name] = "skipped", {}
    return results


def check_notify_failure(root: Path) -> list[str]:
    """notify-failure needs every deploy job and prepare, and over every combination of their
    results (and a cancelled run or not) fires exactly when one of them failed."""
    wf = load(root, "cd-eks.yml")
    jobs = wf["jobs"]
    problems: list[str] = []
    if "notify-failure" not in jobs:
        return ["cd-eks.yml has no notify-failure job"]
    notify = jobs["notify-failure"]
    needs = needs_of(notify)
    for required in ["prepare", *deploy_jobs(wf)]:
        if required not in needs:
            problems.append(f"notify-failure does not need {required}: its failure goes unreported")
    if "${{ secrets.SLACK_DEPLOY_WEBHOOK_URL }}" not in str(notify.get("steps")):
        problems.append("notify-failure does not post to the SLACK_DEPLOY_WEBHOOK_URL secret")
    for combo in itertools.product(RESULTS, repeat=len(needs)):
        results = dict(zip(needs, combo, strict=True))
        for run_cancelled in (False, True):
            ctx = JobContext(
                needs={n: {"result": r, "outputs": {}} for n, r in results.items()},
                ancestor_results=results,
                cancelled=run_cancelled,
            )
            fires = evaluate_job_if(job_if(notify), ctx)
            expected = "failure" in combo
            if fires != expected:
                state = ", ".join(f"{n}={r}" for n, r in results.items())
                verb = "stays silent" if expected else "fires"
                problems.append(
                    f"notify-failure {verb} when {state}"
                    + (" (run cancelled)" if run_cancelled else "")
                )
    return problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])


def check_deploy_conditions(root: Path) -> list[str]:
    """Each deploy-<env> job runs exactly when prepare succeeded, chose <env>, and found the
    image; it deploys into the GitHub environment of the same name."""
    wf = load(root, "cd-eks.yml")
    jobs = wf["jobs"]
    problems: list[str] = []
    found = deploy_jobs(wf)
    if sorted(found) != [f"deploy-{e}" for e in ENVIRONMENTS]:
        problems.append(f"expected deploy-dev and deploy-prod jobs, found {found}")
    for name in found:
        env = name.removeprefix("deploy-")
        job = jobs[name]
        if needs_of(job) != ["prepare"]:
            problems.append(f"{name} must need prepare (and only prepare)")
            continue
        environment = job.get("environment")
        if (environment.get("name") if isinstance(environment, dict) else environment) != env:
            problems.append(f"{name} does not deploy into the GitHub environment {env!r}")
        for result, chosen, exists in itertools.product(
            RESULTS, [*ENVIRONMENTS, "", "staging"], ["true", "false", ""]
        ):
            ctx = JobContext(
                needs={
                    "prepare": {
                        "result": result,
                        "outputs": {
                            "environment": chosen,
                            "image-exists": exists,
                            "image-tag": "t",
                        },
                    }
                },
                ancestor_results={"prepare": result},
            )
            runs = evaluate_job_if(job_if(job), ctx)
            expected = result == "success" and chosen == env and exists == "true"
            if runs != expected:
                problems.append(
                    f"{name} {'runs' if runs else 'does not run'} when prepare={result}, "
                    f"environment={chosen!r}, image-exists={exists!r}"
                )
    return problems[:10]


def _comment_above(text: str, job: str, key: str) -> str:
    """The comment lines directly above ``key:`` inside ``job:`` in the workflow text."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.rstrip() == f"  {job}:"), None)
    if start is None:
        return ""
    for i in range(start + 1, len(lines)):
        if re.match(r"^  \S", lines[i]):
            break
        if lines[i].strip() == f"{key}:":
            comment = []
            j = i - 1
            while j > start and lines[j].strip().startswith("#"):
                comment.insert(0, lines[j].strip().lstrip("#").strip())
                j -= 1
            return " ".join(comment)
    return ""


def check_concurrency(root: Path) -> list[str]:
    """Finding 1.5: every deploy job's concurrency group is the named output
    needs.prepare.outputs.environment (no inline ternary), not cancelled in progress, the same
    for all deploy jobs, and a comment says what it guarantees."""
    wf = load(root, "cd-eks.yml")
    text = (root / ".github" / "workflows" / "cd-eks.yml").read_text()
    problems: list[str] = []
    groups = set()
    for name in deploy_jobs(wf):
        conc = wf["jobs"][name].get("concurrency")
        if not isinstance(conc, dict):
            problems.append(f"{name} has no concurrency group")
            continue
        group = str(conc.get("group", ""))
        groups.add(group)
        if "needs.prepare.outputs.environment" not in group:
            problems.append(
                f"{name}: concurrency group {group!r} is not derived from prepare's output"
            )
        if "&&" in group or "||" in group:
            problems.append(f"{name}: concurrency group {group!r} hides a ternary")
        if conc.get("cancel-in-progress") is not False:
            problems.append(f"{name}: a running deploy could be cancelled (cancel-in-progress)")
        if not _comment_above(text, name, "concurrency"):
            problems.append(f"{name}: no comment above concurrency: says what it guarantees")
    if len(groups) > 1:
        problems.append(f"deploy jobs use different concurrency groups: {sorted(groups)}")
    if "concurrency" in wf:
        problems.append("cd-eks.yml has a workflow-level concurrency group (it cannot see needs)")
    return problems


def _steps(root: Path) -> Iterator[tuple[str, str, Mapping[str, Any], Mapping[str, Any]]]:
    """(file, job, job definition, step) for every step of every workflow and local action."""
    for path in sorted((root / ".github" / "workflows").glob("*.yml")):
        wf = load(root, path.name)
        for job_name, job in wf.get("jobs", {}).items():
            for step in job.get("steps", []) or []:
                yield path.name, job_name, job, step
    for path in sorted((root / ".github" / "actions").glob("*/action.yml")):
        action = yaml.safe_load(path.read_text())
        for step in action.get("runs", {}).get("steps", []):
            yield str(path.relative_to(root)), "(composite)", {}, step


def check_oidc(root: Path) -> list[str]:
    """AWS access is OIDC only: every configure-aws-credentials step assumes a role, no static
    key appears anywhere, and every job that reaches AWS may request an OIDC token."""
    problems: list[str] = []
    for path in sorted((root / ".github").rglob("*.yml")):
        if STATIC_KEY_PATTERN.search(path.read_text()):
            problems.append(f"{path.relative_to(root)} mentions static AWS access keys")
    aws_steps = 0
    for file, job_name, job, step in _steps(root):
        uses = str(step.get("uses", ""))
        reaches_aws = uses.startswith("aws-actions/configure-aws-credentials@") or uses.startswith(
            "./.github/actions/helm-deploy"
        )
        if uses.startswith("aws-actions/configure-aws-credentials@"):
            aws_steps += 1
            if "role-to-assume" not in (step.get("with") or {}):
                problems.append(
                    f"{file} {job_name}: configure-aws-credentials without role-to-assume"
                )
        if (
            reaches_aws
            and job_name != "(composite)"
            and (job.get("permissions") or {}).get("id-token") != "write"
        ):
            problems.append(f"{file} {job_name}: reaches AWS without permissions id-token: write")
    if aws_steps == 0:
        problems.append("no aws-actions/configure-aws-credentials step found")
    return problems


# -- running the workflows' shell steps ------------------------------------------------------


def step_named(wf: Mapping[str, Any], job: str, name: str) -> Mapping[str, Any]:
    for step in wf["jobs"][job]["steps"]:
        if step.get("name") == name:
            return step
    raise KeyError(f"no step {name!r} in job {job}")


FAKE_AWS = """#!/bin/sh
echo "$*" >> "$FAKE_AWS_LOG"
case "$FAKE_ECR" in
  present) echo "sha256:0123abcd" ;;
  missing) echo "An error occurred (ImageNotFoundException): Requested image not found" >&2
           exit 254 ;;
  *) echo "An error occurred (AccessDeniedException) when calling DescribeImages" >&2
     exit 254 ;;
esac
"""


def run_step(
    step: Mapping[str, Any], env: Mapping[str, str], fake_ecr: str = "present"
) -> dict[str, Any]:
    """Run a ``run:`` step the way a GitHub runner does (bash -e -o pipefail), with the given
    values for its ``env:`` keys (all must be given) and a fake ``aws`` on PATH."""
    declared = set((step.get("env") or {}).keys())
    if declared != set(env):
        raise ValueError(f"step env keys are {sorted(declared)}, the test gave {sorted(env)}")
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "bin").mkdir()
        (t / "bin" / "aws").write_text(FAKE_AWS)
        (t / "bin" / "aws").chmod(0o755)
        (t / "script.sh").write_text(str(step["run"]))
        for f in ("output", "summary", "aws.log"):
            (t / f).write_text("")
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(t / "script.sh")],
            env={
                "PATH": f"{t / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                "GITHUB_OUTPUT": str(t / "output"),
                "GITHUB_STEP_SUMMARY": str(t / "summary"),
                "RUNNER_TEMP": str(t),
                "FAKE_ECR": fake_ecr,
                "FAKE_AWS_LOG": str(t / "aws.log"),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        outputs = dict(
            line.split("=", 1) for line in (t / "output").read_text().splitlines() if "=" in line
        )
        return {
            "rc": proc.returncode,
            "stdout": proc.stdout,
            "outputs": outputs,
            "summary": (t / "summary").read_text(),
            "aws_calls": (t / "aws.log").read_text().splitlines(),
        }


def check_image_precheck(root: Path) -> list[str]:
    """Finding 1.1 C: the pre-check skips dev with a summary message and fails prod when the
    image is missing; an ECR error is never taken for "missing"; and the job graph then behaves:
    dev missing -> nothing deploys, nobody is paged; prod missing -> Slack is told."""
    wf = load(root, "cd-eks.yml")
    step = step_named(wf, "prepare", "Check the image exists")
    problems: list[str] = []

    def go(env: str, ecr: str, pushed: str = "true") -> dict[str, Any]:
        return run_step(
            step,
            {
                "ENVIRONMENT": env,
                "IMAGE_TAG": "pr-7",
                "IMAGE_PUSHED": pushed,
                "ECR_REPOSITORY": "medic",
            },
            fake_ecr=ecr,
        )

    for env in ENVIRONMENTS:
        r = go(env, "present")
        if r["rc"] != 0 or r["outputs"].get("exists") != "true":
            problems.append(f"{env}, image present: expected success and exists=true, got {r}")
        r = go(env, "denied")
        if r["rc"] == 0:
            problems.append(f"{env}: an ECR access error was taken for a missing image")
        for ecr, pushed in (("missing", "true"), ("present", "false")):
            r = go(env, ecr, pushed)
            what = f"{env}, image {'not pushed' if pushed == 'false' else 'missing'}"
            if env == "dev":
                if r["rc"] != 0 or r["outputs"].get("exists") != "false":
                    problems.append(
                        f"{what}: expected a skip (exists=false, success), got rc={r['rc']}"
                    )
                if "skipped" not in r["summary"]:
                    problems.append(f"{what}: the job summary does not say the deploy was skipped")
            elif r["rc"] == 0:
                problems.append(f"{what}: prod did not fail (a silent skip)")
            elif "::error" not in r["stdout"]:
                problems.append(f"{what}: prod failed without an error annotation")
            if pushed == "false" and r["aws_calls"]:
                problems.append(f"{what}: asked ECR although the build did not push")
            outs = r["outputs"]
            prepare = (
                "success" if r["rc"] == 0 else "failure",
                {"environment": env if r["rc"] == 0 else "", "image-tag": "pr-7", **outs},
            )
            results = simulate(wf, {"prepare": prepare})
            deployed = [j for j in deploy_jobs(wf) if results[j] != "skipped"]
            if deployed:
                problems.append(f"{what}: {deployed} ran without an image")
            told = results.get("notify-failure") != "skipped"
            if told != (env == "prod"):
                problems.append(f"{what}: notify-failure {'fired' if told else 'stayed silent'}")
    return problems


def check_choose_environment(root: Path) -> list[str]:
    """pull request -> dev, push to main -> prod, dispatch as asked but prod only from main."""
    wf = load(root, "cd-eks.yml")
    step = step_named(wf, "prepare", "Choose the environment")
    problems: list[str] = []
    cases = [
        ("pull_request", "refs/pull/7/merge", "", "pr-7", "dev"),
        ("push", "refs/heads/main", "", "abc1234", "prod"),
        ("workflow_dispatch", "refs/heads/main", "prod", "abc1234", "prod"),
        ("workflow_dispatch", "refs/heads/topic", "dev", "pr-7", "dev"),
        ("workflow_dispatch", "refs/heads/topic", "prod", "abc1234", None),
        ("push", "refs/heads/main", "", "bad tag;rm", None),
        ("schedule", "refs/heads/main", "", "abc1234", None),
    ]
    for event, ref, asked, tag, expected in cases:
        r = run_step(
            step, {"EVENT_NAME": event, "REF": ref, "DISPATCH_ENVIRONMENT": asked, "IMAGE_TAG": tag}
        )
        got = r["outputs"].get("environment") if r["rc"] == 0 else None
        if got != expected:
            problems.append(
                f"{event} on {ref} (asked {asked!r}, tag {tag!r}): "
                f"expected {expected}, got {got} (rc={r['rc']})"
            )
    return problems


def check_build(root: Path) -> list[str]:
    """Finding 1.1 A: build.yml runs on pull requests and main; pull requests push `pr-<n>`
    (not from forks, which get no OIDC token), main pushes the short SHA and `latest`; the
    pushed tag is what the deploy receives."""
    wf = load(root, "build.yml")
    problems: list[str] = []
    on = wf.get("on") or {}
    if "pull_request" not in on:
        problems.append("build.yml does not run on pull requests")
    if "main" not in ((on.get("push") or {}).get("branches") or []):
        problems.append("build.yml does not run on pushes to main")
    step = step_named(wf, "image", "Compute image tags")
    sha = "0123456789abcdef0123456789abcdef01234567"
    base = {"REPO": "acme/medic", "SHA": sha}
    cases = [
        (
            {"EVENT_NAME": "pull_request", "PR_NUMBER": "42", "PR_REPO": "acme/medic"},
            "pr-42",
            "",
            "true",
        ),
        (
            {"EVENT_NAME": "pull_request", "PR_NUMBER": "43", "PR_REPO": "fork/medic"},
            "pr-43",
            "",
            "false",
        ),
        ({"EVENT_NAME": "push", "PR_NUMBER": "", "PR_REPO": ""}, sha[:7], "latest", "true"),
    ]
    for env, tag, extra, push in cases:
        r = run_step(step, {**base, **env})
        got = (r["outputs"].get("tag"), r["outputs"].get("extra"), r["outputs"].get("push"))
        if r["rc"] != 0 or got != (tag, extra, push):
            problems.append(
                f"{env['EVENT_NAME']} ({env['PR_REPO'] or 'main'}): expected tag/extra/push "
                f"{(tag, extra, push)}, got {got} (rc={r['rc']})"
            )
    build_push = [
        s
        for s in wf["jobs"]["image"]["steps"]
        if str(s.get("uses", "")).startswith("docker/build-push-action@")
    ]
    if len(build_push) != 1:
        problems.append("build.yml must have one docker/build-push-action step")
    else:
        w = build_push[0].get("with") or {}
        if "steps.tags.outputs.push" not in str(w.get("push")):
            problems.append("the build-push step does not push according to the computed tags")
        if w.get("file") != "server/Dockerfile":
            problems.append("the build-push step does not build server/Dockerfile")
    deploy = wf["jobs"].get("deploy") or {}
    if deploy.get("uses") != "./.github/workflows/cd-eks.yml":
        problems.append("build.yml does not hand the pushed image to cd-eks.yml")
    elif "needs.image.outputs.tag" not in str((deploy.get("with") or {}).get("image-tag")):
        problems.append("the deploy does not receive the tag the build pushed")
    return problems


def check_ci(root: Path) -> list[str]:
    wf = load(root, "ci.yml")
    problems: list[str] = []
    on = wf.get("on") or {}
    if "pull_request" not in on or "main" not in ((on.get("push") or {}).get("branches") or []):
        problems.append("ci.yml must run on pull requests and on pushes to main")
    runs = [str(s.get("run", "")) for j in wf["jobs"].values() for s in j.get("steps", [])]
    if not any(re.search(r"(^|\n)\s*make test\s*($|\n)", r) for r in runs):
        problems.append("ci.yml does not run `make test`")
    return problems


# -- the agent's release workflow ------------------------------------------------------------

AGENT_RELEASE = "agent-release.yml"
# The platforms the agent ships on: target triple -> (OS, architecture) of the runner that
# builds it natively (the binary is run once, so no cross-compiling).
AGENT_TARGETS = {
    "x86_64-unknown-linux-musl": ("linux", "x86_64"),
    "aarch64-unknown-linux-musl": ("linux", "arm64"),
    "x86_64-apple-darwin": ("macos", "x86_64"),
    "aarch64-apple-darwin": ("macos", "arm64"),
}
# GitHub-hosted runner labels and what they run on.
RUNNER_PLATFORMS = {
    "ubuntu-latest": ("linux", "x86_64"),
    "ubuntu-24.04": ("linux", "x86_64"),
    "ubuntu-22.04": ("linux", "x86_64"),
    "ubuntu-24.04-arm": ("linux", "arm64"),
    "ubuntu-22.04-arm": ("linux", "arm64"),
    "macos-15-intel": ("macos", "x86_64"),
    "macos-26-intel": ("macos", "x86_64"),
    "macos-14": ("macos", "arm64"),
    "macos-15": ("macos", "arm64"),
    "macos-26": ("macos", "arm64"),
    "macos-latest": ("macos", "arm64"),
}
AGENT_MAX_BYTES = 5_000_000  # 5 MB


def _sized_file(directory: Path, size: int) -> Path:
    path = directory / f"medic-agent-{size}"
    path.write_bytes(b"\0" * size)
    return path


def check_agent_release(root: Path) -> list[str]:
    """agent-release.yml builds medic-agent for exactly the four platforms, each on a native
    runner of that OS and architecture, with `cargo build --release -p medic-agent` (no
    --locked: Cargo.lock is not committed), strips it, fails a binary of 5 MB or more, checks
    the version against an agent-v* tag, uploads each binary, and publishes a release only on
    agent-v* tags, from the only job allowed to write."""
    problems: list[str] = []
    try:
        wf = load(root, AGENT_RELEASE)
    except FileNotFoundError:
        return [f".github/workflows/{AGENT_RELEASE} is missing"]
    jobs = wf.get("jobs", {})
    build, release = jobs.get("build"), jobs.get("release")
    if build is None or release is None:
        return [f"{AGENT_RELEASE}: expected jobs build and release, found {sorted(jobs)}"]

    tags = ((wf.get("on") or {}).get("push") or {}).get("tags") or []
    if "agent-v*" not in tags:
        problems.append(f"{AGENT_RELEASE} does not run on agent-v* tags (push tags: {tags})")

    # Permissions: read by default; contents: write for the release job only.
    if wf.get("permissions") != {"contents": "read"}:
        problems.append(f"{AGENT_RELEASE}: workflow permissions {wf.get('permissions')}, not read")
    for name, job in jobs.items():
        perms = job.get("permissions")
        want = {"contents": "write"} if name == "release" else {"contents": "read"}
        if perms != want:
            problems.append(f"{AGENT_RELEASE} {name}: permissions {perms}, expected {want}")

    # The matrix: exactly the four targets, each on a runner of its platform.
    include = ((build.get("strategy") or {}).get("matrix") or {}).get("include") or []
    targets = [str(row.get("target")) for row in include]
    if sorted(targets) != sorted(AGENT_TARGETS):
        problems.append(f"build matrix targets {targets}, expected {sorted(AGENT_TARGETS)}")
    for row in include:
        want_platform = AGENT_TARGETS.get(str(row.get("target")))
        runner = str(row.get("runner"))
        if want_platform and RUNNER_PLATFORMS.get(runner) != want_platform:
            problems.append(
                f"{row.get('target')} is built on {runner} "
                f"({RUNNER_PLATFORMS.get(runner, 'unknown runner')}), not {want_platform}"
            )
    if build.get("runs-on") != "${{ matrix.runner }}":
        problems.append("the build job does not run on the matrix's runner")

    steps = build.get("steps") or []
    runs = "\n".join(str(s.get("run", "")) for s in steps)
    if not re.search(r"cargo build --release -p medic-agent\b", runs):
        problems.append("no step runs `cargo build --release -p medic-agent`")
    if "--locked" in runs:
        problems.append("cargo --locked cannot work: agent-rs/Cargo.lock is not committed")
    if not re.search(r"(^|\n)\s*strip\s", runs):
        problems.append("the binary is not stripped")
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    if not uploads:
        problems.append("the build job uploads no artifact")
    problems += _check_size_gate(build)
    problems += _check_version_step(build)

    # The release job: needs the builds, runs exactly on agent-v* tags.
    if needs_of(release) != ["build"]:
        problems.append("the release job must need build")
    for ref, expected in (
        ("refs/tags/agent-v0.1.0", True),
        ("refs/tags/v0.1.0", False),
        ("refs/heads/main", False),
        ("refs/pull/7/merge", False),
    ):
        for result in RESULTS:
            ctx = JobContext(
                needs={"build": {"result": result, "outputs": {}}},
                ancestor_results={"build": result},
                github={"ref": ref},
            )
            runs_release = evaluate_job_if(job_if(release), ctx)
            if runs_release != (expected and result == "success"):
                problems.append(
                    f"release {'runs' if runs_release else 'does not run'} on {ref} "
                    f"with build={result}"
                )
    return problems[:15]


def _check_size_gate(build: Mapping[str, Any]) -> list[str]:
    """The size step fails a binary of AGENT_MAX_BYTES or more, passes a smaller one."""
    try:
        step = next(s for s in build["steps"] if s.get("name") == "Check the size")
    except StopIteration:
        return ["no 'Check the size' step in the build job: the 5 MB gate is gone"]
    limit = int((step.get("env") or {}).get("MAX_BYTES", 0))
    problems = []
    if not 0 < limit <= AGENT_MAX_BYTES:
        problems.append(f"the size gate allows {limit} bytes, more than 5 MB")
        return problems
    with tempfile.TemporaryDirectory() as tmp:
        for size, passes in ((limit - 1, True), (limit, False), (limit + 4096, False)):
            binary = _sized_file(Path(tmp), size)
            r = run_step(
                step,
                {
                    "BINARY": str(binary),
                    "TARGET": "x86_64-unknown-linux-musl",
                    "MAX_BYTES": str(limit),
                },
            )
            if (r["rc"] == 0) != passes:
                problems.append(
                    f"the size gate {'fails' if passes else 'passes'} a binary of {size} bytes"
                )
            if str(size) not in r["summary"]:
                problems.append("the size gate does not report the size in the job summary")
    return problems


FAKE_AGENT = """#!/bin/sh
[ "$1" = "--version" ] && echo "medic-agent 0.1.0 (protocol medic.agent.v1)"
"""


def _check_version_step(build: Mapping[str, Any]) -> list[str]:
    """On an agent-v<version> tag the binary must say that version; on other refs it runs."""
    try:
        step = next(s for s in build["steps"] if s.get("name") == "Check the version")
    except StopIteration:
        return ["no 'Check the version' step in the build job"]
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        agent = Path(tmp) / "medic-agent"
        agent.write_text(FAKE_AGENT)
        agent.chmod(0o755)
        for ref, passes in (
            ("refs/tags/agent-v0.1.0", True),
            ("refs/heads/main", True),
            ("refs/pull/7/merge", True),
            ("refs/tags/agent-v0.2.0", False),
            ("refs/tags/agent-v0.1", False),
        ):
            r = run_step(step, {"BINARY": str(agent), "REF": ref})
            if (r["rc"] == 0) != passes:
                problems.append(
                    f"the version check {'fails' if passes else 'passes'} "
                    f"'medic-agent 0.1.0' on {ref}"
                )
    return problems
