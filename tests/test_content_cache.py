"""The reader's cache: unchanged files are not parsed again; changes and removals are seen."""

import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from syndicate.content._article import ReaderOptions
from syndicate.content._reader import CorpusMemory, read_corpus

OPTIONS = ReaderOptions(timezone="UTC")
TEMPLATE = "---\ntitle: {title}\ndate: 2026-11-0{day}T10:00:00Z\ncategories: [News]\n---\nBody {title}.\n"


def corpus_dir(tmp_path: Path, count: int = 5) -> Path:
    folder = tmp_path / "content"
    folder.mkdir()
    for i in range(1, count + 1):
        (folder / f"a{i}.md").write_text(TEMPLATE.format(title=f"Article {i}", day=i))
    return folder


def test_warm_read_parses_nothing_and_gives_the_same_articles(tmp_path):
    folder = corpus_dir(tmp_path)
    cache = tmp_path / "var" / "cache" / "articles.pickle"
    cold = read_corpus(folder, OPTIONS, cache=cache)
    warm = read_corpus(folder, OPTIONS, cache=cache)
    assert cold.parsed == 5 and warm.parsed == 0
    assert warm.articles == cold.articles


def test_one_changed_file_is_parsed_again(tmp_path):
    folder = corpus_dir(tmp_path)
    cache = tmp_path / "cache.pickle"
    read_corpus(folder, OPTIONS, cache=cache)
    (folder / "a3.md").write_text(TEMPLATE.format(title="Edited three", day=3))
    corpus = read_corpus(folder, OPTIONS, cache=cache)
    assert corpus.parsed == 1
    assert "Edited three" in [a.title for a in corpus.articles]


def test_touched_but_identical_file_is_not_parsed(tmp_path):
    folder = corpus_dir(tmp_path)
    cache = tmp_path / "cache.pickle"
    read_corpus(folder, OPTIONS, cache=cache)
    stat = (folder / "a2.md").stat()
    os.utime(folder / "a2.md", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert read_corpus(folder, OPTIONS, cache=cache).parsed == 0


def test_removed_and_added_files(tmp_path):
    folder = corpus_dir(tmp_path)
    cache = tmp_path / "cache.pickle"
    read_corpus(folder, OPTIONS, cache=cache)
    (folder / "a1.md").unlink()
    (folder / "new.md").write_text(TEMPLATE.format(title="New", day=9))
    corpus = read_corpus(folder, OPTIONS, cache=cache)
    assert corpus.parsed == 1
    assert sorted(a.id for a in corpus.articles) == ["a2", "a3", "a4", "a5", "new"]


def test_a_bad_file_stays_reported_from_the_cache_until_fixed(tmp_path):
    folder = corpus_dir(tmp_path, 2)
    cache = tmp_path / "cache.pickle"
    (folder / "bad.md").write_text("---\ntitle: x\n---\n")
    first = read_corpus(folder, OPTIONS, cache=cache)
    second = read_corpus(folder, OPTIONS, cache=cache)
    assert [str(p) for p in second.problems] == [str(p) for p in first.problems] == [f"{folder}/bad.md:1: missing date in front matter"]
    (folder / "bad.md").write_text(TEMPLATE.format(title="Fixed", day=7))
    assert not read_corpus(folder, OPTIONS, cache=cache).problems


def test_changed_options_invalidate_the_cache(tmp_path):
    folder = corpus_dir(tmp_path, 2)
    cache = tmp_path / "cache.pickle"
    read_corpus(folder, OPTIONS, cache=cache)
    again = read_corpus(folder, ReaderOptions(timezone="UTC", default_author="Someone else"), cache=cache)
    assert again.parsed == 2 and {a.author for a in again.articles} == {"Someone else"}


def test_a_corrupt_cache_is_only_a_slower_read(tmp_path):
    folder = corpus_dir(tmp_path, 2)
    cache = tmp_path / "cache.pickle"
    cache.write_bytes(b"not a pickle")
    assert len(read_corpus(folder, OPTIONS, cache=cache).articles) == 2


def test_parallel_parse_gives_the_same_result(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(450):
        (folder / f"a{i:03d}.md").write_text(TEMPLATE.format(title=f"Article {i}", day=i % 9 + 1))
    (folder / "zz-bad.md").write_text("")
    parallel = read_corpus(folder, OPTIONS, workers=2)
    serial = read_corpus(folder, OPTIONS, workers=1)
    assert parallel.articles == serial.articles and len(parallel.articles) == 450
    assert [str(p) for p in parallel.problems] == [f"{folder}/zz-bad.md:1: empty file"]


def test_a_cache_written_by_other_parser_code_is_not_used(tmp_path, monkeypatch):
    from syndicate.content import _reader as reader

    folder = corpus_dir(tmp_path, 2)
    cache = tmp_path / "cache.pickle"
    real = reader._parser_fingerprint
    monkeypatch.setattr(reader, "_parser_fingerprint", lambda: "an older parser")  # as if written by older code
    assert read_corpus(folder, OPTIONS, cache=cache).parsed == 2
    assert read_corpus(folder, OPTIONS, cache=cache).parsed == 0
    monkeypatch.setattr(reader, "_parser_fingerprint", real)
    assert read_corpus(folder, OPTIONS, cache=cache).parsed == 2


def test_articles_restored_from_the_cache_are_the_parsed_ones(tmp_path):
    import pickle

    folder = corpus_dir(tmp_path, 9)
    cache = tmp_path / "cache.pickle"
    cold = read_corpus(folder, OPTIONS, cache=cache)
    warm = read_corpus(folder, OPTIONS, cache=cache)
    assert warm.parsed == 0
    assert [a.body_html for a in warm.articles] == [a.body_html for a in cold.articles]
    assert warm.articles == cold.articles
    again = pickle.loads(pickle.dumps(warm.articles[0]))  # process pools, the journal
    assert again == cold.articles[0]


def _damaged(cache: Path, old: bytes, new: bytes) -> None:
    """The cache file with `old` replaced by `new` (of the same length) where it first appears, its
    checksums as they were: as a damaged disk or a stray edit would leave it."""
    raw = cache.read_bytes()
    assert raw.count(old) >= 1 and len(old) == len(new)
    cache.write_bytes(raw.replace(old, new, 1))


def test_a_snapshot_index_changed_after_it_was_written_is_not_trusted(tmp_path, caplog):
    """Restored articles are not validated again (they were when they were made, by this same code):
    the cache trusts only the bytes it wrote. A changed byte in the index fails its checksum, and
    every article is read from its file again."""
    folder = corpus_dir(tmp_path, 3)
    cache = tmp_path / "cache.pickle"
    read_corpus(folder, OPTIONS, cache=cache)
    _damaged(cache, b"a1.md", b"a9.md")  # the first is in the index (its entry's path)
    warm = read_corpus(folder, OPTIONS, cache=cache)
    assert warm.parsed == 3
    assert sorted(a.title for a in warm.articles) == ["Article 1", "Article 2", "Article 3"]
    assert "checksum mismatch" in caplog.text


def test_a_stored_article_changed_after_it_was_written_is_read_from_its_file_again(tmp_path, caplog):
    """An article stored in the snapshot is checked when it is first made: one whose bytes changed
    (here its title, to one with a character XML cannot carry) is read from its file instead."""
    folder = corpus_dir(tmp_path, 3)
    cache = tmp_path / "cache.pickle"
    read_corpus(folder, OPTIONS, cache=cache)
    _damaged(cache, b"Article 2", b"Article\x0b2")  # in the articles region (the index holds no title)
    warm = read_corpus(folder, OPTIONS, cache=cache)
    assert warm.parsed == 0 and "damaged" not in caplog.text  # nothing made yet
    assert sorted(a.title for a in warm.articles) == ["Article 1", "Article 2", "Article 3"]
    assert "a2.md is damaged" in caplog.text


def test_a_read_with_nothing_to_render_makes_no_article(tmp_path):
    """Read from the cache, a corpus tells its articles (refs) without unpickling any: a build with
    nothing to render never pays for the text of every article."""
    from syndicate.content import _reader as reader

    folder = corpus_dir(tmp_path, 5)
    cache = tmp_path / "cache.pickle"
    cold = read_corpus(folder, OPTIONS, cache=cache)
    made = []
    real = reader._Blobs._load
    try:
        reader._Blobs._load = lambda self, rel, blob: made.append(rel) or real(self, rel, blob)
        warm = read_corpus(folder, OPTIONS, cache=cache)
        assert warm.refs == cold.refs and warm.parsed == 0 and made == []
        assert warm.articles_of(warm.refs[:2]) == cold.articles[:2] and len(made) == 2
        assert warm.articles == cold.articles and len(made) == 5  # each made once
    finally:
        reader._Blobs._load = real


def test_a_truncated_snapshot_is_only_a_slower_read(tmp_path, caplog):
    folder = corpus_dir(tmp_path, 3)
    cache = tmp_path / "cache.pickle"
    read_corpus(folder, OPTIONS, cache=cache)
    cache.write_bytes(cache.read_bytes()[:-100])
    warm = read_corpus(folder, OPTIONS, cache=cache)
    assert warm.parsed == 3 and len(warm.articles) == 3
    assert "truncated" in caplog.text


def test_an_article_restored_from_the_cache_equals_the_parsed_one_field_by_field(tmp_path):
    """What the snapshot restores without the constructor is the value the constructor made."""
    import dataclasses

    folder = corpus_dir(tmp_path, 4)
    cache = tmp_path / "cache.pickle"
    cold = read_corpus(folder, OPTIONS, cache=cache)
    warm = read_corpus(folder, OPTIONS, cache=cache)
    assert warm.parsed == 0
    for restored, parsed in zip(warm.articles, cold.articles, strict=True):
        assert type(restored) is type(parsed)
        assert vars(restored) == vars(parsed)
        assert dataclasses.astuple(restored) == dataclasses.astuple(parsed)


def memoryless(folder: Path, tmp_path: Path):
    return read_corpus(folder, OPTIONS, cache=tmp_path / "fresh" / "cache.pickle")


def test_a_memory_sees_every_edit_addition_and_removal_as_a_fresh_read_does(tmp_path):
    folder = corpus_dir(tmp_path)
    cache, memory = tmp_path / "cache.pickle", CorpusMemory()
    assert read_corpus(folder, OPTIONS, cache=cache, memory=memory).parsed == 5
    steps = [  # (a change, the files it makes the read parse)
        (lambda: (folder / "a3.md").write_text(TEMPLATE.format(title="Edited three", day=3)), 1),
        (lambda: (folder / "new.md").write_text(TEMPLATE.format(title="New", day=9)), 1),
        (lambda: (folder / "a1.md").unlink(), 0),
        (lambda: (folder / "bad.md").write_text("no front matter, no title\n"), 1),
        (lambda: (folder / "a4.md").write_text(TEMPLATE.format(title="Article 4", day=4).replace("[News]", "[News, Sport]")), 1),
        (lambda: (folder / "z.md").write_text(TEMPLATE.format(title="Shouting", day=1).replace("[News]", "[NEWS]")), 1),
        # an edit that changes none of id, slug, date, categories: put in place, shown as "News"
        (lambda: (folder / "z.md").write_text(TEMPLATE.format(title="Quieter", day=1).replace("[News]", "[NEWS]")), 1),
        (lambda: (folder / "a5.md").write_text(TEMPLATE.format(title="Five, later", day=8)), 1),  # moves
    ]
    for step, parsed in steps:
        step()
        remembered = read_corpus(folder, OPTIONS, cache=cache, memory=memory)
        fresh = memoryless(folder, tmp_path)
        assert remembered.parsed == parsed
        assert remembered.articles == fresh.articles
        assert remembered.categories == fresh.categories
        assert remembered.problems == fresh.problems
    assert [a.title for a in remembered.articles] == ["New", "Five, later", "Article 4", "Edited three", "Article 2", "Quieter"]
    assert remembered.articles[-1].categories[0].name == "News"


def test_reads_through_the_cache_give_what_a_read_without_one_gives(tmp_path):
    # The snapshot keeps the assembled corpus; later reads patch it with the journal's and their
    # own changes, or assemble again when a change moves, renames or recategorises an article.
    # (With 40 files the journal takes up to 4 changes before a new snapshot.)
    folder = corpus_dir(tmp_path)
    for i in range(40 - 5):
        (folder / f"old{i:02d}.md").write_text(TEMPLATE.format(title=f"Old {i}", day=1).replace("2026-11-0", "2025-10-0"))
    cache = tmp_path / "cache.pickle"
    read_corpus(folder, OPTIONS, cache=cache)
    changes = [
        lambda: (folder / "a3.md").write_text(TEMPLATE.format(title="Edited three", day=3)),
        lambda: (folder / "a2.md").write_text(TEMPLATE.format(title="Edited two", day=2)),
        lambda: (folder / "z.md").write_text(TEMPLATE.format(title="Shouting", day=1).replace("[News]", "[NEWS]")),
        lambda: (folder / "z.md").write_text(TEMPLATE.format(title="Quieter", day=1).replace("[News]", "[NEWS]")),
        lambda: (folder / "a5.md").write_text(TEMPLATE.format(title="Five, later", day=8)),
        lambda: (folder / "a1.md").unlink(),
        lambda: (folder / "a4.md").write_text(TEMPLATE.format(title="Four", day=4).replace("[News]", "[News, Sport]")),
    ]
    for change in changes:
        change()
        cached, fresh = read_corpus(folder, OPTIONS, cache=cache), read_corpus(folder, OPTIONS)
        assert (cached.articles, cached.categories, cached.problems) == (fresh.articles, fresh.categories, fresh.problems)
        assert [a.body_html for a in cached.articles] == [a.body_html for a in fresh.articles]
    assert [a.title for a in cached.articles][:5] == ["Five, later", "Four", "Edited three", "Edited two", "Quieter"]


def test_a_memory_with_nothing_changed_gives_back_the_same_corpus(tmp_path):
    folder = corpus_dir(tmp_path)
    cache, memory = tmp_path / "cache.pickle", CorpusMemory()
    first = read_corpus(folder, OPTIONS, cache=cache, memory=memory)
    again = read_corpus(folder, OPTIONS, cache=cache, memory=memory)
    assert again.parsed == 0 and again.articles is first.articles


def test_a_cache_written_by_another_process_is_loaded_instead_of_the_memory(tmp_path):
    folder = corpus_dir(tmp_path)
    cache, memory = tmp_path / "cache.pickle", CorpusMemory()
    read_corpus(folder, OPTIONS, cache=cache, memory=memory)
    (folder / "a2.md").write_text(TEMPLATE.format(title="Edited elsewhere", day=2))
    assert read_corpus(folder, OPTIONS, cache=cache).parsed == 1  # e.g. `syndicate build` beside the service
    remembered = read_corpus(folder, OPTIONS, cache=cache, memory=memory)
    assert remembered.parsed == 0  # the other process's parse, from the cache it wrote
    assert "Edited elsewhere" in [a.title for a in remembered.articles]


@pytest.mark.parametrize("every", [False, True], ids=["pickled", "every-article"])
def test_a_parallel_read_with_a_cache_gives_the_corpus_a_serial_read_gives_and_stores_it(tmp_path, every):
    # Above the threshold for parallel parsing: the workers pickle each article for the snapshot and
    # the corpus is assembled from their refs, its Articles made when asked for; or, for a caller
    # that makes every Article (`every`: a build with pages), they hand back the Articles.
    folder = tmp_path / "many"
    folder.mkdir()
    names = ["News", "Sport", "news", "Arts"]  # "news": the same slug as "News", another name
    for i in range(450):
        text = TEMPLATE.format(title=f"Article {i}", day=i % 9 + 1).replace("[News]", f"[{names[i % 4]}, {names[(i + 1) % 4]}]")
        (folder / f"a{i:03d}.md").write_text(text)
    for rel in ("a100.md", "a101.md"):  # the same slug: the second is skipped
        (folder / rel).write_text((folder / rel).read_text().replace("---\nBody", "slug: twice\n---\nBody"))
    (folder / "zz-bad.md").write_text("")
    serial = read_corpus(folder, OPTIONS, workers=1)
    cache = tmp_path / "cache.pickle"
    parallel = read_corpus(folder, OPTIONS, cache=cache, workers=2, every=every)
    assert parallel.parsed == 451
    assert parallel.refs == serial.refs and parallel.categories == serial.categories
    assert parallel.articles == serial.articles and len(parallel.articles) == 449
    assert parallel.problems == serial.problems and len(serial.problems) == 3  # the empty file, the slug twice
    assert parallel.warnings == serial.warnings and serial.warnings
    warm = read_corpus(folder, OPTIONS, cache=cache)
    assert warm.parsed == 0 and warm.refs == serial.refs and warm.articles == serial.articles
    memory = CorpusMemory()  # the service's reads: the memory keeps the workers' batches
    other = tmp_path / "other.pickle"
    first = read_corpus(folder, OPTIONS, cache=other, workers=2, memory=memory, every=every)
    assert first.articles == serial.articles
    (folder / "a007.md").write_text(TEMPLATE.format(title="Edited seven", day=7 % 9 + 1).replace("[News]", "[Arts, News]"))
    edited = read_corpus(folder, OPTIONS, cache=other, memory=memory)
    assert edited.parsed == 1 and "Edited seven" in [a.title for a in edited.articles]
    again = read_corpus(folder, OPTIONS, cache=other)  # from the files the memory's reads wrote
    assert again.parsed == 0 and again.articles == edited.articles


def test_every_kind_of_moment_comes_back_from_the_cache_with_its_own_zone(tmp_path):
    """Each kind of moment an article can hold (UTC, a fixed offset, the configured zone, YAML's own)
    comes back from the snapshot equal, with the same offset, zone name, fold and zone type."""
    folder = tmp_path / "content"
    folder.mkdir()
    dates = {
        "utc": "2026-11-01T10:00:00Z",
        "offset": "2026-11-01T10:00:00.123456+05:30",
        "local": "2026-10-25 02:30:00",  # Europe/Paris, the hour that happens twice
        "yaml": "2026-11-02 08:15:00 -03:00",
    }
    for name, date in dates.items():
        (folder / f"{name}.md").write_text(f"---\ntitle: {name}\ndate: {date}\nupdated: 2026-11-03T10:00:00-07:00\n"
                                           f"categories: [News, Café]\n---\nBody.\n")
    options = ReaderOptions(timezone="Europe/Paris")
    cache = tmp_path / "cache.pickle"
    cold = read_corpus(folder, options, cache=cache)
    warm = read_corpus(folder, options, cache=cache)
    assert warm.parsed == 0 and len(warm.articles) == len(dates)
    for restored, parsed in zip(warm.articles, cold.articles, strict=True):
        for field in ("published", "updated"):
            mine, theirs = getattr(restored, field), getattr(parsed, field)
            assert (mine, mine.utcoffset(), mine.tzname(), mine.fold, type(mine.tzinfo)) == (
                theirs, theirs.utcoffset(), theirs.tzname(), theirs.fold, type(theirs.tzinfo))
        assert restored.categories == parsed.categories
    local = next(a for a in warm.articles if a.title == "local")
    assert local.published.tzinfo is ZoneInfo("Europe/Paris")
    assert {a.published.utcoffset().total_seconds() for a in warm.articles} >= {0, 5.5 * 3600, -3 * 3600}
    assert warm.articles[0].categories[0] is warm.articles[1].categories[0]  # one object per category
