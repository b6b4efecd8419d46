"""POST /api/admin/notifications/send: an announcement to some or all users with notifications on (SPEC §8)."""

from __future__ import annotations

from such_market.http.admin import require_admin
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, json_response
from such_market.http.schemas import responses
from such_market.notifications.client import get_notification_client
from such_market.notifications.service import AdminNotificationSettings, parse_announcement, send_announcement
from such_market.notifications.settings import NotificationSettings
from such_market.runtime import runtime_for

app = create_api()
app.use(middlewares=[require_admin(AdminNotificationSettings)])


@app.post(
    "/api/admin/notifications/send",
    summary="Send an announcement {fids?, title, body, targetUrl} to users with notifications on",
    tags=["admin"],
    request_body="such_market.notifications.schemas:AnnouncementRequestBody",
    responses=responses("such_market.notifications.schemas:AnnouncementBody", errors=(400, 401, 403, 503)),
)
def post_announcement() -> Response:
    runtime = runtime_for(AdminNotificationSettings)
    settings = runtime.settings.part(NotificationSettings)
    announcement = parse_announcement(app.current_event.decoded_body, base_url=settings.miniapp_url)
    body = send_announcement(
        conn=runtime.conn,
        client=get_notification_client(settings),
        settings=settings,
        announcement=announcement,
    )
    return json_response(200, body, headers={"Cache-Control": "no-store"})


lambda_handler = api_handler(app, AdminNotificationSettings)
