"""Pages of the configuration objects: subnets, subnet groups, exclusions, port lists, scanner groups,
templates and schedules — all through their domain services (audited there)."""

from __future__ import annotations

from psycopg import AsyncConnection

from app.config import Settings
from app.domain.config_objects import exclusions, port_lists, scanner_groups, schedules, subnets, templates
from app.domain.config_objects import schemas as s
from app.domain.scanners import repository as scanners_repo
from app.roles.manager.gui.crud import Column, Field, Resource, routes


async def _subnet_choices(conn: AsyncConnection) -> list[tuple[int | str, str]]:
    return [(x.id, f"{x.name} ({x.cidr})") for x in await subnets.list_subnets(conn, limit=5000)]


async def _subnet_group_choices(conn: AsyncConnection) -> list[tuple[int | str, str]]:
    return [(x.id, x.name) for x in await subnets.list_groups(conn)]


async def _port_list_choices(conn: AsyncConnection) -> list[tuple[int | str, str]]:
    return [(x.id, f"{x.name} ({x.port_count} ports)") for x in await port_lists.list_port_lists(conn)]


async def _scanner_group_choices(conn: AsyncConnection) -> list[tuple[int | str, str]]:
    return [(x.id, f"{x.name} ({x.mode})") for x in await scanner_groups.list_groups(conn)]


async def _template_choices(conn: AsyncConnection) -> list[tuple[int | str, str]]:
    return [(x.id, x.name) for x in await templates.list_templates(conn)]


async def _scanner_choices(conn: AsyncConnection) -> list[tuple[int | str, str]]:
    # `offline_after` only affects the online flag, which a choice list does not show.
    return [(x.id, f"{x.name} ({x.status})") for x in await scanners_repo.list_scanners(conn, 1.0)]


async def _template_preview(conn: AsyncConnection, settings: Settings, template_id: int) -> list[tuple[str, str]]:
    preview = await templates.preview_template(conn, settings, template_id)
    return [("A run now would scan", f"{preview.addresses:,} addresses x {preview.ports:,} ports = "
                                     f"{preview.probes:,} probes in {preview.ranges:,} ranges"),
            ("Left out by exclusions and scope", f"{preview.excluded_addresses:,} addresses")]


NAME = Field("name", "Name")
DESCRIPTION = Field("description", "Description", "textarea")

SUBNETS = Resource(
    "subnets", "Subnets", "Subnet", subnets.list_subnets, subnets.get_subnet, subnets.create_subnet,
    subnets.update_subnet, subnets.delete_subnet, s.SubnetCreate, s.SubnetUpdate,
    (NAME, Field("cidr", "CIDR or address", help="e.g. 198.18.0.0/24 or 198.18.0.10"), DESCRIPTION),
    (Column("Name", "name"), Column("CIDR", "cidr"), Column("Addresses", "addresses"),
     Column("Description", "description")),
)
SUBNET_GROUPS = Resource(
    "subnet-groups", "Subnet groups", "Subnet group", subnets.list_groups, subnets.get_group, subnets.create_group,
    subnets.update_group, subnets.delete_group, s.SubnetGroupCreate, s.SubnetGroupUpdate,
    (NAME, DESCRIPTION, Field("subnet_ids", "Subnets", "multi", choices="subnets")),
    (Column("Name", "name"), Column("Subnets", "subnet_ids", ref="subnets"), Column("Description", "description")),
    choices={"subnets": _subnet_choices},
)
EXCLUSIONS = Resource(
    "exclusions", "Exclusions", "Exclusion", exclusions.list_exclusions, exclusions.get_exclusion,
    exclusions.create_exclusion, exclusions.update_exclusion, exclusions.delete_exclusion,
    s.ExclusionCreate, s.ExclusionUpdate,
    (Field("cidr", "CIDR or address", help="never scanned"), Field("reason", "Reason", "textarea"),
     Field("template_id", "Applies to", "select", choices="templates", optional_choice="every template")),
    (Column("CIDR", "cidr"), Column("Reason", "reason"), Column("Template", "template_id", ref="templates"),
     Column("Created", "created_at")),
    choices={"templates": _template_choices},
    intro="Addresses that no scan ever probes, globally or for one template.",
)
PORT_LISTS = Resource(
    "port-lists", "Port lists", "Port list", port_lists.list_port_lists, port_lists.get_port_list,
    port_lists.create_port_list, port_lists.update_port_list, port_lists.delete_port_list,
    s.PortListCreate, s.PortListUpdate,
    (NAME, Field("spec", "Ports", help="e.g. 22,80,443,8000-8100 or top-100"), DESCRIPTION),
    (Column("Name", "name"), Column("Spec", "spec"), Column("Ports", "port_count"), Column("Built in", "builtin"),
     Column("Description", "description")),
)
SCANNER_GROUPS = Resource(
    "scanner-groups", "Scanner groups", "Scanner group", scanner_groups.list_groups, scanner_groups.get_group,
    scanner_groups.create_group, scanner_groups.update_group, scanner_groups.delete_group,
    s.ScannerGroupCreate, s.ScannerGroupUpdate,
    (NAME, Field("mode", "Mode", "select", choices="modes",
                 help="mirror: every scanner scans everything (compare vantage points); split: the work is shared"),
     DESCRIPTION, Field("scanner_ids", "Scanners", "multi", choices="scanners")),
    (Column("Name", "name"), Column("Mode", "mode"), Column("Scanners", "scanner_ids", ref="scanners"),
     Column("Description", "description")),
    choices={"modes": lambda _conn: _static([("mirror", "mirror"), ("split", "split")]),
             "scanners": _scanner_choices},
)
TEMPLATES = Resource(
    "templates", "Templates", "Template", templates.list_templates, templates.get_template,
    templates.create_template, templates.update_template, templates.delete_template,
    s.TemplateCreate, s.TemplateUpdate,
    (NAME, Field("port_list_id", "Port list", "select", choices="port_lists"),
     Field("scanner_group_id", "Scanner group", "select", choices="scanner_groups"),
     Field("subnet_ids", "Subnets", "multi", choices="subnets"),
     Field("subnet_group_ids", "Subnet groups", "multi", choices="subnet_groups"),
     Field("rate", "Rate (probes/s per scanner)", "number"), Field("timeout_ms", "Timeout (ms)", "number"),
     Field("banner", "Read banners", "checkbox"), Field("tls", "Read TLS certificates", "checkbox"), DESCRIPTION),
    (Column("Name", "name"), Column("Port list", "port_list_id", ref="port_lists"),
     Column("Scanner group", "scanner_group_id", ref="scanner_groups"), Column("Subnets", "subnet_ids", ref="subnets"),
     Column("Subnet groups", "subnet_group_ids", ref="subnet_groups"), Column("Rate", "rate")),
    choices={"port_lists": _port_list_choices, "scanner_groups": _scanner_group_choices,
             "subnets": _subnet_choices, "subnet_groups": _subnet_group_choices},
    run_now_attr="id",
    facts_fn=_template_preview,
)
SCHEDULES = Resource(
    "schedules", "Schedules", "Schedule", schedules.list_schedules, schedules.get_schedule,
    schedules.create_schedule, schedules.update_schedule, schedules.delete_schedule,
    s.ScheduleCreate, s.ScheduleUpdate,
    (NAME, Field("template_id", "Template", "select", choices="templates"),
     Field("cron", "Cron expression", help="minute hour day month weekday, e.g. 0 3 * * *"),
     Field("timezone", "Time zone", help="e.g. UTC or Europe/Berlin"),
     Field("jitter_seconds", "Jitter (seconds)", "number"), Field("enabled", "Enabled", "checkbox")),
    (Column("Name", "name"), Column("Template", "template_id", ref="templates"), Column("Cron", "cron"),
     Column("Zone", "timezone"), Column("Enabled", "enabled"), Column("Next run", "next_run_at"),
     Column("Last run", "last_run_at")),
    choices={"templates": _template_choices},
    run_now_attr="template_id",
)


async def _static(items: list[tuple[int | str, str]]) -> list[tuple[int | str, str]]:
    return items


RESOURCES = (SUBNETS, SUBNET_GROUPS, EXCLUSIONS, PORT_LISTS, SCANNER_GROUPS, TEMPLATES, SCHEDULES)
ROUTES = [handler for resource in RESOURCES for handler in routes(resource)]
