"""The base of the camelCase response models that document the API (OpenAPI only).

Several domains (collections, users, ownership) describe their answers with pydantic models whose
fields are snake_case in Python and camelCase on the wire; ``CamelModel`` holds that one rule. It lives
here, outside ``such_market.http``, so the domains' ``schemas`` modules need no HTTP import. Like every
response model, its subclasses only document: handlers serve pre-serialized bytes and never build them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """A response model whose fields are camelCase on the wire (accepted by either name)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
