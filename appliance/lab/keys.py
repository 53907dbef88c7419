"""The lab's SSH key pair: generated once per lab, trusted by every lab host's root account."""

from __future__ import annotations

from pathlib import Path

from appliance.lab.network import run


def ensure_ssh_key(state_dir: Path) -> Path:
    """Return the private key path, generating an ed25519 pair on first use."""
    key = state_dir / "ssh" / "id_ed25519"
    if not (key.exists() and key.with_suffix(".pub").exists()):
        key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key.unlink(missing_ok=True)
        key.with_suffix(".pub").unlink(missing_ok=True)
        run("generate the lab SSH key", ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mipo-lab",
                                         "-f", str(key)])
    return key
