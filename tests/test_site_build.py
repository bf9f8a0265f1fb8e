"""`syndicate build`: stable, atomic and incremental output, and the command's report and exit code."""

from __future__ import annotations

import logging
import multiprocessing
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from syndicate.site._build import PARALLEL_FROM, build_site
from syndicate.site._files import write_atomic
from syndicate.wiring import build_settings, content_source
from tests.site_helpers import REPO, copy_sample, make_settings, snapshot, write_article

FEEDS = (".rss.xml", ".atom.xml", ".json")


def build_configured(settings, **options):
    """build_site over the configured content folder."""
    return build_site(build_settings(settings), content_source(settings), **options)


def run_cli(settings, *args: str) -> tuple[int, str]:
    """Run `syndicate --config FILE build ARGS` in a real subprocess; (exit code, stdout)."""
    config = settings.path
    config.write_text(textwrap.dedent(f"""\
        [site]
        base_url = "{settings.site.base_url}"
        title = "{settings.site.title}"
        [content]
        folder = "{settings.content.folder}"
        cache = "{settings.content.cache}"
        [output]
        folder = "{settings.output.folder}"
        [logging]
        level = "WARNING"
    """))
    done = subprocess.run([sys.executable, "-m", "syndicate", "--config", str(config), "build", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout


def newsroom(root: Path) -> Path:
    """Five articles over three categories; `b` is in two of them."""
    content = root / "content"
    write_article(content, "a", title="Alpha", categories=["Sport"], date="2024-05-01T09:00:00Z")
    write_article(content, "b", title="Bravo", categories=["Sport", "Science"], date="2024-05-02T09:00:00Z")
    write_article(content, "c", title="Charlie", categories=["Science"], date="2024-05-03T09:00:00Z")
    write_article(content, "d", title="Delta", categories=["Culture"], date="2024-05-04T09:00:00Z")
    write_article(content, "e", title="Echo", categories=["Culture"], date="2024-05-05T09:00:00Z")
    return content


def test_a_rebuild_with_nothing_changed_writes_nothing(tmp_path):
    settings = make_settings(tmp_path, copy_sample(tmp_path))
    first = build_site(build_settings(settings), content_source(settings), workers=1)
    before = snapshot(first.output)
    assert len(first.written) == len(before) and first.unchanged == 0
    time.sleep(0.01)
    again = build_site(build_settings(settings), content_source(settings), workers=1)
    assert again.written == () and again.removed == () and again.unchanged == len(before)
    assert snapshot(first.output) == before  # same bytes, same modification times


def test_a_rebuild_without_the_manifest_still_leaves_identical_files_untouched(tmp_path):
    settings = make_settings(tmp_path, copy_sample(tmp_path))
    first = build_site(build_settings(settings), content_source(settings), workers=1)
    before = snapshot(first.output)
    for manifest in (settings.var_folder / "build").glob("manifest-*"):
        manifest.unlink()
    again = build_site(build_settings(settings), content_source(settings), workers=1)
    assert again.written == () and snapshot(first.output) == before


def test_an_edit_rewrites_only_the_feeds_and_pages_the_article_appears_in(tmp_path):
    content = newsroom(tmp_path)
    settings = make_settings(tmp_path, content)
    first = build_site(build_settings(settings), content_source(settings), workers=1)
    before = snapshot(first.output)
    write_article(content, "b", title="Bravo, corrected", categories=["Sport", "Science"], date="2024-05-02T09:00:00Z")
    report = build_site(build_settings(settings), content_source(settings), workers=1)
    expected = {f"feeds/{slug}{suffix}" for slug in ("all", "sport", "science") for suffix in FEEDS}
    expected |= {"index.html", "articles/b/index.html", "categories/sport/index.html", "categories/science/index.html"}
    assert set(report.written) == expected
    after = snapshot(first.output)
    changed = {path for path in after if after[path] != before.get(path)}
    assert changed == expected
    assert "Bravo, corrected" in (first.output / "feeds/sport.atom.xml").read_text()
    assert "Bravo, corrected" not in (first.output / "feeds/culture.atom.xml").read_text()


def test_a_category_retitled_in_the_config_is_renamed_everywhere_and_other_files_keep_their_mtimes(tmp_path):
    content = newsroom(tmp_path)
    first = build_configured(make_settings(tmp_path, content), workers=1)
    before = snapshot(first.output)
    report = build_configured(make_settings(tmp_path, content, categories={"sport": {"title": "Sports desk"}}), workers=1)
    assert ">Sports desk</a>" in (first.output / "articles/b/index.html").read_text()
    assert "Sports desk" in (first.output / "feeds/all.atom.xml").read_text()
    assert {"articles/a/index.html", "articles/b/index.html", "feeds/sport.atom.xml"} <= set(report.written)
    after = snapshot(first.output)
    assert ">Sports desk</a>" in (first.output / "categories/science/index.html").read_text()  # the navigation
    for untouched in ("feeds/culture.atom.xml", "feeds/culture.rss.xml", "feeds/culture.json"):
        assert after[untouched] == before[untouched]  # same bytes, same mtime: not rewritten


def test_a_file_changed_by_hand_is_put_right_on_the_next_build(tmp_path):
    settings = make_settings(tmp_path, newsroom(tmp_path))
    report = build_site(build_settings(settings), content_source(settings), workers=1)
    feed = report.feeds_folder / "sport.rss.xml"
    good = feed.read_bytes()
    feed.write_bytes(b"broken")
    assert build_site(build_settings(settings), content_source(settings), workers=1).written == ("feeds/sport.rss.xml",)
    assert feed.read_bytes() == good


def test_files_of_removed_categories_and_articles_are_removed(tmp_path):
    content = newsroom(tmp_path)
    settings = make_settings(tmp_path, content)
    output = build_site(build_settings(settings), content_source(settings), workers=1).output
    (output / "notes.txt").write_text("mine")  # not ours: stays
    (content / "d.md").unlink()
    (content / "e.md").unlink()
    report = build_site(build_settings(settings), content_source(settings), workers=1)
    gone = {f"feeds/culture{suffix}" for suffix in FEEDS} | {
        "categories/culture/index.html", "articles/d/index.html", "articles/e/index.html"}
    assert set(report.removed) == gone
    assert not any((output / path).exists() for path in gone)
    assert not (output / "categories" / "culture").exists() and not (output / "articles" / "d").exists()
    assert (output / "notes.txt").read_text() == "mine"
    assert "culture" not in (output / "feeds" / "index.opml").read_text()


@pytest.mark.parametrize("manifest", ["kept", "lost"])
def test_files_a_build_no_longer_makes_are_removed_with_or_without_the_manifest(tmp_path, manifest):
    content = newsroom(tmp_path)
    settings = make_settings(tmp_path, content)
    output = build_site(build_settings(settings), content_source(settings), workers=1).output
    if manifest == "lost":  # then the build lists the output folders to find what builds make
        for path in (settings.var_folder / "build").glob("manifest-*"):
            path.unlink()
    (content / "a.md").unlink()
    (output / "articles" / "zulu").mkdir()
    (output / "articles" / "zulu" / "index.html").write_text("left by an older build")
    report = build_site(build_settings(settings), content_source(settings), workers=1)
    expected = {"articles/a/index.html"} | ({"articles/zulu/index.html"} if manifest == "lost" else set())
    assert set(report.removed) == expected
    assert not (output / "articles" / "a").exists()
    assert (output / "articles" / "zulu").exists() == (manifest == "kept")  # not in the manifest: not the last build's


def test_a_bad_article_is_reported_and_skipped_and_the_good_feeds_are_still_written(tmp_path):
    content = newsroom(tmp_path)
    (content / "broken.md").write_text("---\ntitle: Broken\n---\nno date\n")
    code, out = run_cli(make_settings(tmp_path, content))
    assert code == 1
    assert f"{content / 'broken.md'}:" in out and "date" in out
    assert "5 articles, 3 categories" in out and "1 problems" in out
    assert (tmp_path / "public" / "feeds" / "sport.atom.xml").is_file()


def test_the_build_command_prints_a_summary_and_exits_0(tmp_path):
    settings = make_settings(tmp_path, newsroom(tmp_path))
    code, out = run_cli(settings, "--output", str(tmp_path / "site"))
    assert code == 0, out
    assert "5 articles, 3 categories: 28 files written, 0 unchanged, 0 removed, 0 problems" in out
    assert f"feeds in {tmp_path / 'site' / 'feeds'}" in out
    code, out = run_cli(settings, "--output", str(tmp_path / "site"))
    assert code == 0 and "0 files written, 28 unchanged" in out


def test_a_category_with_a_reserved_slug_is_a_clear_error_and_the_rest_is_built(tmp_path):
    content = newsroom(tmp_path)
    write_article(content, "f", title="Foxtrot", categories=["All"], date="2024-05-06T09:00:00Z")
    report = build_configured(make_settings(tmp_path, content), workers=1)
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert problem.path == content / "f.md" and "'all'" in problem.message and "reserved" in problem.message
    assert "Foxtrot" in (report.feeds_folder / "all.rss.xml").read_text()  # in the site feed, once
    assert (report.feeds_folder / "all.rss.xml").read_text().count("Foxtrot") == 1
    assert not (report.output / "categories" / "all").exists()


def test_files_are_written_atomically_world_readable_and_left_alone_when_identical(tmp_path):
    target = tmp_path / "deep" / "feed.xml"
    assert write_atomic(target, b"one") is True
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    mtime = target.stat().st_mtime_ns
    time.sleep(0.01)
    assert write_atomic(target, b"one") is False and target.stat().st_mtime_ns == mtime
    assert write_atomic(target, b"two") is True and target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["feed.xml"]  # no temporary left behind


READER = textwrap.dedent("""\
    import json, sys, time
    from pathlib import Path
    from xml.etree import ElementTree
    folder, stop = Path(sys.argv[1]), Path(sys.argv[2])
    reads = 0
    while not stop.exists():
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            try:
                json.loads(data) if path.suffix == ".json" else ElementTree.fromstring(data)
            except Exception as e:
                print(f"PARTIAL {path.name} {len(data)} bytes: {e}", flush=True)
                sys.exit(1)
            reads += 1
    print(f"OK {reads}", flush=True)
""")


def test_a_reader_polling_the_feeds_during_rebuilds_never_sees_a_partial_file(tmp_path):
    content = tmp_path / "content"
    body = "\n\n".join(f"Paragraph {i} " + "words and more words " * 40 for i in range(12))
    for n in range(30):
        write_article(content, f"a{n}", title=f"Story {n}", categories=["News", "World"],
                      date=f"2024-05-{n % 28 + 1:02d}T09:00:00Z", body=body)
    settings = make_settings(tmp_path, content)
    report = build_site(build_settings(settings), content_source(settings), workers=1)
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(report.feeds_folder), str(stop)],
                              stdout=subprocess.PIPE, text=True)
    try:
        rewritten = 0
        for round_ in range(8):
            for n in range(0, 30, 3):
                write_article(content, f"a{n}", title=f"Story {n} take {round_}", categories=["News", "World"],
                              date=f"2024-05-{n % 28 + 1:02d}T09:00:00Z", body=body * (1 + round_ % 2))
            rewritten += len(build_site(build_settings(settings), content_source(settings), workers=1).written)
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    assert reader.returncode == 0, out
    assert out.startswith("OK") and int(out.split()[1]) > 0
    assert rewritten >= 8 * 9  # every round really replaced the feeds under the reader


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method")
def test_a_parallel_build_writes_the_same_files_as_a_serial_one(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="syndicate.site._build")
    if threading.active_count() > 1:
        pytest.skip("this pytest process runs threads, so the build stays serial; nothing to compare")
    content = tmp_path / "content"
    for n in range(PARALLEL_FROM):
        write_article(content, f"p{n}", title=f"Piece {n}", categories=[f"Topic {n % 7}"],
                      date=f"2024-0{n % 9 + 1}-{n % 28 + 1:02d}T09:00:00Z")
    serial = build_configured(make_settings(tmp_path / "one", content), workers=1)
    parallel = build_configured(make_settings(tmp_path / "two", content), workers=2)
    assert len(parallel.written) == len(serial.written) > PARALLEL_FROM
    one = {path: data for path, (data, _) in snapshot(serial.output).items()}
    two = {path: data for path, (data, _) in snapshot(parallel.output).items()}
    assert one == two
    assert "in 2 processes" in caplog.text


def test_a_missing_content_folder_builds_nothing_and_removes_nothing(tmp_path):
    settings = make_settings(tmp_path, newsroom(tmp_path))
    before = snapshot(build_site(build_settings(settings), content_source(settings), workers=1).output)
    report = build_site(build_settings(settings), content_source(settings), content=tmp_path / "typo", workers=1)
    assert [p.message for p in report.problems] == ["content folder not found; nothing built, nothing removed"]
    assert report.written == () and report.removed == ()
    assert snapshot(tmp_path / "public") == before


def test_with_pages_turned_off_only_the_feeds_are_written_and_old_pages_removed(tmp_path):
    content = newsroom(tmp_path)
    build_configured(make_settings(tmp_path, content), workers=1)
    report = build_configured(make_settings(tmp_path, content, output={"pages": False}), workers=1)
    files = {str(p.relative_to(report.output)) for p in report.output.rglob("*") if p.is_file()}
    assert files == {f"feeds/{slug}{suffix}" for slug in ("all", "sport", "science", "culture") for suffix in FEEDS} | {
        "feeds/index.opml", "feeds/index.rss.opml", "feeds/index.atom.opml", "feeds/index.json.opml"}
    assert "index.html" in report.removed and "articles/a/index.html" in report.removed


CACHE_CHECK = """
import os, sys, threading
from pathlib import Path
from syndicate.site._build import build_site
from syndicate.config import load_settings
from syndicate.wiring import build_settings, content_source, load_corpus
settings = load_settings(Path(sys.argv[1]))
idle = threading.Event()
helper = threading.Thread(target=idle.wait)
if sys.argv[2] == "threads":
    helper.start()  # a second thread: forking is unsafe, so the build writes the cache itself
assert build_site(build_settings(settings), content_source(settings), workers=1).ok
idle.set()
try:
    os.waitpid(-1, os.WNOHANG)
    left = "a child process left behind"
except ChildProcessError:
    left = "no child process left"
print(left, load_corpus(settings).parsed)
"""


@pytest.mark.parametrize("threads", ["none", "threads"], ids=["written by a forked process", "written at once (threads running)"])
def test_the_article_cache_is_complete_and_its_writer_gone_when_the_build_returns(tmp_path, threads):
    settings = make_settings(tmp_path, newsroom(tmp_path))
    run_cli(settings)  # writes the config file (and builds once)
    for path in settings.content.cache.parent.glob("*"):
        path.unlink()  # so the build below writes the whole cache again
    done = subprocess.run([sys.executable, "-c", CACHE_CHECK, str(settings.path), threads],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["no", "child", "process", "left", "0"]  # reaped, and nothing to parse again
