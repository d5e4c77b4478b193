"""``medic playbook rerun ID [--from STEP]``, in process on SQLite and PostgreSQL: a run that
has not failed is refused saying so, an unknown step is refused naming the run's steps, and a
failed run is set to run again from the step asked (printed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from sqlalchemy import update

# The in-process ``cli`` fixtures of test_cli.py (``cli_db``: on SQLite and PostgreSQL).
from test_cli import Cli, cli, cli_db  # noqa: F401

from medic_core.settings import Settings
from medic_core.store import Database
from medic_core.store.models import PlaybookExecution

PLAYBOOK = {
    "slug": "two",
    "steps": [
        {"name": "a", "type": "wait", "params": {"seconds": 1}},
        {"name": "b", "type": "wait", "params": {"seconds": 1}},
    ],
}


async def fail_at_step_b(run_id: int) -> None:
    """Mark the run failed at step b, as the engine would have (no engine runs here)."""
    db = Database(Settings.load().resolved_database_url)
    try:
        async with db.transaction() as session:
            await session.execute(
                update(PlaybookExecution)
                .where(PlaybookExecution.id == run_id)
                .values(state="failed", step_index=1, active_key=None, next_at=None)
            )
    finally:
        await db.close()


def test_rerun_refuses_a_run_that_did_not_fail_and_reruns_a_failed_one(
    cli_db: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    cli = cli_db  # noqa: F811
    assert cli("db", "upgrade")[0] == 0
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(PLAYBOOK))
    assert cli("playbook", "apply", "-f", str(path))[0] == 0
    code, out, _ = cli("playbook", "run", "two")
    run_id = int(out.strip())

    code, _, err = cli("playbook", "rerun", str(run_id))
    assert code != 0 and "is pending: only a failed or timed out run can be rerun" in err

    asyncio.run(fail_at_step_b(run_id))
    code, _, err = cli("playbook", "rerun", str(run_id), "--from", "c")
    assert code != 0 and "has no step 'c' (its steps: a, b)" in err
    code, out, _ = cli("playbook", "rerun", str(run_id), "--from", "a")
    assert code == 0, out
    assert f"run {run_id}: pending (rerun from step #0)" in out
