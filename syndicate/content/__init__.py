"""Content: reads the Markdown articles (export format or YAML front matter) into a Corpus of Articles."""

from syndicate.content._article import ReaderOptions, parse_article
from syndicate.content._load import category_rules, load_corpus, reader_options
from syndicate.content._markdown import render_markdown
from syndicate.content._model import Article, Category
from syndicate.content._reader import CacheWriter, CategoryRule, Corpus, CorpusMemory, gc_paused, read_corpus
from syndicate.content._text import make_xml_safe, plain_text, slugify

__all__ = [
    "Article", "CacheWriter", "Category", "CategoryRule", "Corpus", "CorpusMemory", "ReaderOptions",
    "category_rules", "gc_paused", "load_corpus", "make_xml_safe", "parse_article", "plain_text",
    "read_corpus", "reader_options", "render_markdown", "slugify",
]
