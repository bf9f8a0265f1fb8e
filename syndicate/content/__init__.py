"""Content: reads the Markdown articles (export format or YAML front matter) into a Corpus of Articles."""

from syndicate.content._article import ReaderOptions, legacy_slug, parse_article
from syndicate.content._external import SnapshotReader, mix_external, read_snapshot, snapshot_path, write_snapshot
from syndicate.content._markdown import render_markdown, sanitize_html
from syndicate.content._model import Article, ArticleRef, Category, article_ref
from syndicate.content._parallel import Forked, WorkerDied, can_fork, event_on_signals, run_parallel, shared_event
from syndicate.content._reader import CacheWriter, CategoryRule, Corpus, CorpusMemory, read_corpus
from syndicate.content._source import ContentSource
from syndicate.content._text import make_xml_safe, plain_text, slugify, unsafe_character, xml_safe

__all__ = [
    "Article", "ArticleRef", "CacheWriter", "Category", "CategoryRule", "ContentSource", "Corpus", "CorpusMemory", "Forked",
    "ReaderOptions", "WorkerDied", "article_ref", "can_fork", "event_on_signals", "legacy_slug", "make_xml_safe",
    "parse_article", "plain_text",
    "read_corpus", "render_markdown", "run_parallel", "shared_event", "slugify", "unsafe_character", "xml_safe",
    # issue 15
    "SnapshotReader", "mix_external", "read_snapshot", "sanitize_html", "snapshot_path", "write_snapshot",
]
