"""The image, checked without a Docker engine: the Dockerfile's text, the build context, and the
build step that needs Django (collectstatic) run the way the Dockerfile runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.deploy.manifests import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            result.append((keyword.upper(), arguments.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, arguments in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, arguments))
    return result


def test_multi_stage_with_a_slim_python_runtime_last() -> None:
    froms = [args for keyword, args in instructions() if keyword == "FROM"]
    assert [f.split(" AS ")[-1] for f in froms] == ["assets", "runtime"]
    assert froms[0].startswith("node:")
    assert froms[-1].startswith("python:") and "slim" in froms[-1]


def test_python_packages_come_from_the_hashed_production_lock_only() -> None:
    installs = [args for keyword, args in stages()[-1] if keyword == "RUN" and "pip install" in args]
    assert len(installs) == 1
    (install,) = installs
    assert "--require-hashes" in install and "--no-deps" in install
    assert "-r /tmp/requirements.lock" in install and "source=requirements.lock" in install
    # The development lock (test tools) never enters the image.
    assert "requirements-dev.lock" not in " ".join(args for _, args in instructions())


def test_runtime_runs_as_a_numeric_non_root_user() -> None:
    users = [args for keyword, args in stages()[-1] if keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    # The Deployment's runAsUser is the same account.
    assert "runAsUser: " + uid in (REPO_ROOT / "deploy" / "k8s" / "deployment.yaml").read_text()


def test_starts_the_app_server_behind_the_ingress_and_no_migrations() -> None:
    (cmd,) = [args for keyword, args in stages()[-1] if keyword == "CMD"]
    command = json.loads(cmd)  # exec form: signals reach the server, not a shell
    assert command == [
        "python", "-m", "laborchestrator.serve", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"
    ]  # fmt: skip
    assert not [args for keyword, args in instructions() if keyword == "ENTRYPOINT"]
    assert "migrate" not in cmd


def test_assets_are_built_like_make_assets_and_static_files_collected() -> None:
    assets = " ".join(args for _, args in stages()[0])
    assert "npm ci" in assets
    for path in ("@novnc/novnc/core", "@xterm/xterm/lib/xterm.mjs", "@xterm/addon-fit/lib/addon-fit.mjs"):
        assert path in assets
    runtime = " ".join(args for _, args in stages()[-1])
    assert "--from=assets" in runtime
    assert "manage.py collectstatic --no-input" in runtime


def test_no_secret_enters_the_image() -> None:
    for keyword, args in instructions():
        if keyword in {"COPY", "ADD"}:
            assert ".env" not in args.split(), args
        if keyword in {"ENV", "ARG"}:
            assert not re.search(r"(PASSWORD|SECRET_KEY|TOKEN)=", args), args
    ignored = DOCKERIGNORE.read_text().split()
    for entry in (".env", ".git", ".venv", "var", "node_modules"):
        assert entry in ignored


def test_collectstatic_succeeds_as_the_image_build_runs_it(tmp_path: Path) -> None:
    # LABORCHESTRATOR_PRODUCTION=1 as in the image: WhiteNoise's manifest storage, no SECRET_KEY, no database.
    static_root = tmp_path / "staticfiles"
    env = {
        **os.environ,
        "LABORCHESTRATOR_PRODUCTION": "1",
        "STATIC_ROOT": str(static_root),
        "LABORCHESTRATOR_VAR_DIR": str(tmp_path / "var"),
    }
    for name in ("SECRET_KEY", "SECRET_KEY_FILE", "DATABASE_URL", "DEBUG"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "--verbosity", "0"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    assert "admin/css/base.css" in manifest
    if (REPO_ROOT / "static" / "novnc").is_dir():  # present after `make assets`, as in the image
        assert "novnc/core/rfb.js" in manifest
    assert list(static_root.rglob("*.css.gz")), "WhiteNoise did not compress"


def test_production_serves_hashed_static_files_and_development_keeps_the_default() -> None:
    code = "from django.conf import settings; print(settings.STORAGES['staticfiles']['BACKEND'])"
    backends = {}
    for production in ("0", "1"):
        env = {
            **os.environ,
            "LABORCHESTRATOR_PRODUCTION": production,
            "DJANGO_SETTINGS_MODULE": "laborchestrator.settings",
        }
        result = subprocess.run(
            [sys.executable, "-c", "import django; django.setup(); " + code],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        backends[production] = result.stdout.strip()
    assert backends == {
        "0": "django.contrib.staticfiles.storage.StaticFilesStorage",
        "1": "whitenoise.storage.CompressedManifestStaticFilesStorage",
    }
