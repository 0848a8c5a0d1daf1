"""compose.yaml: bothub with PostgreSQL and Redis. `docker compose config` validates it where
the compose plugin is installed; the rest reads the file as compose would, so that it is
checked on every machine: services, health checks, start order, volumes, no secret written
into it, and every variable it gives bothub one that bothub reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from bot.config_reference import settings_variables
from tests.deploy.dockerfile import COMPOSE_FILE, DOCKERFILE, ROOT, stages

INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|HEADERS$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def interpolate(value: str, environment: dict[str, str]) -> str:
    """Compose's `${NAME}` and `${NAME:-default}`: the variable when set and not empty."""
    return INTERPOLATION.sub(
        lambda m: environment.get(m["name"]) or (m["default"] or ""), value)


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def compose_unavailable() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "docker is not installed"
    try:
        result = subprocess.run([docker, "compose", "version"], capture_output=True, text=True,
                                timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`docker compose version` did not run: {exc}"
    if result.returncode != 0:
        first = (result.stderr or result.stdout).strip().splitlines()[:1]
        return ("docker has no compose plugin (`docker compose version`: "
                f"{first[0] if first else 'exit ' + str(result.returncode)})")
    return None


def test_docker_compose_accepts_the_file() -> None:
    reason = compose_unavailable()
    if reason is not None:
        pytest.skip(f"{reason}; compose.yaml is still checked by the other tests here")
    environment = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    result = subprocess.run(["docker", "compose", "--file", str(COMPOSE_FILE),
                             "--project-directory", str(ROOT), "config", "--quiet"],
                            capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0, result.stderr


def test_bothub_postgres_and_redis_each_have_a_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"bothub", "postgres", "redis"} <= set(services)
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check["test"][0] in {"CMD", "CMD-SHELL"}, f"{name} has no health check"
        assert {"interval", "timeout", "retries"} <= set(check), name


def test_bothub_probes_itself_as_the_image_does(compose: dict[str, Any]) -> None:
    (check,) = stages(DOCKERFILE.read_text(encoding="utf-8"))[-1].all("HEALTHCHECK")
    image_command = check.exec_form()
    assert image_command is not None
    assert compose["services"]["bothub"]["healthcheck"]["test"] == ["CMD", *image_command]


def test_bothub_starts_once_its_database_and_redis_are_healthy(compose: dict[str, Any]) -> None:
    depends = compose["services"]["bothub"]["depends_on"]
    assert depends == {"postgres": {"condition": "service_healthy"},
                       "redis": {"condition": "service_healthy"}}


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    mounts = {name: [str(v) for v in service.get("volumes", [])]
              for name, service in compose["services"].items()}
    assert any(v.endswith(":/var/lib/postgresql/data") and v.split(":")[0] in declared
               for v in mounts["postgres"])
    assert any(v.endswith(":/data") and v.split(":")[0] in declared for v in mounts["bothub"])


def test_bothub_reaches_the_services_with_one_password(compose: dict[str, Any]) -> None:
    """DATABASE_URL and PostgreSQL's own settings are written twice: they must agree, with the
    default password and with one set in .env."""
    services = compose["services"]
    for environment in ({}, {"POSTGRES_PASSWORD": "e3b0c44298fc1c149afbf4c8996fb924"}):
        bothub = {k: interpolate(v, environment)
                  for k, v in environment_of(services["bothub"]).items()}
        postgres = {k: interpolate(v, environment)
                    for k, v in environment_of(services["postgres"]).items()}
        database = urlsplit(bothub["DATABASE_URL"])
        assert database.scheme.startswith("postgresql")
        assert database.hostname == "postgres" and database.port == 5432
        assert database.username == postgres["POSTGRES_USER"]
        assert database.password == postgres["POSTGRES_PASSWORD"]
        assert database.path == f"/{postgres['POSTGRES_DB']}"
        assert urlsplit(bothub["REDIS_URL"]).hostname == "redis"
    assert bothub["DATABASE_URL"].count("e3b0c44298fc1c149afbf4c8996fb924") == 1


def test_no_secret_is_written_into_the_file(compose: dict[str, Any]) -> None:
    """Secrets come from .env or the shell. The one default allowed is PostgreSQL's password
    on the compose network, named so that nobody mistakes it for a real one."""
    for name, service in compose["services"].items():
        for key, value in environment_of(service).items():
            secrets = [value] if SECRET_NAME.search(key) else []
            secrets += [m.group(1) for m in re.finditer(r"://[^:/@\s]+:([^@\s]+)@", value)]
            for secret in secrets:
                match = INTERPOLATION.fullmatch(secret)
                assert match, f"{name}: {key} has a literal secret; read it from .env"
                default = match["default"] or ""
                assert not default or "local" in default, (
                    f"{name}: {key}'s default must say it is for local use only")


def test_only_bothub_is_published_and_on_loopback_by_default(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "ports" not in services["postgres"] and "ports" not in services["redis"]
    (port,) = services["bothub"]["ports"]
    assert interpolate(port, {}) == "127.0.0.1:8000:8000"


def test_bothub_is_given_only_variables_it_reads(compose: dict[str, Any]) -> None:
    known = set(settings_variables())
    unknown = set(environment_of(compose["services"]["bothub"])) - known
    assert not unknown, f"bot/config.py Settings reads no {sorted(unknown)}"


def test_settings_come_from_an_optional_env_file(compose: dict[str, Any]) -> None:
    assert compose["services"]["bothub"]["env_file"] == [{"path": ".env", "required": False}]


def test_the_container_runs_without_privileges(compose: dict[str, Any]) -> None:
    bothub = compose["services"]["bothub"]
    assert bothub.get("cap_drop") == ["ALL"]
    assert "no-new-privileges:true" in bothub.get("security_opt", [])
    assert not bothub.get("privileged") and bothub.get("user") in (None, "10001:10001")
