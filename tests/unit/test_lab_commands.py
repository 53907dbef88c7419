"""What `mipo lab up` prints after deploying: the URL, the CA to trust and the first admin, or one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import build_parser
from appliance.deploy import DeployResult
from appliance.lab.commands import report_deploy


def test_successful_deploy_shows_url_ca_and_admin(capsys: pytest.CaptureFixture[str]) -> None:
    """The operator learns where the GUI is, which CA to trust and the first admin's credentials."""
    result = DeployResult(0, 12, 0, Path("/x/deploy.log"), url="https://198.18.0.10", ca_file="/x/pki/ca.crt",
                          admin_username="admin", admin_password="s3cret-once")
    assert report_deploy(result) == 0
    out = capsys.readouterr().out
    assert "https://198.18.0.10" in out and "/x/pki/ca.crt" in out and "admin / s3cret-once" in out


def test_failed_deploy_is_one_line_naming_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    """A failed deploy prints one line: how many operations failed, where the log is, what to do."""
    assert report_deploy(DeployResult(1, 3, 2, Path("/x/deploy.log"))) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "2 operations failed" in err[0] and "/x/deploy.log" in err[0] and "mipo lab up" in err[0]


@pytest.mark.parametrize("argv", [["lab", "up", "--no-deploy"], ["lab", "status"], ["lab", "ssh", "db", "ss", "-ltn"],
                                  ["lab", "down"], ["lab", "destroy"]])
def test_lab_subcommands_parse(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.command == "lab" and args.lab_command == argv[1]


def test_ssh_passes_the_remote_command_through() -> None:
    args = build_parser().parse_args(["lab", "ssh", "db", "ss", "-ltn"])
    assert (args.host, args.cmd) == ("db", ["ss", "-ltn"])
