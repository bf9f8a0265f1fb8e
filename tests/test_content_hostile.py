"""Hostile article files (issue 12, point 2): every file of tests/hostile_articles gives the error that
expected.json names, at its line, in bounded time and memory; links and special files are made here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from syndicate.content import ReaderOptions, read_corpus

CORPUS = Path(__file__).resolve().parent / "hostile_articles"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())
OPTIONS = ReaderOptions(timezone="America/New_York")  # west of UTC: 9999-12-31 overflows here
# Made by the test (a repository cannot hold them portably): name -> (line, expected error).
MADE = {
    "link-to-itself.md": (0, "symlink loop; skipped"),
    "loop": (0, "symlink to a folder already read (a loop"),
    "dangling.md": (0, "dangling symlink (points to 'nowhere.md'"),
    "outside-secret.md": (0, "symlink to outside the content folder; skipped"),
    "outside-folder": (0, "symlink to outside the content folder; skipped"),
    "pipe.md": (0, "not a regular file (a FIFO, socket or device); skipped"),
    "bytes-too-large.md": (1, "file too large (more than 4,194,304 bytes)"),
}
GOOD = {"inside-link.md", "good-front-matter.md", "good-export.md"}


def hostile_folder(tmp_path: Path) -> Path:
    """The committed corpus plus the links, FIFO and oversized file made here; a secret outside it."""
    folder = tmp_path / "content"
    shutil.copytree(CORPUS, folder, ignore=shutil.ignore_patterns("expected.json"))
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.md").write_text("---\ntitle: Secret\ndate: 2026-03-05\ncategories: [Main]\n---\nPrivate.\n")
    os.symlink("link-to-itself.md", folder / "link-to-itself.md")
    os.symlink(".", folder / "loop")
    os.symlink("nowhere.md", folder / "dangling.md")
    os.symlink(outside / "secret.md", folder / "outside-secret.md")
    os.symlink(outside, folder / "outside-folder")
    os.symlink("good-export.md", folder / "inside-link.md")
    os.mkfifo(folder / "pipe.md")
    (folder / "bytes-too-large.md").write_bytes(b"## Big\n### Description\n" + b"word " * 900_000 + b"\n")
    return folder


def check_corpus(folder: Path, problems: dict[str, list[tuple[int, str]]], titles: set[str]) -> None:
    expected = {name: (e["line"], e["error"]) for name, e in EXPECTED.items() if e["error"]}
    expected.update(MADE)
    assert len(expected) + len(GOOD) >= 60
    for name, (line, error) in expected.items():
        found = problems.get(name, [])
        assert any(error in message and at == line for at, message in found), (name, line, error, found)
        assert all(len(message) < 400 for _, message in found), (name, "echoed a whole value")
    assert set(problems) == set(expected), "problems for files that have none expected, or missing"
    assert titles == {"T", "Good export"}  # the good ones, and the link to one inside the folder, are read
    assert "Secret" not in titles


def test_every_hostile_file_gives_its_error_and_the_good_ones_are_read(tmp_path):
    folder = hostile_folder(tmp_path)
    corpus = read_corpus(folder, OPTIONS)
    problems: dict[str, list[tuple[int, str]]] = {}
    for problem in corpus.problems:
        problems.setdefault(str(problem.path.relative_to(folder)), []).append((problem.line, problem.message))
    check_corpus(folder, problems, {a.title for a in corpus.articles})
    assert len(corpus.articles) == 3


def test_external_links_are_published_only_when_the_config_says_so(tmp_path):
    folder = hostile_folder(tmp_path)
    corpus = read_corpus(folder, OPTIONS, follow_external_links=True)
    assert "Secret" in {a.title for a in corpus.articles}
    assert not any("outside the content folder" in p.message for p in corpus.problems)


READ_UNDER_CAP = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (200 * 1024 * 1024, 200 * 1024 * 1024))
from pathlib import Path
from syndicate.content import ReaderOptions, read_corpus
folder = Path(sys.argv[1])
corpus = read_corpus(folder, ReaderOptions(timezone="America/New_York"), workers=1)
problems = {}
for p in corpus.problems:
    problems.setdefault(str(p.path.relative_to(folder)), []).append((p.line, p.message))
json.dump({"problems": problems, "titles": [a.title for a in corpus.articles],
           "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, sys.stdout)
"""


def test_the_whole_corpus_is_read_in_200_mb(tmp_path):
    folder = hostile_folder(tmp_path)
    result = subprocess.run([sys.executable, "-c", READ_UNDER_CAP, str(folder)], capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    problems = {name: [tuple(p) for p in found] for name, found in data["problems"].items()}
    check_corpus(folder, problems, set(data["titles"]))


def test_a_symlink_loop_does_not_stop_check_build_or_the_signup_page(tmp_path):
    from syndicate.config import settings_from_mapping
    from syndicate.site import build_site
    from syndicate.web.context import CategoryList  # what the signup page lists
    from syndicate.wiring import build_settings, content_source

    folder = tmp_path / "content"
    folder.mkdir()
    (folder / "a.md").write_text("---\ntitle: A\ndate: 2026-03-05\ncategories: [Main]\n---\nBody.\n")
    os.symlink(".", folder / "loop")
    os.symlink("self.md", folder / "self.md")
    settings = settings_from_mapping({"content": {"folder": str(folder), "cache": str(tmp_path / "cache" / "a.pickle")},
                                      "output": {"folder": str(tmp_path / "public")}})
    source = content_source(settings)
    report = build_site(build_settings(settings), source)
    assert report.articles == 1 and {p.message.split(";")[0] for p in report.problems} == {
        "symlink to a folder already read (a loop, or a second way to the same folder)", "symlink loop"}
    assert [c.slug for c in CategoryList(source, {}).get()] == ["main"]


@pytest.mark.parametrize("name", ["category-cr.md", "date-year-9999-west.md", "category-100k.md"])
def test_check_reports_the_article_and_exits_nonzero(tmp_path, name, capsys):
    from syndicate.cli import main

    folder = tmp_path / "content"
    folder.mkdir()
    shutil.copy(CORPUS / name, folder / name)
    config = tmp_path / "syndicate.toml"
    config.write_text(f'[content]\nfolder = "{folder}"\ncache = "{tmp_path / "cache.pickle"}"\n'
                      f'[site]\ntimezone = "America/New_York"\n[output]\nfolder = "{tmp_path / "public"}"\n')
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(config), "check"])
    err = capsys.readouterr()
    assert exit_.value.code != 0
    line = EXPECTED[name]["line"]
    assert f"{name}:{line}: " in err.out + err.err and EXPECTED[name]["error"] in err.out + err.err
