"""The deploy as a whole: re-running it changes nothing, and it hands over the first admin exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.deploy import lab_appliance_file, run_deploy
from appliance.lab.state import LabState

pytestmark = pytest.mark.lab


def test_second_deploy_changes_nothing(deployed_lab: LabState, lab_deploy_result: Any) -> None:
    """Idempotence: deploying the same commit into an already deployed appliance reports zero changed operations."""
    result = run_deploy(lab_appliance_file(deployed_lab), revision=lab_deploy_result.revision or None)
    assert result.ok, f"the second deploy failed; see {result.log}"
    assert result.changed == 0, f"the second deploy changed {result.changed} operations; see {result.log}"


def test_first_admin_password_is_handed_over_and_kept_root_only(deployed_lab: LabState,
                                                               lab_deploy_result: Any) -> None:
    """The first admin's password is what the deploy reports, stored root-only (0600) on the manager."""
    assert lab_deploy_result.admin_username == "admin"
    assert len(lab_deploy_result.admin_password) >= 16
    stat = deployed_lab.run("manager", "stat -c '%U %a' /root/mipo-initial-admin-password").stdout.split()
    assert stat == ["root", "600"]
    stored = deployed_lab.run("manager", "cat /root/mipo-initial-admin-password").stdout.strip()
    assert stored == lab_deploy_result.admin_password
