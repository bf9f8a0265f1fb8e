"""Site: the corpus in, every feed (RSS, Atom, JSON Feed, OPML) and page out, incrementally and atomically."""

from syndicate.site._build import BuildReport, BuildSettings, build_site, site_info
from syndicate.site._files import publish, write_atomic
from syndicate.site._pages import SitePages, compiled_templates, template_fingerprint, template_path
from syndicate.site._urls import FEED_SUFFIXES, SITE_FEED, SiteUrls, archive_period

__all__ = [
    "FEED_SUFFIXES", "SITE_FEED", "BuildReport", "BuildSettings", "SitePages", "SiteUrls", "archive_period", "build_site", "compiled_templates", "publish", "site_info",
    "template_fingerprint", "template_path", "write_atomic",
]
