"""Retention: `python -m app retention` drops raw observations past the window; changes and summaries stay."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from app.db.connect import conninfo
from tests.conftest import SettingsFactory
from tests.support.postgres import PostgresServer
from tests.support.services import write_toml
from tests.support.settings import settings_document


def test_retention_drops_old_observations_and_keeps_changes(
    pg: PostgresServer, databases: dict[str, str], credentials_dir: Path, migrated: SettingsFactory,
    tmp_path: Path,
) -> None:
    """Observations older than observations_days disappear; changes within changes_days and summaries remain."""
    owner = psycopg.connect(conninfo(migrated(), "results", as_owner=True))
    with owner:
        for age_days, run in ((100, 1), (45, 2), (1, 3)):
            owner.execute(
                "INSERT INTO observations (time, run_id, job_id, scanner_id, ip, port)"
                " VALUES (now() - make_interval(days => %s), %s, %s, 1, '198.18.0.10', 22)", (age_days, run, run))
        for age_days, run in ((100, 1), (800, 0)):
            owner.execute(
                "INSERT INTO port_changes (detected_at, run_id, scanner_id, ip, port, change)"
                " VALUES (now() - make_interval(days => %s), %s, 1, '198.18.0.10', 22, 'opened')", (age_days, run))
        owner.execute("INSERT INTO run_summaries (run_id, scanner_id, open_ports, hosts_up, changes,"
                      " computed_at) VALUES (1, 1, 1, 1, 1, now() - interval '100 days')")
        owner.commit()

        document = settings_document(pg, databases, "mipo_manager",
                                     retention={"observations_days": 30, "changes_days": 730})
        config = write_toml(document, tmp_path / "mipo.toml")
        env = {**os.environ, "CREDENTIALS_DIRECTORY": str(credentials_dir)}
        done = subprocess.run([sys.executable, "-m", "app", "--config", str(config), "retention"],
                              capture_output=True, text=True, env=env, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert "observations: dropped 2 chunk(s)" in done.stdout, done.stdout
        assert "port changes: deleted 1 " in done.stdout
        # The Debian build is Apache-licensed: compression is skipped and says why.
        assert "compression: skipped" in done.stdout and "apache" in done.stdout

        runs = [r[0] for r in owner.execute("SELECT run_id FROM observations ORDER BY run_id").fetchall()]
        assert runs == [3]
        assert owner.execute("SELECT run_id FROM port_changes").fetchall() == [(1,)]
        assert owner.execute("SELECT count(*) FROM run_summaries").fetchone() == (1,)

        again = subprocess.run([sys.executable, "-m", "app", "--config", str(config), "retention"],
                               capture_output=True, text=True, env=env, timeout=120, check=False)
        assert again.returncode == 0 and "dropped 0 chunk(s): none" in again.stdout


def test_retention_reports_a_database_error_in_one_line(pg: PostgresServer, databases: dict[str, str],
                                                         credentials_dir: Path, tmp_path: Path) -> None:
    """Unmigrated database (no observations table): a one-line error and exit 1, not a traceback."""
    document = settings_document(pg, databases, "mipo_manager")
    config = write_toml(document, tmp_path / "mipo.toml")
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(credentials_dir)}
    done = subprocess.run([sys.executable, "-m", "app", "--config", str(config), "retention"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("mipo: retention failed:") and "Traceback" not in done.stderr
