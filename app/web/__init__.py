"""Litestar wiring shared by the HTTP roles: health, problem documents, app factory helpers."""
