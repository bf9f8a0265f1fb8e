"""`syndicate check`, `--help`, `--version` and `--config`, run as a user runs them."""

import os
import subprocess
import sys
from pathlib import Path

from syndicate import __version__

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    environment.pop("SYNDICATE_CONFIG", None) if env is None or "SYNDICATE_CONFIG" not in env else None
    return subprocess.run([sys.executable, "-m", "syndicate", *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=60)


def config(tmp_path: Path, content: Path) -> Path:
    path = tmp_path / "syndicate.toml"
    path.write_text(f'[content]\nfolder = "{content}"\ncache = "var/cache/articles.pickle"\n[site]\ntimezone = "UTC"\n')
    return path


def test_help_and_version():
    assert run("--version").stdout.strip() == f"syndicate, version {__version__}"
    result = run("--help")
    assert result.returncode == 0 and "--config PATH" in result.stdout and "check" in result.stdout


def test_check_on_the_sample_content_is_clean():
    result = run("--config", "config/syndicate.toml", "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("15 articles, 8 categories, 0 problems")


def test_check_reports_each_problem_and_exits_1(tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    (content / "ok.md").write_text("---\ntitle: Fine\ndate: 2026-11-01\ncategories: [News]\n---\nBody.\n")
    (content / "bad.md").write_text("\n## Title\n\n### Category\n\n1. News\n\n### Date Created\n\n13/45/2026\n")
    result = run("--config", str(config(tmp_path, content)), "check")
    assert result.returncode == 1
    assert f"{content}/bad.md:10: impossible date '13/45/2026' (expected MM/DD/YYYY)" in result.stdout.splitlines()
    assert result.stdout.strip().splitlines()[-1].startswith("1 articles, 1 categories, 1 problems")


def test_check_content_option_and_config_from_environment(tmp_path):
    content = tmp_path / "elsewhere"
    content.mkdir()
    (content / "ok.md").write_text("---\ntitle: Fine\ndate: 2026-11-01\ncategories: [News, Sport]\n---\nBody.\n")
    result = run("check", "--content", str(content), env={"SYNDICATE_CONFIG": str(REPO / "config" / "syndicate.toml")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("1 articles, 2 categories, 0 problems")


def test_check_warns_when_the_postal_address_is_not_set(tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    (content / "ok.md").write_text("---\ntitle: Fine\ndate: 2026-11-01\ncategories: [News]\n---\nBody.\n")
    path = config(tmp_path, content)
    result = run("--config", str(path), "check")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].startswith("[site] postal_address: not set;")
    assert result.stdout.strip().splitlines()[-1] == "1 articles, 1 categories, 0 problems, 1 warnings"
    path.write_text(path.read_text() + 'postal_address = "1 Example Street, Paris"\n')
    result = run("--config", str(path), "check")
    assert "postal_address" not in result.stdout and result.stdout.strip().endswith("0 problems, 0 warnings")


def test_a_bad_config_is_reported_with_file_and_key_and_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[smtp]\nport = "abc"\n[site]\nlanguag = "en"\n')
    result = run("--config", str(path), "check")
    assert result.returncode == 2
    assert f'error: {path}: [smtp] port: expected an integer, got "abc"' in result.stderr
    assert f"error: {path}: [site] languag: unknown key" in result.stderr


def test_missing_default_config_is_a_clear_error(tmp_path):
    result = run("check", cwd=tmp_path)
    assert result.returncode == 2
    assert "error: config/syndicate.toml: config file not found" in result.stderr
    assert "hint:" in result.stderr
