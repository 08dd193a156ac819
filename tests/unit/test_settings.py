"""The settings loader: every problem reported at once, environment overrides, secrets by reference."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from config.settings import ConfigError, SecretRef, Settings, load


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ASSISTANT_* variable from the developer's shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("ASSISTANT_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "assistant.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load(path)
    return dict(info.value.problems)


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = load(None)
    assert s.queue.backend == "sqlite" and s.outbox.max_attempts == 8
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("assistant.db")


def test_the_example_file_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "example.toml"
    s = load(example)
    assert s.data_dir == example.parent / "data"  # relative to the file, not the cwd


def test_every_error_is_reported_at_once_with_its_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'log_level = "LOUD"\n'
        'default_timezone = "Mars/Olympus"\n'
        "[queue]\nworkers = 0\nbackend = \"kafka\"\n"
        '[smtp]\nport = "twenty-five"\n'
        "[outbox]\nmax_attempts = 0\n",
    )
    problems = problems_of(path)
    assert set(problems) == {
        "log_level", "default_timezone", "queue.workers", "queue.backend", "smtp.port",
        "outbox.max_attempts",
    }  # fmt: skip
    assert "Mars/Olympus" in problems["default_timezone"]
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value) and "queue.workers" in str(info.value)


def test_an_unknown_key_is_an_error(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "[smtp]\nhostname = \"mail\"\n[colour]\nx = 1\n"))
    assert problems == {"smtp.hostname": "unknown key", "colour": "unknown key"}


def test_redis_backend_needs_a_url(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, '[queue]\nbackend = "redis"\n'))
    assert list(problems) == ["queue.url"]
    ok = load(write(tmp_path, '[queue]\nbackend = "redis"\nurl = "redis://127.0.0.1:6379/0"\n'))
    assert ok.queue.url == "redis://127.0.0.1:6379/0"


def test_cross_checks_are_reported_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[queue]\nbackend = "redis"\n[database]\nurl = "mysql://x"\n[smtp]\nssl = true\nstarttls = true\n',
    )
    assert set(problems_of(path)) == {"queue.url", "database.url", "smtp.ssl"}


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    assert "not valid TOML" in problems_of(write(tmp_path, "[queue\n"))["config"]
    assert "file not found" in problems_of(tmp_path / "absent.toml")["config"]


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[database]\nurl = "sqlite:///from-file.db"\n[queue]\nworkers = 3\n')
    monkeypatch.setenv("ASSISTANT_DATABASE__URL", "postgresql+psycopg://app@db/assistant")
    monkeypatch.setenv("ASSISTANT_SMTP__PORT", "2525")
    s = load(path)
    assert s.database_url == "postgresql+psycopg://app@db/assistant"
    assert s.smtp.port == 2525 and s.queue.workers == 3  # the file still counts where not overridden


def test_config_path_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_CONFIG", str(write(tmp_path, "[queue]\nworkers = 5\n")))
    assert load().queue.workers == 5


def test_a_bad_environment_value_is_reported_by_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_OUTBOX__MAX_ATTEMPTS", "many")
    with pytest.raises(ConfigError) as info:
        load(None)
    assert list(dict(info.value.problems)) == ["outbox.max_attempts"]


SECRET = "s3cr3t-Value-42"


def test_secrets_resolve_from_env_file_and_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD_FOR_TEST", SECRET)
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    command = f"{sys.executable} -c \"print('{SECRET}')\""
    path = write(
        tmp_path,
        '[smtp]\nusername = "svc"\npassword = { env = "SMTP_PASSWORD_FOR_TEST" }\n'
        f"[web]\nsecret_key = {{ file = \"{secret_file}\" }}\n",
    )
    s = load(path)
    assert s.smtp.password is not None and s.web.secret_key is not None
    assert s.smtp.password.resolve().get_secret_value() == SECRET
    assert s.web.secret_key.resolve().get_secret_value() == SECRET
    assert SecretRef(command=command).resolve().get_secret_value() == SECRET
    resolved = s.smtp.password.resolve()
    for text in (repr(s), str(s), repr(resolved), str(resolved), s.model_dump_json()):
        assert SECRET not in text
    assert s.smtp.password.describe() == "env:SMTP_PASSWORD_FOR_TEST"


def test_a_secret_that_cannot_be_read_names_the_reference_not_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE is not set"):
        SecretRef(env="NOT_SET_ANYWHERE").resolve()
    with pytest.raises(ConfigError, match="cannot read"):
        SecretRef(file=tmp_path / "nope").resolve()
    with pytest.raises(ConfigError, match="secret command failed") as info:
        SecretRef(command=f"{sys.executable} -c \"print('{SECRET}'); raise SystemExit(3)\"").resolve()
    assert SECRET not in str(info.value)


def test_a_secret_reference_names_exactly_one_source(tmp_path: Path) -> None:
    path = write(tmp_path, '[smtp]\npassword = { env = "A", file = "/b" }\n')
    assert problems_of(path) == {"smtp.password": "give exactly one of env, file or command"}
    path = write(tmp_path, '[smtp]\npassword = "plain-text-password"\n')
    assert set(problems_of(path)) == {"smtp.password"}


def test_settings_objects_are_independent() -> None:
    a, b = Settings(), Settings()
    a.queue.workers = 9
    assert b.queue.workers == 2
