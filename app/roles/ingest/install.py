"""`GET /scanner/install.sh` and `GET /scanner/agent.pyz` (+ `.sha256`): what a new scanner host downloads."""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get

from app.config import Settings
from app.domain.scanners.service import ca_pem_and_fingerprint
from app.roles.ingest.runtime import Runtime
from app.web.deps import AppSettings

_TEMPLATE = Path(__file__).with_name("install.sh")
_NO_STORE = {"Cache-Control": "no-store"}


def render_install_script(settings: Settings, agent_sha256: str) -> str:
    ca = ca_pem_and_fingerprint(settings)
    # Values are single-quoted in the script; none of them can contain a quote (URL checked, PEM, hex).
    url = settings.public_url.rstrip("/")
    if "'" in url:
        raise ValueError("public_url must not contain a quote")
    return (_TEMPLATE.read_text().replace("@@SERVER_URL@@", url).replace("@@AGENT_SHA256@@", agent_sha256)
            .replace("@@CA_PEM@@", ca[0].strip() if ca else ""))


@get("/scanner/install.sh", cache_control=None)
async def install_script(settings: AppSettings, ingest_runtime: Runtime) -> Response[str]:
    return Response(render_install_script(settings, ingest_runtime.agent_sha256),
                    media_type="text/x-shellscript", headers=_NO_STORE)


@get("/scanner/agent.pyz", cache_control=None)
async def agent_zipapp(ingest_runtime: Runtime) -> Response[bytes]:
    return Response(ingest_runtime.agent, media_type="application/zip",
                    headers={**_NO_STORE, "X-Mipo-SHA256": ingest_runtime.agent_sha256})


@get("/scanner/agent.pyz.sha256", cache_control=None)
async def agent_sha256(ingest_runtime: Runtime) -> Response[str]:
    return Response(f"{ingest_runtime.agent_sha256}  agent.pyz\n", media_type="text/plain", headers=_NO_STORE)


ROUTES = [install_script, agent_zipapp, agent_sha256]
