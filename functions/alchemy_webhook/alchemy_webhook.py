"""POST /api/webhooks/alchemy: Alchemy's NFT-activity webhook, signature first, then transfers (SPEC §5).

The signature is checked on the raw body before anything is parsed (401 ``invalid_signature``); a
signed body that is not a webhook is a 400. Transfers are applied idempotently in one transaction with
their events, which are published right after commit; the keys they make stale are deleted right after
the commit too (read-your-writes), the event consumers being the backstop. The answer is 200
``{received, applied, reversed, stale, duplicates, ignored}``.
"""

from __future__ import annotations

from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, json_response
from such_market.http.schemas import responses
from such_market.ownership.webhook import (
    AlchemyWebhookSettings,
    WebhookSigningSettings,
    receive_webhook,
)
from such_market.runtime import runtime_for

app = create_api()


@app.post(
    "/api/webhooks/alchemy",
    summary="Alchemy NFT-activity webhook (signed with X-Alchemy-Signature)",
    tags=["webhooks"],
    request_body="such_market.ownership.schemas:AlchemyWebhookRequestBody",
    responses=responses("such_market.ownership.schemas:WebhookReceiptBody", errors=(400, 401, 503)),
)
def post_alchemy_webhook() -> Response:
    runtime = runtime_for(AlchemyWebhookSettings)
    event = app.current_event
    receipt = receive_webhook(
        connect=lambda: runtime.conn,
        cache=lambda: runtime.cache,
        publisher=runtime.publisher,
        signing_key=runtime.settings.part(WebhookSigningSettings).resolve_signing_key(),
        body=event.body,
        headers=event.headers,
    )
    return json_response(200, receipt, headers={"Cache-Control": "no-store"})


lambda_handler = api_handler(app, AlchemyWebhookSettings)
