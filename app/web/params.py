"""Shared request-parameter types: database ids (bigint identity, kept below 2^62) and their optional form."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

# Limits stated in the type reach both validation and the OpenAPI document. An optional id needs its own
# alias: Litestar does not apply the bounds of `Id` inside `Id | None`.
Id = Annotated[int, Parameter(ge=1, le=2**62)]
OptId = Annotated[int | None, Parameter(ge=1, le=2**62)]
