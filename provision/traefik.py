"""Traefik on the edge: TLS ≥ 1.2 with the appliance certificate, routes to manager and ingest, safe access log."""

from __future__ import annotations

from pyinfra.operations import files, systemd

from provision.app import AppChanges
from provision.config import CREDENTIALS_DIR
from provision.controller import Prepared
from provision.ops import changed, deploy, put_text
from provision.render import render, traefik_dynamic, traefik_static


@deploy("Traefik")
def deploy_traefik(prepared: Prepared, app: AppChanges) -> None:
    appliance = prepared.appliance
    files.directory(name="Ensure /etc/traefik/dynamic", path="/etc/traefik/dynamic", mode="0755")
    static = put_text("Ensure Traefik's static configuration", "/etc/traefik/traefik.yml", traefik_static(appliance))
    dynamic = put_text("Ensure Traefik's routes, TLS options and middlewares", "/etc/traefik/dynamic/mipo.yml",
                       traefik_dynamic(appliance))
    cert = put_text("Ensure the edge certificate (appliance CA)", "/etc/traefik/edge.crt",
                    prepared.edge_cert.read_bytes())
    key = put_text("Ensure the edge TLS key (root-only, handed over with LoadCredential=)",
                   f"{CREDENTIALS_DIR}/edge-tls.key", prepared.edge_key.read_bytes(), mode="0600")
    unit = put_text("Ensure the unit traefik.service", "/etc/systemd/system/traefik.service",
                    render("traefik.service.j2"))
    systemd.daemon_reload(name="Reload systemd after traefik.service changed", _if=changed(unit))
    systemd.service(name="Ensure Traefik runs and starts at boot", service="traefik.service", running=True,
                    enabled=True)
    systemd.service(name="Restart Traefik after its binary, configuration or certificate changed",
                    service="traefik.service", restarted=True,
                    _if=changed(static, dynamic, cert, key, unit, app.install))
