"""nftables on every appliance host: default drop in (and out, on db), per-role allowances."""

from __future__ import annotations

from pyinfra import host
from pyinfra.operations import server, systemd

from provision.controller import Prepared
from provision.ops import changed, deploy, put_text
from provision.render import nftables_conf


@deploy("Firewall")
def deploy_firewall(prepared: Prepared) -> None:
    me = prepared.appliance.host(host.name)
    ruleset = put_text("Ensure the nftables ruleset of this host's role", "/etc/nftables.conf",
                       nftables_conf(prepared.appliance, me), mode="0600")
    # `nft -f` checks the whole file before swapping the ruleset atomically: a typo changes nothing.
    server.shell(name="Load the new nftables ruleset", commands=["nft -f /etc/nftables.conf"],
                 _if=changed(ruleset))
    systemd.service(name="Ensure nftables loads the ruleset at boot", service="nftables.service", running=True,
                    enabled=True)
