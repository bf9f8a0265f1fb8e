"""Other sites' feeds as sources of articles: fetching, parsing, storing and publishing their items."""

from syndicate.content import snapshot_path
from syndicate.sources._fetch import Fetched, FetchPolicy, HostGate, fetch_feed
from syndicate.sources._parse import FeedError, ParsedFeed, RemoteItem, parse_feed
from syndicate.sources._sources import FetchReport, Sources, SourceStatus, check_url, to_article
from syndicate.sources._store import FeedState, SourceStore, StoredItem

__all__ = [
    "FeedError", "FeedState", "FetchPolicy", "FetchReport", "Fetched", "HostGate", "ParsedFeed", "RemoteItem",
    "SourceStatus", "SourceStore", "Sources", "StoredItem", "check_url", "fetch_feed", "parse_feed", "snapshot_path", "to_article",
]
