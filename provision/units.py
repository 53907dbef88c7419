"""The role units from systemd/: installed, migrations first, started, restarted only when their inputs changed."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import systemd

from provision.app import VENV, AppChanges
from provision.config import CREDENTIALS_DIR
from provision.controller import Prepared
from provision.ops import changed, deploy, once_per, put_text
from provision.render import daily_calendar, render, units_of

ADMIN_PASSWORD_FILE = "/root/mipo-initial-admin-password"  # noqa: S105 - a path, not a password
ADMIN_USERNAME = "admin"


def install_unit(unit: str, **context: object) -> OperationMeta:
    return put_text(f"Ensure the unit {unit}", f"/etc/systemd/system/{unit}", render(f"{unit}.j2", **context))


def install_timer(service: str, timer: str, calendar: str) -> None:
    """A oneshot service and the timer that starts it, active; restarted only when the timer changed."""
    service_file = install_unit(service)
    timer_file = install_unit(timer, calendar=calendar)
    systemd.daemon_reload(name=f"Reload systemd after {timer} changed", _if=changed(service_file, timer_file))
    systemd.service(name=f"Ensure {timer} is active", service=timer, running=True, enabled=True)
    systemd.service(name=f"Restart {timer} after it changed", service=timer, restarted=True,
                    _if=changed(timer_file))


@deploy("Migrations")
def deploy_migrations(prepared: Prepared) -> None:
    """On the manager: migrate once per app version, then make sure the first admin exists."""
    migrate = install_unit("mipo-migrate.service")
    systemd.daemon_reload(name="Reload systemd after mipo-migrate.service changed", _if=changed(migrate))
    once_per("Migrate the three databases (mipo-migrate.service)", "/var/lib/mipo/.migrated",
             prepared.manifest_digest, ["systemctl start mipo-migrate.service"])
    put_text("Ensure the first admin's initial password (root-only, shown once by the deploy)",
             ADMIN_PASSWORD_FILE, prepared.admin_password + "\n", mode="0600")
    once_per("Create the first admin unless it exists (must change password at first login)",
             "/var/lib/mipo/.admin-created", ADMIN_USERNAME,
             [f"CREDENTIALS_DIRECTORY={CREDENTIALS_DIR} {VENV}/bin/python -m app --config /etc/mipo/mipo.toml "
              f"create-admin --username {ADMIN_USERNAME} --password-file {ADMIN_PASSWORD_FILE}"])


@deploy("Role units")
def deploy_units(prepared: Prepared, app: AppChanges) -> None:
    me = prepared.appliance.host(host.name)
    installed = {unit: install_unit(unit) for unit in units_of(prepared.appliance, me)}
    systemd.daemon_reload(name="Reload systemd after unit files changed", _if=changed(*installed.values()))
    if "manager" in me.groups:
        # Raw observations past the retention window are dropped daily (drop_chunks, as the owner).
        install_timer("mipo-retention.service", "mipo-retention.timer", daily_calendar(f"retention:{host.name}"))
    for unit, unit_file in installed.items():
        # Retried: systemd in a container now and then fails to spawn its executor once (ENOENT).
        systemd.service(name=f"Ensure {unit} runs and starts at boot", service=unit, running=True, enabled=True,
                        _retries=2, _retry_delay=3)
        systemd.service(name=f"Restart {unit} after its code, config or credentials changed", service=unit,
                        restarted=True, _if=changed(unit_file, *app.all()), _retries=2, _retry_delay=3)
