"""The app hosts beyond their units: the scheduled backup really writes an encrypted, verified backup."""

from __future__ import annotations

import pytest

from appliance.lab.state import LabState

pytestmark = pytest.mark.lab


def test_scheduled_backup_job_writes_a_backup(deployed_lab: LabState) -> None:
    """What mipo-backup.timer starts works under the unit's hardening: a new backup directory appears."""
    before = set(deployed_lab.run("backup", "ls /var/lib/mipo/backups").stdout.split())
    deployed_lab.run("backup", "systemctl start mipo-backup-run.service", timeout=300)
    after = set(deployed_lab.run("backup", "ls /var/lib/mipo/backups").stdout.split())
    assert after - before


def test_retention_job_runs(deployed_lab: LabState) -> None:
    """What mipo-retention.timer starts succeeds as the results owner under the unit's hardening."""
    result = deployed_lab.run("manager", "systemctl start mipo-retention.service", check=False, timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("host", ["manager", "ingest-1", "ingest-2", "dispatcher", "backup"])
def test_settings_are_accepted_by_the_installed_app(deployed_lab: LabState, host: str) -> None:
    """The rendered mipo.toml validates with the app version installed on that host."""
    result = deployed_lab.run(host, "/opt/mipo/venv/bin/python -m app --config /etc/mipo/mipo.toml check-config",
                              check=False)
    assert result.returncode == 0, result.stderr
