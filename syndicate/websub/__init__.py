"""WebSub publishing: telling the configured hubs which of our feeds changed after a build."""

from syndicate.websub._publish import Announcement, HubNotifier, changed_feed_urls, notify_hubs

__all__ = ["Announcement", "HubNotifier", "changed_feed_urls", "notify_hubs"]
