"""POST /api/webhook: signed Farcaster mini-app events — app added/removed, notifications on/off (SPEC §8).

The JSON Farcaster Signature is verified (Ed25519, then the key as an active app key of the fid through
Neynar) before the event is read; then its token change is stored. 400 malformed, 401 bad signature or
key, 429 too many app-key lookups (Retry-After); 200 ``{event, fid, appFid, notificationsEnabled, replay}``.
"""

from __future__ import annotations

from such_market.cache.keys import CacheKeys
from such_market.config import CacheSettings
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, json_response
from such_market.http.schemas import responses
from such_market.notifications.service import MiniAppWebhookSettings, receive_miniapp_event
from such_market.notifications.settings import NotificationSettings
from such_market.runtime import runtime_for
from such_market.users.service import learn_user
from such_market.validation import source_ip

app = create_api()


@app.post(
    "/api/webhook",
    summary="Farcaster mini-app events (JSON Farcaster Signature): app added/removed, notifications on/off",
    tags=["webhooks"],
    request_body="such_market.notifications.schemas:MiniAppEventRequestBody",
    responses=responses("such_market.notifications.schemas:MiniAppEventReceiptBody", errors=(400, 401, 429, 503)),
)
def post_miniapp_event() -> Response:
    runtime = runtime_for(MiniAppWebhookSettings)
    receipt = receive_miniapp_event(
        body=app.current_event.body,
        neynar=lambda: runtime.neynar,
        cache=lambda: runtime.cache_client,
        keys=CacheKeys(runtime.settings.part(CacheSettings).cache_prefix),
        connect=lambda: runtime.conn,
        settings=runtime.settings.part(NotificationSettings),
        learn_user=lambda fid: learn_user(runtime, fid),
        throttle=lambda: runtime.cache,
        source_ip=source_ip(app.current_event.raw_event),
    )
    return json_response(200, receipt, headers={"Cache-Control": "no-store"})


lambda_handler = api_handler(app, MiniAppWebhookSettings)
