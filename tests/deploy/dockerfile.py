"""Just enough of the Dockerfile and .dockerignore formats for the deployment tests to read
the files the way Docker does: instructions with their continuation lines joined, stages,
`ARG` defaults in `FROM`, and the exclusion rules of the build context."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "compose.yaml"


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY ...
    arguments: str  # as written, continuation lines joined

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, else None."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            _, _, text = text.partition("CMD")
        text = text.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        return [str(part) for part in value]

    def options(self) -> dict[str, str]:
        """`--name=value` flags before the arguments (COPY --from, HEALTHCHECK --interval)."""
        found: dict[str, str] = {}
        for word in shlex.split(self.arguments.split("CMD")[0], posix=True):
            if word.startswith("--") and "=" in word:
                name, _, value = word[2:].partition("=")
                found[name] = value
        return found


@dataclass(slots=True)
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """Docker's reading: comments and blank lines dropped, `\\` continuations joined."""
    joined: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        joined.append(pending + line)
        pending = ""
    if pending:
        joined.append(pending.strip())
    result = []
    for line in joined:
        keyword, _, arguments = line.partition(" ")
        result.append(Instruction(keyword.upper(), arguments.strip()))
    return result


def stages(text: str) -> list[Stage]:
    """The build stages, with global `ARG` defaults substituted into each `FROM`."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "ARG" and not found:
            variable, _, default = instruction.arguments.partition("=")
            args[variable.strip()] = default.strip().strip('"')
        elif instruction.keyword == "FROM":
            words = instruction.arguments.split()
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                           lambda m: args.get(m.group(1) or m.group(2), ""), words[0])
            stage = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            found.append(Stage(image=image, name=stage))
        elif found:
            found[-1].instructions.append(instruction)
    return found


@dataclass(frozen=True, slots=True)
class DockerIgnore:
    """The build context's exclusions: patterns relative to the context root, matched like
    Go's filepath.Match with `**`, a `!` pattern re-including, the last match deciding. A
    pattern that matches a directory excludes everything below it."""

    patterns: tuple[tuple[bool, str], ...]  # (re-include, pattern)

    @classmethod
    def read(cls, path: Path) -> DockerIgnore:
        rules = []
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = line.removeprefix("!").strip().strip("/")
            rules.append((negated, pattern.removeprefix("./")))
        return cls(tuple(rules))

    def excludes(self, relative: str) -> bool:
        parts = relative.strip("/").split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for negated, pattern in self.patterns:
            if any(_match(pattern, prefix) for prefix in prefixes):
                excluded = not negated
        return excluded


def _match(pattern: str, path: str) -> bool:
    if pattern.startswith("**/"):
        tail = pattern[3:]
        return any(_match(tail, "/".join(path.split("/")[n:]))
                   for n in range(len(path.split("/"))))
    if pattern.count("/") != path.count("/"):
        return False
    return all(fnmatch.fnmatchcase(part, rule)
               for part, rule in zip(path.split("/"), pattern.split("/"), strict=True))
