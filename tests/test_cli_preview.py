"""`syndicate preview` run as a user runs it: a real process, a real config, the sample content."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys

import pytest

from tests.digest_support import ROOT


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "syndicate.toml"
    path.write_text(
        f"""
[site]
title = "Preview Test"
base_url = "https://news.example.org"
timezone = "Europe/Paris"

[content]
folder = "{ROOT / 'content'}"
cache = "cache/articles.pickle"

[database]
url = "sqlite:///state/syndicate.db"

[mail]
from = "Preview Test <digest@news.example.org>"
domain = "news.example.org"
folder = "outbox"
""",
        encoding="utf-8",
    )
    return path


def run(config, *args):
    return subprocess.run(
        [sys.executable, "-m", "syndicate", "--config", str(config), "--log-level", "ERROR", "preview", *args],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )


def test_eml_preview_is_a_whole_message_with_placeholder_links_and_changes_no_state(config, tmp_path):
    out = tmp_path / "digest.eml"
    result = run(config, "--categories", "main,sports", "--since", "2026-11-20T00:00", "--format", "eml", "--output", str(out))
    assert result.returncode == 0, result.stderr.decode()
    parsed = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Preview Test: 3 new articles in Main and Sports"
    assert parsed["List-Unsubscribe"] == "<https://news.example.org/unsubscribe/preview>"
    text = parsed.get_body(("plain",)).get_content()
    assert "Late Goal Settles the City Derby" in text and "you follow Main and Sports" in text
    assert "Preferences" not in text and "https://news.example.org/preferences/preview" in text
    assert not (tmp_path / "state").exists() and not (tmp_path / "outbox").exists()


def test_text_preview_goes_to_stdout(config):
    result = run(config, "--categories", "technology", "--since", "2026-11-15", "--format", "text")
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode()
    assert text.startswith("Preview Test\n")
    assert "New Export Rules Tighten Control of Advanced Chips" in text
    assert "Quantum Sensor Maps Groundwater" in text  # 2026-11-16, after --since
    assert "Open-Source Grid Scheduler" not in text  # 2026-11-14, before --since


def test_unknown_categories_and_subscriber_lookups_are_clear_usage_errors(config):
    unknown = run(config, "--categories", "sports,nope")
    assert unknown.returncode == 2
    assert "unknown category nope" in unknown.stderr.decode() and "known categories: army-wars" in unknown.stderr.decode()
    lookup = run(config, "--subscriber", "ana@example.org")
    assert lookup.returncode == 1 and "no subscriber with address ana@example.org" in lookup.stderr.decode()


def test_nothing_new_says_so_and_prints_nothing(config):
    result = run(config, "--categories", "sports", "--since", "2999-01-01T00:00:00+00:00", "--format", "html")
    assert result.returncode == 0
    assert result.stdout == b"" and "nothing new in sports" in result.stderr.decode()
