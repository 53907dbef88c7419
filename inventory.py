"""pyinfra inventory: the appliance's hosts by group (edge, manager, ingest, dispatcher, backup, db).

Read from the appliance file named by $MIPO_APPLIANCE, or else from the local lab (`mipo lab up`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))



def _hosts_by_group() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    # Imported here: pyinfra takes every module-level list or tuple of this file for a host group.
    from provision.config import GROUPS, load_appliance
    from provision.controller import appliance_path, prepared

    appliance = load_appliance(appliance_path())
    # Build the CA, certificates, secrets and wheelhouse now, once, before pyinfra runs the deploy
    # file for every host at the same time.
    prepared(str(appliance_path()))
    options = appliance.deploy
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {g: [] for g in GROUPS}
    for h in appliance.hosts:
        data: dict[str, Any] = {"ssh_hostname": h.ssh, "ssh_user": options.ssh_user,
                                "ssh_strict_host_key_checking": options.strict_host_keys}
        if options.ssh_key:
            data["ssh_key"] = options.ssh_key
        if options.strict_host_keys == "no":
            data["ssh_known_hosts_file"] = "/dev/null"
        for group in h.groups:
            out[group].append((h.name, data))
    return out


_groups = _hosts_by_group()
edge = _groups["edge"]
manager = _groups["manager"]
ingest = _groups["ingest"]
dispatcher = _groups["dispatcher"]
backup = _groups["backup"]
db = _groups["db"]
