"""The rehearsal tests' shared fixtures: ``template.yaml`` translated once per session (a SAM translator run in
a subprocess), a fresh copy of it for a test that edits it, and the ARNs the rehearsal makes up for the
secrets the stack creates."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from local.rehearsal.translate import ROOT, transformed_template

CREATED_DATABASE_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:such-market/prod/database-Rehrsl"
CREATED_CACHE_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:such-market/prod/cache-auth-Rehrsl"


@pytest.fixture(scope="session")
def translated() -> dict[str, Any]:
    """The translated template: read it, never edit it (take ``template`` to edit)."""
    return transformed_template(ROOT / "template.yaml")


@pytest.fixture
def template(translated: dict[str, Any]) -> dict[str, Any]:
    """A copy of the translated template that a test may edit, as a wrong template would be translated."""
    return copy.deepcopy(translated)
