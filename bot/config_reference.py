"""The configuration reference (`docs/configuration.md`), written from the settings models.

The document is generated rather than written so that it cannot drift from the code: every
environment variable of `Settings` and every key of the behaviour file (`Behaviour`) appears
with its type, limits and default, and a test compares the committed file with this output.

Descriptions come from `Field(description=...)`. The behaviour models mostly document their
keys with comments beside the fields instead, so for those the comments on and directly above
a field's line are used (read with `ast` and `tokenize`, never executed).
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import textwrap
import tokenize
import types
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bot.config import Behaviour, Settings

COMMAND = "bothub config-reference --output docs/configuration.md"

# Environment variables are grouped by what they configure; the first matching rule wins.
STORAGE_VARIABLES = frozenset({"BOTHUB_DATA_DIR", "DATABASE_URL", "LANCEDB_URI", "REDIS_URL"})
SECTION_PREFIXES: tuple[tuple[str, str], ...] = (
    ("OPENAI_", "Model"),
    ("BOTHUB_ADMIN_", "Admin area"),
    ("SLACK_", "Slack"),
    ("DISCORD_", "Discord"),
    ("MICROSOFT_", "Microsoft Teams"),
    ("TEAMS_", "Microsoft Teams"),
    ("BOTHUB_LOG_", "Logs and telemetry"),
    ("OTEL_", "Logs and telemetry"),
)

# Read by libraries rather than by `Settings`: documented here so that the reference is whole.
LIBRARY_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("FORWARDED_ALLOW_IPS", "uvicorn",
     "Comma-separated addresses (or `*`) of the proxies whose X-Forwarded-For and "
     "X-Forwarded-Proto are believed; default `127.0.0.1,::1`. Set to a load balancer's "
     "addresses, bothub sees each client's own address (the admin sign-in throttle counts "
     "per address). BOTHUB_ADMIN_SSO_TRUSTED_PROXIES is matched against the address that "
     "connected (the proxy in front), which `bothub serve` keeps aside before it applies "
     "these headers."),
)

INTRO = """\
bothub reads two kinds of configuration, and validates both at start: an error names the
variable, or the file and key, to fix.

- **Deployment settings** come from environment variables, or from a `.env` file in the working
  directory (`.env.example` lists them). They say where things are and which secrets to use.
- **Behaviour** comes from the YAML file named by `BOTHUB_CONFIG`: persona, per-channel
  overrides, knowledge sources, escalation, limits, budgets and prices. `bothub.example.yaml`
  shows the keys with examples."""


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a reference table."""

    name: str
    type: str
    default: str
    description: str
    secret: bool = False


@dataclass(frozen=True, slots=True)
class Section:
    """A heading with its prose and its table."""

    title: str
    text: str
    rows: tuple[Row, ...]


def render() -> str:
    """The whole document, Markdown, ending in one newline."""
    parts = ["# Configuration reference", "",
             f"<!-- Generated from bot/config.py by `{COMMAND}`; do not edit by hand. -->", "",
             INTRO, "", "## Environment variables", "",
             "Secrets are marked 🔒: keep them out of version control (`.env` is ignored by "
             "git and by the Docker build); bothub never writes them to its logs. An empty "
             "value counts as unset.", ""]
    for section in environment_sections():
        parts += [f"### {section.title}", "", *_table("Variable", section.rows), ""]
    parts += ["### Read by libraries", "",
              "| Variable | Read by | Description |", "|---|---|---|"]
    parts += [f"| `{name}` | {reader} | {_cell(text)} |" for name, reader, text
              in LIBRARY_VARIABLES]
    parts += ["", "## Behaviour file (`BOTHUB_CONFIG`)", "",
              "Every key is optional. Nested keys are written with dots; `[]` marks the items "
              "of a list and `<name>` the entries of a mapping whose keys you choose. A key "
              "that is not listed here is an error.", ""]
    for section in behaviour_sections():
        parts += [f"### `{section.title}`", ""]
        if section.text:
            parts += [section.text, ""]
        if section.rows:
            parts += [*_table("Key", section.rows), ""]
    return "\n".join(parts).rstrip("\n") + "\n"


# --- environment --------------------------------------------------------------------------

def variable_name(name: str, field: FieldInfo) -> str:
    """The environment variable a `Settings` field is read from."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    if isinstance(alias, str):
        return alias
    return name.upper()


def settings_variables() -> dict[str, FieldInfo]:
    """Every variable `Settings` reads, in declaration order."""
    return {variable_name(name, field): field for name, field in Settings.model_fields.items()}


def environment_sections() -> list[Section]:
    grouped: dict[str, list[Row]] = {}
    for variable, field in settings_variables().items():
        row = Row(name=variable, type=type_label(field.annotation, field.metadata),
                  default=_env_default(field.default), description=field.description or "",
                  secret=_is_secret(field.annotation))
        grouped.setdefault(_section_of(variable), []).append(row)
    return [Section(title=title, text="", rows=tuple(rows)) for title, rows in grouped.items()]


def _section_of(variable: str) -> str:
    if variable in STORAGE_VARIABLES:
        return "Storage"
    for prefix, title in SECTION_PREFIXES:
        if variable.startswith(prefix):
            return title
    if variable.endswith(("_MODEL", "_MODELS")):
        return "Model"
    return "Knowledge base and operation"


def _env_default(value: Any) -> str:
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


# --- behaviour file -----------------------------------------------------------------------

def behaviour_sections() -> list[Section]:
    return list(_model_sections(Behaviour, Behaviour(), prefix="", seen={}))


def _model_sections(model: type[BaseModel], instance: BaseModel | None, prefix: str,
                    seen: dict[type[BaseModel], str]) -> Iterator[Section]:
    """One section per model (its scalar keys), then one per nested model, depth first.
    `instance` is the default in force at this place, whose values may differ from the
    model's own field defaults (`limits.rate.user` is not `limits.rate.channel`). A model
    met again with its own defaults (`channels[].persona`) points to its first section."""
    title = prefix.rstrip(".")
    if instance is None and model in seen:
        yield Section(title=title, text=f"The same keys as `{seen[model]}`.", rows=())
        return
    seen.setdefault(model, title)
    rows: list[Row] = []
    nested: list[tuple[str, type[BaseModel], BaseModel | None]] = []
    comments = field_comments(model)
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        default = getattr(instance, name) if instance is not None else field.default
        child = _nested_model(field.annotation)
        if child is not None:
            kind, child_model = child
            if kind == "model":
                child_default = default if isinstance(default, BaseModel) else None
                nested.append((path, child_model, child_default))
                if default is None:  # optional: unset means "inherit", worth a row
                    rows.append(Row(path, "mapping", "`null`",
                                    field.description or comments.get(name, "")))
            else:
                suffix = "[]" if kind == "list" else ".<name>"
                nested.append((path + suffix, child_model, None))
                rows.append(Row(path, type_label(field.annotation, field.metadata),
                                _yaml_default(default),
                                field.description or comments.get(name, "")))
            continue
        shown = _yaml_default(default)
        if field.is_required() and instance is not None:
            # The mapping as a whole has a default, but a mapping written in the file must
            # give this key: `limits.rate.user: {per_minute: 20}` lacks `burst`.
            shown += f" (required when you write `{title}`)"
        rows.append(Row(path, type_label(field.annotation, field.metadata), shown,
                        field.description or comments.get(name, "")))
    if prefix:
        yield Section(title=title, text=_docstring(model), rows=tuple(rows))
    for path, child_model, child_default in nested:
        yield from _model_sections(child_model, child_default, prefix=f"{path}.", seen=seen)


def _nested_model(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """("model" | "list" | "dict", the model) when the field holds models, else None."""
    inner = _without_none(annotation)
    if _is_model(inner):
        return "model", inner
    origin, args = get_origin(inner), get_args(inner)
    if origin is list and args and _is_model(args[0]):
        return "list", args[0]
    if origin is dict and len(args) == 2 and _is_model(args[1]):
        return "dict", args[1]
    return None


def _yaml_default(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, Decimal | Path):
        return f"`{value}`"
    if isinstance(value, str):
        first, *more = value.splitlines() or [""]
        shown = first if len(first) <= 48 and not more else first[:48].rstrip() + "…"
        return f"`{json.dumps(shown, ensure_ascii=False)}`"
    if isinstance(value, list | dict):
        if any(isinstance(item, BaseModel) for item in
               (value.values() if isinstance(value, dict) else value)):
            return "see below"
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    return f"`{value}`"


def _docstring(model: type[BaseModel]) -> str:
    """The model's own docstring (not one inherited from BaseModel), as one paragraph."""
    doc = model.__dict__.get("__doc__")
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split())


@cache
def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """Comments that document a model's fields: those on the lines of the field's definition,
    and a block of comment lines directly above it."""
    try:
        source = textwrap.dedent(inspect.getsource(model))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    lines = source.splitlines()
    found: dict[str, str] = {}
    class_node = ast.parse(source).body[0]
    assert isinstance(class_node, ast.ClassDef)
    for node in class_node.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        line = node.lineno - 1
        while line >= 1 and line in comments and lines[line - 1].lstrip().startswith("#"):
            above.insert(0, comments[line])
            line -= 1
        beside = [comments[n] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1)
                  if n in comments]
        text = " ".join(above + beside)
        if text.startswith("None:"):  # the comments speak Python; the file is YAML
            text = "null:" + text.removeprefix("None:")
        if text:
            found[node.target.id] = text
    return found


# --- types --------------------------------------------------------------------------------

SCALAR_LABELS: dict[Any, str] = {
    str: "text", SecretStr: "text", int: "integer", float: "number", Decimal: "number",
    bool: "boolean", Path: "path",
}


def type_label(annotation: Any, metadata: list[Any] | None = None) -> str:
    """A reader's name for a type, with its limits: `number, 1 to 3600`."""
    label = _bare_label(annotation)
    limits = _limits(metadata or [])
    return f"{label}, {limits}" if limits else label


def _bare_label(annotation: Any) -> str:
    inner = _without_none(annotation)
    origin, args = get_origin(inner), get_args(inner)
    if origin is Literal:
        return "one of " + ", ".join(f"`{arg}`" for arg in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_bare_label(arg) for arg in args)
    if origin is list:
        return f"list of {_plural(_bare_label(args[0]))}" if args else "list"
    if origin is dict:
        return f"mapping to {_bare_label(args[1])}" if len(args) == 2 else "mapping"
    if _is_model(inner):
        return "mapping"
    return SCALAR_LABELS.get(inner, getattr(inner, "__name__", str(inner)))


def _plural(label: str) -> str:
    return {"text": "texts", "mapping": "mappings"}.get(label, label)


def _limits(metadata: list[Any]) -> str:
    bounds: dict[str, Any] = {}
    for item in metadata:
        for key in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern"):
            value = getattr(item, key, None)
            if value is not None:
                bounds[key] = value
    parts: list[str] = []
    low = ("≥", bounds["ge"]) if "ge" in bounds else (">", bounds["gt"]) if "gt" in bounds \
        else None
    high = ("≤", bounds["le"]) if "le" in bounds else ("<", bounds["lt"]) if "lt" in bounds \
        else None
    if low:
        parts.append(f"{low[0]} {_number(low[1])}")
    if high:
        parts.append(f"{high[0]} {_number(high[1])}")
    if "min_length" in bounds and "max_length" in bounds:
        parts.append(f"{bounds['min_length']} to {bounds['max_length']} long")
    elif "min_length" in bounds:
        parts.append(f"at least {bounds['min_length']} long")
    elif "max_length" in bounds:
        parts.append(f"at most {bounds['max_length']} long")
    if "pattern" in bounds:
        parts.append(f"matching `{bounds['pattern']}`")
    return ", ".join(parts)


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _without_none(annotation: Any) -> Any:
    """`X | None` -> X (unset is shown as the default); other unions stay whole."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
        return Union[tuple(args)]  # noqa: UP007 (a runtime union of the remaining members)
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_secret(annotation: Any) -> bool:
    return _without_none(annotation) is SecretStr


# --- Markdown -----------------------------------------------------------------------------

def _table(first: str, rows: tuple[Row, ...]) -> list[str]:
    lines = [f"| {first} | Type | Default | Description |", "|---|---|---|---|"]
    for row in rows:
        name = f"`{row.name}`" + (" 🔒" if row.secret else "")
        lines.append(f"| {name} | {_cell(row.type)} | {_cell(row.default)} | "
                     f"{_cell(row.description)} |")
    return lines


def _cell(text: str) -> str:
    """Table-safe: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")
