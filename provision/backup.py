"""The backup host's schedule: a nightly timer (time derived from the host name) and its backup directory."""

from __future__ import annotations

from pyinfra import host
from pyinfra.operations import files

from provision.controller import Prepared
from provision.ops import deploy
from provision.render import daily_calendar
from provision.units import install_timer


@deploy("Backup schedule")
def deploy_backup(prepared: Prepared) -> None:
    files.directory(name="Ensure /var/lib/mipo/backups (mipo only)", path="/var/lib/mipo/backups", user="mipo",
                    group="mipo", mode="0700")
    install_timer("mipo-backup-run.service", "mipo-backup.timer", daily_calendar(host.name))
