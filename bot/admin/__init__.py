"""The operator's admin area under /admin, protected by BOTHUB_ADMIN_TOKEN (unset: no /admin).

Issue 9's dashboard pages are routes that depend on `require_admin` (see `bot.admin.auth`)."""

from bot.admin.auth import AdminSession, require_admin
from bot.admin.routes import admin_router, mount_admin

__all__ = ["AdminSession", "admin_router", "mount_admin", "require_admin"]
