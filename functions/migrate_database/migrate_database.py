"""The ``Custom::DatabaseMigrations`` resource of the stack: applies pending migrations on deploy.

CloudFormation invokes it on Create, Update and Delete of the resource; ``such_market.db.on_deploy``
decides (migrate, or keep everything on Delete) and ``such_market.custom_resource.serve`` answers at the
request's response URL. The migrations ship beside this file (``migrations/`` links to the repository's
folder; ``sam build`` copies the files).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from such_market.config import DatabaseSettings, load_settings
from such_market.custom_resource import Outcome, Request, serve
from such_market.db.on_deploy import PHYSICAL_RESOURCE_ID, MigrateDatabaseSettings, handle_schema_request

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext  # a type only: Powertools stays off the cold path

MIGRATIONS: Final = Path(__file__).resolve().parent / "migrations"


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    def work(request: Request) -> Outcome:
        # Inside the work, so that settings a deployment got wrong answer FAILED with their message.
        settings = load_settings(MigrateDatabaseSettings).part(DatabaseSettings)
        return handle_schema_request(request, settings=settings, directory=MIGRATIONS)

    return serve(event, context, work, default_physical_id=PHYSICAL_RESOURCE_ID)
