"""Response models of GET /api/health for the OpenAPI document: the shape ``such_market.health`` answers.

They only document (the handler serializes ``HealthReport.as_dict()`` itself), so they sit beside the use
case rather than in it: ``health`` stays free of response models, as every use case module is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DatabaseHealthBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    status: Literal["ok", "unavailable"]
    latency_ms: float = Field(alias="latencyMs")
    schema_version: str | None = Field(alias="schemaVersion")
    required_schema_version: str = Field(alias="requiredSchemaVersion")
    migrations_current: bool = Field(alias="migrationsCurrent")
    error: str | None


class CacheHealthBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    status: Literal["ok", "unavailable"]
    latency_ms: float = Field(alias="latencyMs")
    error: str | None


class HealthBody(BaseModel):
    status: Literal["ok", "unavailable"]
    database: DatabaseHealthBody
    cache: CacheHealthBody
