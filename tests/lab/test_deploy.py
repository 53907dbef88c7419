"""The deploy as a whole: re-running it changes nothing, and it hands over the first admin exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.deploy import lab_appliance_file, run_deploy
from appliance.lab.state import LabState
from provision.config import load_appliance
from provision.controller import initial_admin_password

pytestmark = pytest.mark.lab


def test_second_deploy_changes_nothing(deployed_lab: LabState, lab_deploy_result: Any) -> None:
    """Idempotence: deploying the same commit into an already deployed appliance reports zero changed operations."""
    result = run_deploy(lab_appliance_file(deployed_lab), revision=lab_deploy_result.revision or None)
    assert result.ok, f"the second deploy failed; see {result.log}"
    assert result.changed == 0, f"the second deploy changed {result.changed} operations; see {result.log}"


def test_first_admin_password_is_kept_root_only_on_the_manager(deployed_lab: LabState,
                                                              lab_deploy_result: Any) -> None:
    """The first admin's password (shown by the first deploy only) is stored root-only (0600) on the manager."""
    expected = initial_admin_password(load_appliance(lab_appliance_file(deployed_lab)).state_dir)
    if lab_deploy_result.admin_password:  # this session's deploy was the lab's first
        assert (lab_deploy_result.admin_username, lab_deploy_result.admin_password) == ("admin", expected)
    assert len(expected) >= 16
    stat = deployed_lab.run("manager", "stat -c '%U %a' /root/mipo-initial-admin-password").stdout.split()
    assert stat == ["root", "600"]
    stored = deployed_lab.run("manager", "cat /root/mipo-initial-admin-password").stdout.strip()
    assert stored == expected


def test_first_admin_was_created_by_the_deploy_with_a_forced_password_change(deployed_lab: LabState) -> None:
    """The deploy created the admin account flagged to change its initial password at first login.

    Other lab tests may log in as that admin and change the password since, so the audit log's record of
    the creation is what is checked, not the account's current flag.
    """
    sql = ("SELECT after->>'role', after->>'must_change_password' FROM audit_log WHERE actor = 'deploy' "
           "AND action = 'create' AND object_type = 'user' AND after->>'username' = 'admin'")
    out = deployed_lab.run("db", f"runuser -u postgres -- psql -X -At -d mipo_config -c \"{sql}\"").stdout
    assert out.strip() == "admin|true"
