"""The settings schema: defaults, refusals naming the key, and the command-line behaviour."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigError, load_settings, parse_settings

BASE = {"databases": {"config": {"name": "c"}, "jobs": {"name": "j"}, "results": {"name": "r"}}}
BASE_TOML = """
[databases.config]
name = "c"
[databases.jobs]
name = "j"
[databases.results]
name = "r"
"""


def test_defaults_match_the_design() -> None:
    """Heartbeat every 60 s, offline after 120 s, unless the operator says otherwise."""
    settings = parse_settings(BASE)
    assert settings.scanner.heartbeat_interval == 60
    assert settings.scanner.offline_after == 120
    assert settings.session.secure_cookies is True
    assert settings.databases.config.sslmode == "verify-full"


@pytest.mark.parametrize(("override", "message"), [
    ({"colour": "blue"}, "colour: unknown key"),
    ({"scope": {"authorised": ["10.0.0.0/8", "10.0.0.300/8"]}}, "scope.authorised[1]: expected an IPv4 or IPv6"),
    ({"scope": {"everything": True}}, "scope.everything: unknown key"),
    ({"scanner": {"heartbeat_interval": 0}}, "scanner.heartbeat_interval: Expected `float` > 0"),
    ({"scanner": {"heartbeat_interval": 60, "offline_after": 30}}, "must be longer than heartbeat_interval"),
    ({"manager": {"listen": "localhost"}}, "manager.listen: expected HOST:PORT"),
    ({"backup": {"recipient": "ssh-ed25519 AAAA"}}, "backup.recipient: expected an age public key"),
    ({"databases": {"config": {"name": "c", "pasword": "x"}, "jobs": {"name": "j"}, "results": {"name": "r"}}},
     "databases.config.pasword: unknown key"),
])
def test_bad_settings_are_refused_naming_the_key(override: dict[str, object], message: str) -> None:
    """An operator's mistake is reported with the key and the expected form."""
    with pytest.raises(ConfigError) as info:
        parse_settings({**BASE, **override})
    assert message in str(info.value)


def test_credentials_come_from_the_credentials_directory(tmp_path: Path) -> None:
    """Passwords live in credential files (systemd LoadCredential=), never in the TOML."""
    (tmp_path / "db").write_text("s3cret\n")
    settings = parse_settings(BASE, str(tmp_path))
    assert settings.credential("db") == "s3cret"
    with pytest.raises(ConfigError, match="credential 'missing'"):
        settings.credential("missing")


@pytest.mark.parametrize(("extra", "key"), [
    ("[scope]\nauthorised = [\"198.18.0.0/33\"]\n", "scope.authorised[0]"),
    ("[retention]\nobservations_days = 30\nkeep = 3\n", "retention.keep"),
])
def test_command_exits_non_zero_with_one_line_naming_the_key(tmp_path: Path, extra: str, key: str) -> None:
    """`python -m app check-config` on a bad file: non-zero exit, one line, the key named."""
    path = tmp_path / "mipo.toml"
    path.write_text(BASE_TOML + extra)
    result = subprocess.run([sys.executable, "-m", "app", "--config", str(path), "check-config"],
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0]


def test_unreadable_and_malformed_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[databases\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
