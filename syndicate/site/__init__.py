"""Site: the corpus in, every feed (RSS, Atom, JSON Feed, OPML) and page out, incrementally and atomically."""

from syndicate.site._build import BuildReport, build_site
from syndicate.site._urls import FEED_SUFFIXES, SITE_FEED, SiteUrls

__all__ = ["FEED_SUFFIXES", "SITE_FEED", "BuildReport", "SiteUrls", "build_site"]
