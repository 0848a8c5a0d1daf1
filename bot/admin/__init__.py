"""The operator's dashboard under /admin, protected by BOTHUB_ADMIN_TOKEN and/or single sign-on
through an authenticating proxy (neither configured: no /admin at all).

Pages are modules with a `router(hub)` whose routes depend on `require_admin` (`bot.admin.auth`)
and render through `bot.admin.layout`; `bot.admin.routes.mount_admin` puts them on the app."""

from bot.admin.auth import AdminSession, require_admin
from bot.admin.routes import admin_router, mount_admin

__all__ = ["AdminSession", "admin_router", "mount_admin", "require_admin"]
