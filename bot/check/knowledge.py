"""The knowledge index: LanceDB at LANCEDB_URI, the table of the configured embedding model
present and filled. An empty index is a warning: answers then have no passages to cite."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from bot.check.context import Check, Context
from bot.check.findings import Finding, failed, first_line, ok, public_url, warning
from bot.config import Settings
from bot.kb.index import TABLE_PREFIX, table_name

PART = "knowledge base"
SYNC_FIX = "run `bothub kb sync` (bothub serve also syncs on start)"


def checks(context: Context) -> list[Check]:
    return [Check(PART, check_knowledge, "check LANCEDB_URI and that its storage answers")]


def embedder_name(settings: Settings) -> str | None:
    """The name `bot.kb.embeddings.embedder_from_settings` gives its embedder, worked out
    without building one (a local model takes seconds to load)."""
    choice = settings.embedding_model.strip()
    if choice.lower() in {"", "none", "off"}:
        return None
    if choice.lower() == "local" or choice.lower().startswith("local:"):
        from bot.kb.embeddings import LOCAL_DEFAULT

        return f"local:{choice.partition(':')[2] or LOCAL_DEFAULT}"
    return f"openai:{choice}" if settings.openai_api_key is not None else None


async def check_knowledge(context: Context) -> list[Finding]:
    import lancedb

    uri = context.settings.resolved_lancedb_uri
    shown = public_url(uri)
    if _missing_folder(uri):  # opening it would create it
        return [warning(PART, f"empty: nothing indexed yet at {shown}", SYNC_FIX)]
    try:
        db = await lancedb.connect_async(uri)
        tables = [n for n in (await db.list_tables()).tables if n.startswith(TABLE_PREFIX)]
    except Exception as exc:
        return [failed(PART, f"cannot open LanceDB at {shown}: {type(exc).__name__}: "
                             f"{first_line(exc)}",
                       "check LANCEDB_URI (a folder, or s3://, gs://, az:// with its "
                       "credentials in the environment)")]
    wanted = table_name(embedder_name(context.settings))
    if wanted not in tables:
        if tables:
            return [warning(PART, f"indexed for another embedding model ({', '.join(tables)}); "
                                  f"searches use text only until {wanted} is built", SYNC_FIX)]
        return [warning(PART, f"empty: nothing indexed yet at {shown}", SYNC_FIX)]
    rows = await (await db.open_table(wanted)).count_rows()
    if rows == 0:
        return [warning(PART, f"empty: table {wanted} has no passages", SYNC_FIX)]
    search = "vectors and full text" if wanted != table_name(None) else "full text only"
    return [ok(PART, f"{rows} passages in {wanted} at {shown} ({search})")]


def _missing_folder(uri: str) -> bool:
    folder = _local_folder(uri)
    return folder is not None and not folder.exists()


def _local_folder(uri: str) -> Path | None:
    """The folder of a local URI; None for object storage (s3://, gs://, az://, db://)."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(parts.path)
    if parts.scheme == "" or len(parts.scheme) == 1:  # a Windows drive letter is no scheme
        return Path(uri)
    return None
