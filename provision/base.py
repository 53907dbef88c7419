"""Base of every appliance host: the mipo user, journald limits, time sync, the appliance CA."""

from __future__ import annotations

from pyinfra import host
from pyinfra.operations import apt, files, server, systemd

from provision.config import CA_PATH, CREDENTIALS_DIR, EDGE_CA_PATH
from provision.controller import Prepared
from provision.ops import changed, deploy, put_text

JOURNALD_LIMITS = """\
# mipo: bounded logs, so a chatty service cannot fill the disk.
[Journal]
SystemMaxUse=200M
MaxRetentionSec=1month
"""


# Debian packages each group needs (the lab image has them all; a real host gets them through its apt
# configuration, the package proxy for the db). Checked against installed packages: no change when present.
PACKAGES = {
    "all": ["ca-certificates", "nftables", "python3", "python3-venv", "systemd-timesyncd", "curl"],
    "db": ["postgresql-17", "postgresql-17-timescaledb"],
    "backup": ["postgresql-client-17", "age"],
}


def packages_for(groups: list[str]) -> list[str]:
    wanted = list(PACKAGES["all"])
    for group in groups:
        wanted += [p for p in PACKAGES.get(group, []) if p not in wanted]
    return wanted


@deploy("Base")
def deploy_base(prepared: Prepared) -> None:
    me = prepared.appliance.host(host.name)
    apt.packages(name="Ensure the Debian packages of this host's role", packages=packages_for(me.groups),
                 no_recommends=True, update=False)
    server.group(name="Ensure the mipo system group", group="mipo", system=True)
    server.user(  # noqa: S604 - `shell` is the user's login shell (nologin), not a subprocess shell
        name="Ensure the mipo system user (no login, no home)", user="mipo", group="mipo", system=True,
                home="/var/lib/mipo", shell="/usr/sbin/nologin", create_home=False)
    files.directory(name="Ensure /var/lib/mipo belongs to mipo", path="/var/lib/mipo", user="mipo",
                    group="mipo", mode="0750")
    journald = put_text("Ensure journald size and retention limits", "/etc/systemd/journald.conf.d/mipo.conf",
                        JOURNALD_LIMITS)
    systemd.service(name="Restart journald after its limits changed", service="systemd-journald.service",
                    restarted=True, _if=changed(journald))
    # timesyncd skips itself inside containers (ConditionVirtualization); enabled is what a real host needs.
    systemd.service(name="Ensure time sync is enabled", service="systemd-timesyncd.service", running=None,
                    enabled=True)
    files.directory(name="Ensure /etc/mipo exists", path="/etc/mipo", user="root", group="root", mode="0755")
    files.directory(name="Ensure the root-only credentials directory", path=CREDENTIALS_DIR, user="root",
                    group="root", mode="0700")
    put_text("Ensure the appliance CA certificate in /etc/mipo", CA_PATH, prepared.ca_cert.read_bytes())
    if prepared.appliance.deploy.edge_certificate:
        put_text("Ensure the CA of the operator's edge certificate (scanners pin it)", EDGE_CA_PATH,
                 prepared.edge_ca.read_bytes())
    trust = put_text("Ensure the appliance CA is in the system trust store source",
                     "/usr/local/share/ca-certificates/mipo-appliance-ca.crt", prepared.ca_cert.read_bytes())
    server.shell(name="Rebuild the system trust store after the CA changed", commands=["update-ca-certificates"],
                 _if=changed(trust))
