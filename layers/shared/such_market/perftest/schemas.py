"""Request and response models of ``/api/admin/cache/test/performance`` (OpenAPI only: the handlers parse
with ``perftest.service`` and write the records ``perftest.runner`` builds)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunRequestBody(_Body):
    """Start a run (``quick`` when no profile is given)."""

    action: Literal["run"]
    profile: Literal["quick", "standard", "stress"] = "quick"


class ResetRequestBody(_Body):
    """Forget every stored run."""

    action: Literal["reset"]


class PerformanceActionRequestBody(RootModel[RunRequestBody | ResetRequestBody]):
    """The body of POST /api/admin/cache/test/performance."""

    root: RunRequestBody | ResetRequestBody = Field(discriminator="action")


class RunQueuedBody(BaseModel):
    """202: the run is queued; read it with GET ``?runId=``."""

    runId: str  # noqa: N815 - the wire name
    status: Literal["queued"]
    profile: Literal["quick", "standard", "stress"]


class ResetBody(BaseModel):
    """200: every stored run was forgotten."""

    success: bool
    runsDeleted: int  # noqa: N815 - the wire name


class Thresholds(BaseModel):
    maxErrorRate: float  # noqa: N815
    p99BoundMs: float  # noqa: N815


class Health(BaseModel):
    connected: bool
    connectMs: float | None  # noqa: N815
    pingMs: float | None  # noqa: N815
    serverVersion: str | None  # noqa: N815
    error: str | None


class Figures(BaseModel):
    """Operations (answered + failed), failures, latency percentiles (ms) and answered operations per second."""

    ops: int
    errors: int
    errorRate: float  # noqa: N815
    p50Ms: float  # noqa: N815
    p95Ms: float  # noqa: N815
    p99Ms: float  # noqa: N815
    opsPerSecond: float  # noqa: N815


class BasicOperation(Figures):
    operation: str


class ConcurrencyLevel(Figures):
    clients: int


class StressStep(ConcurrencyLevel):
    step: int
    broken: bool


class BreakingPoint(BaseModel):
    step: int
    clients: int
    reasons: list[Literal["error_rate", "p99"]]
    errorRate: float  # noqa: N815
    p99Ms: float  # noqa: N815
    opsPerSecond: float  # noqa: N815


class Stress(BaseModel):
    maxErrorRate: float  # noqa: N815
    p99BoundMs: float  # noqa: N815
    steps: list[StressStep]
    breakingPoint: BreakingPoint | None  # noqa: N815
    maxHealthyClients: int | None  # noqa: N815
    peakOpsPerSecond: float  # noqa: N815
    stoppedBy: Literal["breaking_point", "end_of_ladder", "time_budget"]  # noqa: N815


class Recovery(BaseModel):
    recovered: bool
    recoveryMs: float | None  # noqa: N815
    boundMs: float  # noqa: N815


class Cleanup(BaseModel):
    keysDeleted: int  # noqa: N815


class PerformanceRunBody(BaseModel):
    """A run: queued, running, completed (with every figure) or failed (with ``error``)."""

    runId: str  # noqa: N815
    status: Literal["queued", "running", "completed", "failed"]
    profile: Literal["quick", "standard", "stress"]
    requestedAt: str | None  # noqa: N815
    startedAt: str | None = None  # noqa: N815
    finishedAt: str | None = None  # noqa: N815
    tookMs: float | None = None  # noqa: N815
    budgetSeconds: float | None = None  # noqa: N815
    error: str | None = None
    thresholds: Thresholds | None = None
    health: Health | None = None
    basicOperations: list[BasicOperation] | None = None  # noqa: N815
    concurrency: list[ConcurrencyLevel] | None = None
    stress: Stress | None = None
    recovery: Recovery | None = None
    stoppedEarly: bool | None = None  # noqa: N815
    cleanup: Cleanup | None = None
    recommendations: list[str] | None = None
