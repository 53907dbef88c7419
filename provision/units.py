"""The role units from systemd/: installed, migrations first, started, restarted only when their inputs changed."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server, systemd

from provision.app import VENV, AppChanges
from provision.config import CREDENTIALS_DIR
from provision.controller import Prepared
from provision.dbstate import db_state, mipo_wheel, needs_first_admin, pending_migrations, summary, wheel_migrations
from provision.ops import changed, deploy, put_text
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
    """On the manager: migrate what the databases lack, then create the first admin if the config database has
    no user. Both are decided from the db host's databases as they are (read before the deploy changed
    anything), never from markers on this host: a db host that lost its databases gets them back complete."""
    state = db_state(prepared.appliance)
    migrate = install_unit("mipo-migrate.service")
    systemd.daemon_reload(name="Reload systemd after mipo-migrate.service changed", _if=changed(migrate))
    for retired in ("/var/lib/mipo/.migrated", "/var/lib/mipo/.admin-created"):
        files.file(name=f"Remove the retired marker {retired} (the databases' state decides now)", path=retired,
                   present=False)
    pending = pending_migrations(state, wheel_migrations(mipo_wheel(prepared.wheelhouse)))
    if pending:
        server.shell(name=f"Migrate the databases (mipo-migrate.service): {len(pending)} migrations to apply "
                          f"({summary(pending)})", commands=["systemctl start mipo-migrate.service"])
    put_text("Ensure the first admin's initial password (root-only, shown once by the deploy)",
             ADMIN_PASSWORD_FILE, prepared.admin_password + "\n", mode="0600")
    if needs_first_admin(state):
        # --if-no-users: decided again in the database at run time; an existing user is never touched.
        server.shell(name="Create the first admin: the config database has no user (must change password at "
                          "first login)",
                     commands=[f"CREDENTIALS_DIRECTORY={CREDENTIALS_DIR} {VENV}/bin/python -m app --config "
                               f"/etc/mipo/mipo.toml create-admin --username {ADMIN_USERNAME} "
                               f"--password-file {ADMIN_PASSWORD_FILE} --if-no-users"])


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
