"""The server-rendered GUI: Jinja2 pages, htmx for the live parts, behind the same guard as the API."""
