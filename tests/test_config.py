"""Config loading: every problem named with its file and key, all at once; paths relative to the file."""

from pathlib import Path

import pytest

from syndicate.config import load_settings, read_secret
from syndicate.errors import ConfigError, MissingSecretError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "syndicate.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return info.value.problems


def test_shipped_configs_load():
    demo = load_settings(REPO / "config" / "syndicate.toml")
    assert demo.mail.backend == "file"
    assert demo.database.url.startswith("sqlite:///") and demo.database.url.endswith("/var/syndicate.db")
    assert demo.http.host == "127.0.0.1"
    production = load_settings(REPO / "config" / "production.example.toml")
    assert production.database.url.startswith("postgresql+psycopg://")
    assert production.mail.backend == "smtp"


def test_wrong_type_names_file_section_key_and_value(tmp_path):
    path = write(tmp_path, '[smtp]\nport = "abc"\n')
    assert problems(path) == [f'{path}: [smtp] port: expected an integer, got "abc"']


def test_unknown_keys_and_sections_are_errors(tmp_path):
    path = write(tmp_path, '[site]\ntitel = "typo"\n[smpt]\nhost = "x"\n')
    assert problems(path) == [
        f"{path}: [site] titel: unknown key",
        f'{path}: unknown section or key "smpt"',
    ]


@pytest.mark.parametrize("zone", ["Europe", "Europe/" + "x" * 300])
def test_a_timezone_that_is_a_folder_of_the_zone_database_or_too_long_is_a_config_error(tmp_path, zone):
    path = write(tmp_path, f'[site]\ntimezone = "{zone}"\n')
    assert problems(path) == [f'{path}: [site] timezone: unknown timezone "{zone}" (expected an IANA name such as Europe/Paris)']


def test_all_problems_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        '[site]\ntimezone = "Mars/Olympus"\nbase_url = "example.org"\n'
        '[feeds]\nformats = ["rss", "gopher"]\nitems = 0\n[mail]\nbackend = "pigeon"\n',
    )
    found = problems(path)
    assert len(found) == 5
    assert f'{path}: [site] timezone: unknown timezone "Mars/Olympus" (expected an IANA name such as Europe/Paris)' in found
    assert f'{path}: [site] base_url: expected an absolute http(s) URL, got "example.org"' in found
    assert f"{path}: [feeds] formats[1]: expected 'rss', 'atom' or 'json', got \"gopher\"" in found
    assert any(p.startswith(f"{path}: [feeds] items: ") and "greater than or equal to 1" in p for p in found)
    assert f"{path}: [mail] backend: expected 'smtp', 'file', 'console' or 'memory', got \"pigeon\"" in found


def test_category_tables_are_validated(tmp_path):
    path = write(tmp_path, '[categories.tech]\ntitle = "Tech"\naliases = "Technology"\ncolour = 1\n')
    found = problems(path)
    assert f'{path}: [categories.tech] aliases: expected a list, got "Technology"' in found
    assert f"{path}: [categories.tech] colour: unknown key" in found


def test_invalid_toml_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "[site]\ntitle = \n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: invalid TOML: ") and "line 2" in problem


def test_missing_file_is_a_clear_error(tmp_path):
    assert problems(tmp_path / "nope.toml") == [f"{tmp_path / 'nope.toml'}: config file not found"]


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    path = write(tmp_path, '[content]\nfolder = "../articles"\n[database]\nurl = "sqlite:///state/s.db"\n')
    monkeypatch.chdir(REPO)
    settings = load_settings(path)
    assert settings.content.folder == (tmp_path / "articles").resolve()
    assert settings.database.url == f"sqlite:///{(tmp_path / 'conf' / 'state' / 's.db').resolve()}"
    assert settings.output.folder == (tmp_path / "conf" / "public").resolve()


def test_config_path_from_environment(tmp_path):
    path = write(tmp_path, '[site]\ntitle = "From env"\n')
    assert load_settings(environ={"SYNDICATE_CONFIG": str(path)}).site.title == "From env"


def test_settings_are_frozen(tmp_path):
    settings = load_settings(write(tmp_path, ""))
    with pytest.raises(Exception):
        settings.site.title = "changed"  # type: ignore[misc]


def test_secrets_come_from_the_named_environment_variable(tmp_path):
    settings = load_settings(write(tmp_path, '[smtp]\npassword_env = "RELAY_PASSWORD"\n'))
    assert read_secret(settings.smtp.password_env, "[smtp] password", {"RELAY_PASSWORD": "s3cret"}) == "s3cret"
    with pytest.raises(MissingSecretError) as info:
        read_secret(settings.smtp.password_env, "[smtp] password", {})
    assert str(info.value) == "[smtp] password: environment variable RELAY_PASSWORD is not set"
    assert "RELAY_PASSWORD" in info.value.hint


def test_secret_values_are_not_config_keys(tmp_path):
    path = write(tmp_path, '[smtp]\npassword = "hunter2"\n')
    assert problems(path) == [f"{path}: [smtp] password: unknown key"]
