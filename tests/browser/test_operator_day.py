"""An operator's day in headless Chromium against real processes: manager, ingest, dispatcher and the scanner
agent, scanning services on a loopback address of the test's own. Screenshots of every page go to
artifacts/screenshots/."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.integration.backup_support import make_kit
from tests.integration.test_dispatcher_process import QUICK
from tests.integration.test_scanner_end_to_end import HOST, Service, _window
from tests.integration.test_scanner_support import (
    FAST_SCANNER,
    IngestEnv,
    agent_config,
    agent_enrol,
    ingest_env,
    running_agent,
)
from tests.support.postgres import PostgresServer
from tests.support.services import serve_role, stop_process, write_toml
from tests.support.settings import settings_document

pytestmark = pytest.mark.browser
INITIAL = "initial-admin-password-1"
CHOSEN = "admin-chosen-password-2"
OPERATOR_TEMPORARY = "temporary-operator-pw-3"
OPERATOR_CHOSEN = "operator-chosen-password-4"
Shot = Callable[[Page, str], Path]


@contextlib.contextmanager
def dispatcher(config: Path, creds: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {"CREDENTIALS_DIRECTORY": str(creds), "PATH": "/usr/bin:/bin"}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app", "--config", str(config), "dispatcher"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        stop_process(proc)


@contextlib.contextmanager
def appliance(pg: PostgresServer, tmp: Path) -> Iterator[tuple[str, IngestEnv]]:
    """Ingest, manager, dispatcher and backup as real processes on one set of migrated databases; the deploy's
    admin."""
    with ingest_env(pg, tmp) as env, contextlib.ExitStack() as stack:
        dbs = {k: getattr(env.owner.databases, k).name for k in ("config", "jobs", "results")}
        creds = tmp / "creds"
        kit = make_kit(pg, creds, tmp)
        backup_cfg = write_toml(settings_document(pg, dbs, "mipo_backup", **kit.overrides), tmp / "backup.toml")
        backup_url = stack.enter_context(serve_role(backup_cfg, "backup", creds, tmp / "backup.log"))
        backup = {**kit.overrides["backup"], "url": backup_url}  # type: ignore[dict-item]
        manager_cfg = write_toml(settings_document(pg, dbs, "mipo_manager", scanner=FAST_SCANNER, backup=backup,
                                                   ingest={"listen": f"127.0.0.1:{env.process.port}"},
                                                   public_url=env.url), tmp / "manager.toml")
        dispatcher_cfg = write_toml(settings_document(pg, dbs, "mipo_dispatcher", scanner=FAST_SCANNER,
                                                      dispatcher=QUICK), tmp / "dispatcher.toml")
        secret = tmp / "admin-password"
        secret.write_text(INITIAL + "\n")
        made = subprocess.run([sys.executable, "-m", "app", "--config", str(manager_cfg), "create-admin",
                               "--username", "admin", "--password-file", str(secret)],
                              env={"CREDENTIALS_DIRECTORY": str(creds), "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, check=False)
        assert made.returncode == 0, made.stderr
        with serve_role(manager_cfg, "manager", creds, tmp / "manager.log") as url, \
                dispatcher(dispatcher_cfg, creds, tmp / "dispatcher.log"):
            yield url, env


def submit(page: Page, action: str, values: dict[str, Any]) -> None:
    """Fill the POST form with this action (text, selects by label, checkboxes) and submit it."""
    form = page.locator(f"form[method='post'][action='{action}']").first
    for name, value in values.items():
        field = form.locator(f"[name='{name}']")
        kind = field.first.evaluate("e => e.tagName.toLowerCase() + ':' + (e.type || '')")
        if kind.startswith("select"):
            field.select_option(label=value)
        elif kind.endswith("checkbox"):
            for label in value if isinstance(value, list) else [value]:
                form.get_by_label(label).check()
        else:
            field.fill(str(value))
    form.locator("button[type='submit']").last.click()


def log_in(page: Page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))


def reload_until(page: Page, selector: str, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if text in page.locator(selector).inner_text():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in {selector} after {timeout:g} s")
        time.sleep(1)
        page.reload()


def run_now_and_wait(page: Page, shot: Shot, name: str) -> str:
    """Click the first Run now on this page, follow the request to its run, watch progress to completion."""
    page.locator("form[action='/scans/run'] button").first.click()
    page.wait_for_url(re.compile(r"/scans/\d+$"), timeout=90_000)
    shot(page, f"{name}-progress")
    expect(page.locator("#run-status")).to_contain_text("completed", timeout=150_000)
    expect(page.locator("#run-percent")).to_have_text("100%")
    shot(page, f"{name}-completed")
    return page.url.rsplit("/", 1)[1]


def test_operator_day(pg: PostgresServer, tmp_path: Path, browser_page: Page, screenshot: Shot,
                      console_errors: list[str]) -> None:
    """The deploy's admin logs in, changes the initial password, adds a scanner (installed from the shown token)
    and an operator account. The operator logs in, changes the temporary password, creates subnet, port list,
    scanner group, template and schedule, runs now and watches it, reads results, sees a newly opened port in
    the changes and host history, backs up, logs out. The admin checks the audit chain."""
    page, shot = browser_page, screenshot
    base, held = _window()  # the other ports of the window stay bound by us, so nothing else answers there
    ssh = Service(base + 11, greet=b"SSH-2.0-OpenSSH_9.9 mipo-browser\r\n")
    web: Service | None = None
    try:
        with appliance(pg, tmp_path) as (url, env):
            # Log in as the deploy's admin: the temporary password must be changed first.
            page.goto(url + "/scanners")
            expect(page).to_have_url(re.compile(r"/login\?next=%2Fscanners$"))
            shot(page, "01-login")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill("wrong-password-here")
            page.get_by_role("button", name="Log in").click()
            expect(page.locator("#login-error")).to_contain_text("Wrong username or password")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(INITIAL)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(re.compile(r"/password$"))
            shot(page, "02-password-change-forced")
            page.goto(url + "/")
            expect(page).to_have_url(re.compile(r"/password$"))
            submit(page, "/password", {"current_password": INITIAL, "new_password": "short",
                                       "confirm_password": "short"})
            expect(page.locator("#e-new_password")).to_contain_text("at least 12 characters")
            shot(page, "03-password-field-error")
            submit(page, "/password", {"current_password": INITIAL, "new_password": CHOSEN,
                                       "confirm_password": CHOSEN})
            expect(page.get_by_role("status")).to_contain_text("Password changed.")
            shot(page, "04-dashboard")

            # Add a scanner; its install command is shown once; install the agent with that token.
            page.get_by_role("link", name="Scanners", exact=True).click()
            submit(page, "/scanners", {"name": "vantage-1", "description": "loopback vantage point"})
            command = page.locator("#install-command").inner_text()
            token = page.locator("#enrolment-token").inner_text().strip()
            assert token.startswith("mipoenrol_") and env.url + "/scanner/install.sh" in command
            assert token not in command  # typed at the installer's prompt, never in shell history
            shot(page, "05-scanner-install-command")
            agent = agent_config(env, "agent-1")
            enrolled = agent_enrol(env, agent, token)
            assert enrolled.returncode == 0, enrolled.stderr
            with running_agent(env, agent):
                page.goto(url + "/scanners")
                reload_until(page, "table", "online")
                expect(page.locator("table")).to_contain_text("0.1.0")
                shot(page, "06-scanners-online")
                page.get_by_role("link", name="vantage-1").click()
                shot(page, "07-scanner-detail")

                # The admin gives the operator an account with a temporary password, then leaves.
                page.goto(url + "/users")
                submit(page, "/users", {"username": "olivia", "password": OPERATOR_TEMPORARY,
                                        "role": "operator — configure and run scans"})
                expect(page.get_by_role("status")).to_contain_text("User olivia created.")
                shot(page, "07b-users")
                log_out(page)

                # The operator's day: first login, own password, then the configuration.
                log_in(page, "olivia", OPERATOR_TEMPORARY)
                expect(page).to_have_url(re.compile(r"/password$"))
                submit(page, "/password", {"current_password": OPERATOR_TEMPORARY, "new_password": OPERATOR_CHOSEN,
                                           "confirm_password": OPERATOR_CHOSEN})
                expect(page.get_by_role("status")).to_contain_text("Password changed.")
                expect(page.locator("nav")).not_to_contain_text("Users")  # admin pages are not offered
                page.goto(url + "/subnets")
                submit(page, "/subnets", {"name": "bad", "cidr": "not-a-network"})
                expect(page.locator("#e-cidr")).to_be_visible()
                shot(page, "08-subnet-field-error")
                submit(page, "/subnets", {"name": "loopback-target", "cidr": HOST})
                expect(page.get_by_role("status")).to_contain_text("loopback-target created")
                shot(page, "09-subnets")
                page.goto(url + "/port-lists")
                submit(page, "/port-lists", {"name": "test-window", "spec": f"{base}-{base + 199}"})
                expect(page.locator("table")).to_contain_text("200")
                shot(page, "10-port-lists")
                page.goto(url + "/scanner-groups")
                submit(page, "/scanner-groups", {"name": "vantage", "mode": "mirror",
                                                 "scanner_ids": "vantage-1 (active)"})
                expect(page.locator("table")).to_contain_text("vantage-1")
                shot(page, "11-scanner-groups")
                page.goto(url + "/templates")
                submit(page, "/templates", {"name": "loopback", "port_list_id": "test-window (200 ports)",
                                            "scanner_group_id": "vantage (mirror)",
                                            "subnet_ids": "loopback-target (127.77.0.1/32)", "timeout_ms": "500"})
                expect(page.locator("table")).to_contain_text("loopback")
                shot(page, "12-templates")
                page.goto(url + "/schedules")
                submit(page, "/schedules", {"name": "nightly", "template_id": "loopback", "cron": "0 3 * * *"})
                expect(page.locator("table")).to_contain_text("0 3 * * *")
                shot(page, "13-schedules")

                # Run now from the templates page and watch it; the first run is the baseline.
                page.goto(url + "/templates")
                first_run = run_now_and_wait(page, shot, "14-run-1")
                page.get_by_role("link", name="Results of this run").click()
                expect(page.locator("table")).to_contain_text(f"{base + 11}/tcp")
                expect(page.locator("table")).to_contain_text("SSH-2.0-OpenSSH_9.9")
                shot(page, "15-results")

                # A new service appears; the schedule's Run now finds it as an opened port.
                web = Service(base + 80, http=True)
                page.goto(url + "/schedules")
                second_run = run_now_and_wait(page, shot, "16-run-2")
                assert second_run != first_run
                page.get_by_role("link", name="Changes found by this run").click()
                expect(page.locator("table")).to_contain_text(f"{base + 80}/tcp")
                expect(page.locator("table")).to_contain_text("opened")
                shot(page, "17-changes")
                page.get_by_role("link", name=HOST).first.click()
                expect(page.locator("main")).to_contain_text(f"{base + 80}/tcp")
                shot(page, "18-host-history")
                page.goto(url + "/results/at?at=" + datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
                expect(page.locator("table")).to_contain_text(f"{base + 80}/tcp")
                expect(page.locator("table")).to_contain_text(f"{base + 11}/tcp")
                shot(page, "18b-open-at-a-point-in-time")
                page.goto(url + f"/scans/{second_run}/vantage")
                expect(page.locator("table")).to_contain_text("Every vantage point saw the same open ports")
                page.goto(url + "/scans")
                expect(page.locator("table")).to_contain_text(f"#{second_run}")
                shot(page, "19-scans")

                # The rest of the day, while the scanner still runs: events, dashboard, health, backups.
                for path, name in (("/events", "20-events"), ("/", "21-dashboard-after"),
                                   ("/exclusions", "22-exclusions"), ("/subnet-groups", "23-subnet-groups")):
                    page.goto(url + path)
                    expect(page.locator("h1")).to_be_visible()
                    shot(page, name)
                page.goto(url + "/services")
                expect(page.locator("main")).to_contain_text("all services ok")
                shot(page, "26-health")
            page.goto(url + "/backups")
            page.get_by_role("button", name="Back up now").click()
            expect(page.get_by_role("status")).to_contain_text("Backup started.")
            expect(page.locator("#backup-operation")).to_contain_text("succeeded", timeout=120_000)
            expect(page.locator("table")).to_contain_text("MiB")
            shot(page, "28-backups")
            log_out(page)
            page.goto(url + "/scans")
            expect(page).to_have_url(re.compile(r"/login\?next=%2Fscans$"))
            shot(page, "27-logged-out")

            # The admin checks who did what, and that the audit chain is intact.
            log_in(page, "admin", CHOSEN)
            page.goto(url + "/audit")
            expect(page.locator("table")).to_contain_text("scanner.create")
            expect(page.locator("table")).to_contain_text("backup.create")
            expect(page.locator("table")).to_contain_text("olivia")
            page.get_by_role("button", name="Verify the chain").click()
            expect(page.locator("#verify-result")).to_contain_text("Chain intact")
            shot(page, "25-audit")
            page.goto(url + "/users")
            expect(page.locator("table")).to_contain_text("olivia")
            shot(page, "24-users")
            log_out(page)
            # Expected refusals the browser logs as failed loads (the wrong password, the field errors) aside,
            # no script error and no Content-Security-Policy violation happened on any page.
            unexpected = [e for e in console_errors if "Failed to load resource" not in e]
            assert unexpected == [], unexpected
    finally:
        ssh.close()
        if web is not None:
            web.close()
        for sock in held:
            sock.close()
