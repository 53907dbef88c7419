"""The operator's browser flow in the lab: headless Chromium against https://<edge>/ through Traefik, with the
appliance deployed by pyinfra (needs the booted lab: `appliance/mipo test -m lab`). It lives with the lab tier
so it shares that tier's session fixtures (one lab, one deploy per session)."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import ssl
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect, sync_playwright

from appliance.deploy import lab_appliance_file
from appliance.lab.state import LabState
from provision.config import load_appliance
from provision.controller import initial_admin_password
from provision.units import ADMIN_USERNAME
from tests.browser.conftest import ARGS, CHROMIUM, SCREENSHOTS
from tests.lab.deploy_support import EDGE_EXTERNAL

pytestmark = [pytest.mark.lab, pytest.mark.browser]


def verified_leaf_spki(host: str, name: str, ca_file: str) -> str:
    """Fetch the edge's certificate, verify it and its name against the appliance CA, and return the base64
    SHA-256 of its public key: Chromium then trusts exactly that key (its profile has no CA store to edit)."""
    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((host, 443), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def goto(page: Page, url: str) -> None:
    """page.goto, retried when Chromium aborts it because lab interfaces came or went (hosts starting/stopping
    create and remove veth links on this machine); any other error fails at once."""
    for attempt in range(3):
        try:
            page.goto(url)
            return
        except PlaywrightError as exc:
            if "ERR_NETWORK_CHANGED" not in str(exc) or attempt == 2:
                raise


def submit_login(page: Page, url: str, username: str, password: str) -> str:
    """Post the login form and return the URL the browser lands on once the answer has loaded."""
    goto(page, url + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    return urlsplit(page.url).path


def log_in_as_deploy_admin(page: Page, url: str, username: str, initial: str, remembered: Path) -> None:
    """First run against a deployment: the deploy's temporary password, changed at once and remembered in the
    lab state; later runs: the remembered one. A remembered password from an earlier, since destroyed lab
    does not open the new one, so the deploy's password is tried after it."""
    candidates = ([remembered.read_text().strip()] if remembered.exists() else []) + [initial]
    landed = ""
    for password in candidates:
        landed = submit_login(page, url, username, password)
        if landed != "/login":
            break
    assert landed != "/login", "neither the remembered nor the deploy's admin password opens the lab's manager"
    if landed == "/password":
        chosen = f"lab-browser-{uuid.uuid4().hex[:16]}"
        page.locator("#f-current_password").fill(initial)
        page.locator("#f-new_password").fill(chosen)
        page.locator("#f-confirm_password").fill(chosen)
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_role("status")).to_contain_text("Password changed.")
        remembered.write_text(chosen)
        remembered.chmod(0o600)
    expect(page.locator("h1")).to_have_text("Dashboard")


def test_operator_flow_through_the_edge(deployed_lab: LabState, lab_deploy_result: object) -> None:
    """Through Traefik: the `__Host-` session cookie is Secure/HttpOnly/SameSite=Strict, the forced password change,
    Add scanner with its install command, subnet + port list + group + template + schedule, run now, results,
    changes, logout — screenshots under artifacts/screenshots/lab-*."""
    result = lab_deploy_result
    url = str(getattr(result, "url", "")).rstrip("/")
    ca_file = str(getattr(result, "ca_file", ""))
    assert url.startswith("https://") and Path(ca_file).exists(), (url, ca_file)
    name = urlsplit(url).hostname or ""
    pin = verified_leaf_spki(EDGE_EXTERNAL, name, ca_file)
    suffix = uuid.uuid4().hex[:6]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shot(page: Page, label: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"lab-{label}.png"), full_page=True)

    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="mipo-lab-browser-") as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True,
            args=[*ARGS, f"--host-resolver-rules=MAP {name} {EDGE_EXTERNAL}",
                  f"--ignore-certificate-errors-spki-list={pin}"],
        )
        context.set_default_timeout(20_000)
        page = context.pages[0] if context.pages else context.new_page()
        try:
            # Only the lab's first deploy hands the password over in its result: read it where the deploy keeps it.
            initial = initial_admin_password(load_appliance(lab_appliance_file(deployed_lab)).state_dir)
            log_in_as_deploy_admin(page, url, ADMIN_USERNAME, initial,
                                   Path(deployed_lab.state_dir) / "browser-admin-password")
            cookie = next(c for c in context.cookies() if c["name"].startswith("__Host-mipo_session"))
            assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert cookie["path"] == "/" and not cookie["domain"].startswith(".")
            shot(page, "01-dashboard")

            goto(page, url + "/scanners")
            form = page.locator("form[method='post'][action='/scanners']")
            form.locator("[name='name']").fill(f"lab-browser-{suffix}")
            form.locator("button[type='submit']").click()
            expect(page.locator("#install-command")).to_contain_text(url + "/scanner/install.sh")
            shot(page, "02-install-command")

            for path, values in (
                ("/subnets", {"name": f"lab-target-{suffix}", "cidr": "198.18.0.30"}),
                ("/port-lists", {"name": f"lab-ports-{suffix}", "spec": "22,80,443"}),
            ):
                goto(page, url + path)
                form = page.locator(f"form[method='post'][action='{path}']")
                for field, value in values.items():
                    form.locator(f"[name='{field}']").fill(value)
                form.locator("button[type='submit']").click()
                expect(page.get_by_role("status")).to_contain_text("created")
            goto(page, url + "/scanner-groups")
            form = page.locator("form[method='post'][action='/scanner-groups']")
            form.locator("[name='name']").fill(f"lab-group-{suffix}")
            form.locator("[name='mode']").select_option("split")
            form.get_by_label(re.compile(f"lab-browser-{suffix}")).check()
            form.locator("button[type='submit']").click()
            expect(page.get_by_role("status")).to_contain_text("created")
            goto(page, url + "/templates")
            form = page.locator("form[method='post'][action='/templates']")
            form.locator("[name='name']").fill(f"lab-template-{suffix}")
            form.locator("[name='port_list_id']").select_option(label=f"lab-ports-{suffix} (3 ports)")
            form.locator("[name='scanner_group_id']").select_option(label=f"lab-group-{suffix} (split)")
            form.get_by_label(f"lab-target-{suffix} (198.18.0.30/32)").check()
            form.locator("button[type='submit']").click()
            expect(page.get_by_role("status")).to_contain_text("created")
            goto(page, url + "/schedules")
            form = page.locator("form[method='post'][action='/schedules']")
            form.locator("[name='name']").fill(f"lab-schedule-{suffix}")
            form.locator("[name='template_id']").select_option(label=f"lab-template-{suffix}")
            form.locator("[name='cron']").fill("30 4 * * *")
            form.locator("button[type='submit']").click()
            expect(page.get_by_role("status")).to_contain_text("created")
            shot(page, "03-schedules")

            goto(page, url + "/templates")
            page.locator("tr", has_text=f"lab-template-{suffix}").locator("form[action='/scans/run'] button").click()
            page.wait_for_url(re.compile(r"/scans/\d+$"), timeout=90_000)
            expect(page.locator("#run-status")).to_be_visible()
            shot(page, "04-run")
            for path in ("/results", "/changes", "/services"):
                goto(page, url + path)
                expect(page.locator("h1")).to_be_visible()
                shot(page, f"05{path.replace('/', '-')}")

            page.get_by_role("button", name="Log out").click()
            expect(page).to_have_url(re.compile(r"/login$"))
            goto(page, url + "/scans")
            expect(page).to_have_url(re.compile(r"/login\?next=%2Fscans$"))
        except Exception:
            shot(page, "failure")  # what the browser showed when the flow broke
            raise
        finally:
            context.close()
