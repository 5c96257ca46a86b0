"""Settings come from the environment; secrets may come from files."""

import os
import subprocess
import sys
from pathlib import Path

from laborchestrator.settings import envbool, envlist, envsecret

REPO = Path(__file__).resolve().parents[2]


def test_secret_read_from_file(tmp_path, monkeypatch):
    secret_file = tmp_path / "key"
    secret_file.write_text("from-a-file\n")
    monkeypatch.setenv("SOME_SECRET", "from-env")
    monkeypatch.setenv("SOME_SECRET_FILE", str(secret_file))
    assert envsecret("SOME_SECRET") == "from-a-file"


def test_env_helpers(monkeypatch):
    monkeypatch.setenv("FLAG", "Yes")
    monkeypatch.setenv("HOSTS", " a.example , b.example,, ")
    assert envbool("FLAG", "0") is True
    assert envbool("UNSET_FLAG", "0") is False
    assert envlist("HOSTS") == ["a.example", "b.example"]


def settings_in_subprocess(env: dict[str, str], expression: str) -> str:
    clean_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DEBUG", "SECRET_KEY")}
    result = subprocess.run(
        [sys.executable, "-c", f"from laborchestrator import settings as s; print({expression})"],
        env={**clean_env, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_sqlite_without_database_url_and_postgresql_with_it(tmp_path):
    assert settings_in_subprocess(
        {"LABORCHESTRATOR_VAR_DIR": str(tmp_path)}, "s.DATABASES['default']['ENGINE']"
    ) == ("django.db.backends.sqlite3")
    engine = settings_in_subprocess(
        {"DATABASE_URL": "postgres://u@db.example:5432/labs", "LABORCHESTRATOR_VAR_DIR": str(tmp_path)},
        "s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME']",
    )
    assert engine == "django.db.backends.postgresql labs"


def test_development_secret_key_is_generated_per_checkout_and_kept(tmp_path):
    env = {"LABORCHESTRATOR_VAR_DIR": str(tmp_path)}
    first = settings_in_subprocess(env, "s.SECRET_KEY")
    assert len(first) >= 50
    assert settings_in_subprocess(env, "s.SECRET_KEY") == first
    assert (tmp_path / "dev-secret-key").stat().st_mode & 0o077 == 0


def test_production_has_no_default_secret_key_or_hosts(tmp_path):
    env = {"LABORCHESTRATOR_PRODUCTION": "1", "LABORCHESTRATOR_VAR_DIR": str(tmp_path)}
    assert settings_in_subprocess(env, "repr(s.SECRET_KEY), s.ALLOWED_HOSTS, s.DEBUG") == "'' [] False"


def test_postgresql_connections_come_from_a_pool_when_switched_on(tmp_path):
    env = {"DATABASE_URL": "postgres://u@db.example:5432/labs", "LABORCHESTRATOR_VAR_DIR": str(tmp_path)}
    options = "s.DATABASES['default'].get('OPTIONS', {})"
    assert settings_in_subprocess(env, options) == "{}"
    pooled = settings_in_subprocess({**env, "DATABASE_POOL": "1"}, options)
    assert pooled == "{'pool': {'min_size': 1, 'max_size': 10, 'timeout': 10}}"


def test_sqlite_transactions_take_the_write_lock_when_they_begin(tmp_path):
    options = settings_in_subprocess(
        {"LABORCHESTRATOR_VAR_DIR": str(tmp_path)}, "s.DATABASES['default']['OPTIONS']"
    )
    assert options == "{'transaction_mode': 'IMMEDIATE', 'timeout': 20}"
