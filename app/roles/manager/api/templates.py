"""`/api/templates`: scan templates (targets x ports x options x scanner group) and their preview."""

from __future__ import annotations

from litestar import delete, get, patch, post
from litestar.params import JSONBody

from app.domain.config_objects import templates as service
from app.domain.config_objects.schemas import TemplateCreate, TemplatePreview, TemplateRead, TemplateUpdate
from app.roles.manager.auth import Actor
from app.web.deps import AppSettings, ConfigConn
from app.web.params import Id


@get("/templates")
async def list_templates(config_conn: ConfigConn) -> list[TemplateRead]:
    return await service.list_templates(config_conn)


@post("/templates")
async def create_template(data: JSONBody[TemplateCreate], config_conn: ConfigConn, actor: Actor) -> TemplateRead:
    return await service.create_template(config_conn, actor, data)


@get("/templates/{template_id:int}")
async def get_template(template_id: Id, config_conn: ConfigConn) -> TemplateRead:
    return await service.get_template(config_conn, template_id)


@get("/templates/{template_id:int}/preview")
async def preview_template(template_id: Id, config_conn: ConfigConn, settings: AppSettings) -> TemplatePreview:
    return await service.preview_template(config_conn, settings, template_id)


@patch("/templates/{template_id:int}")
async def update_template(template_id: Id, data: JSONBody[TemplateUpdate], config_conn: ConfigConn,
                          actor: Actor) -> TemplateRead:
    return await service.update_template(config_conn, actor, template_id, data)


@delete("/templates/{template_id:int}")
async def delete_template(template_id: Id, config_conn: ConfigConn, actor: Actor) -> None:
    await service.delete_template(config_conn, actor, template_id)


ROUTES = [list_templates, create_template, get_template, preview_template, update_template, delete_template]
