"""`mipo check` / `mipo deploy` plumbing: results parsing and one-line outcomes, without touching a host."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main
from appliance.deploy import parse_totals

EXAMPLE = Path(__file__).resolve().parents[2] / "provision" / "appliance.example.toml"
TABLE = """
--> Results:
    Operation                                   Hosts   Success   Error   No Change
    Base | Ensure the mipo system user          7       -         -       7
    Grand total                                 216     {changed}         {errors}       199
"""


@pytest.mark.parametrize(("changed", "errors", "expected"), [("-", "-", (0, 0)), ("17", "-", (17, 0)),
                                                             ("3", "2", (3, 2))])
def test_parse_totals_reads_pyinfra_grand_total(changed: str, errors: str, expected: tuple[int, int]) -> None:
    """The changed-operations count the idempotence test relies on comes from pyinfra's own totals."""
    assert parse_totals(TABLE.format(changed=changed, errors=errors)) == expected


def test_parse_totals_refuses_output_without_results() -> None:
    """A pyinfra run that died before its results table is not mistaken for "nothing changed"."""
    with pytest.raises(ValueError):
        parse_totals("--> An internal exception occurred")


def test_mipo_check_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    """`mipo check --config FILE` exits 0 and summarises hosts by group."""
    assert main(["check", "--config", str(EXAMPLE)]) == 0
    assert "ingest=2" in capsys.readouterr().out


def test_mipo_check_and_deploy_refuse_a_bad_file_in_one_line(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A bad appliance file stops both commands before any host is contacted, with one line naming the key."""
    bad = tmp_path / "appliance.toml"
    bad.write_text(EXAMPLE.read_text().replace('address = "10.20.1.20"', 'address = "db.internal"'))
    for command in ("check", "deploy"):
        assert main([command, "--config", str(bad)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "hosts[6].address: expected an IP address" in err[0]
