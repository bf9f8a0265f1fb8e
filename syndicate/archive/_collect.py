"""Copies what the sent digests contained from the outbox into the archive tables, and reads it back.

The outbox's deliveries name subscribers and are pruned; the archive keeps only (frequency, period,
category, article) with the article's title and address, so the public pages carry no personal
data and outlive the pruning. Each collection looks at the deliveries sent since the last one
(with a day of overlap: the keys make a second copy a no-op), so its work is bounded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from syndicate.archive._issues import ArchiveIssue, ArchiveItem
from syndicate.content import Article
from syndicate.site import archive_period
from syndicate.storage import Database
from syndicate.storage.schema import archive_items, archive_state, deliveries, runs, subscribers

log = logging.getLogger(__name__)

OVERLAP = timedelta(days=1)
STATE = "deliveries"
BATCH = 5000


def _insert(dialect: str, rows: list[dict[str, object]]) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING (PostgreSQL reports no rowcount for it)."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(archive_items).values(rows).on_conflict_do_nothing().returning(archive_items.c.article_id)


def collect_sent(database: Database, articles: Mapping[str, Article], article_url: Callable[[Article], str],
                 zone: ZoneInfo, now: datetime) -> int:
    """Archive what the digests sent since the last collection showed; returns the new rows. An article
    no longer in `articles` (by id) is left out: its title is not known any more."""
    d, r, s = deliveries.c, runs.c, subscribers.c
    with database.write() as connection:
        last = connection.execute(select(archive_state.c.collected_until).where(archive_state.c.name == STATE)).scalar()
        query = (select(d.articles, d.sent_at, r.started_at, s.frequency)
                 .join(runs, r.id == d.run_id).join(subscribers, s.id == d.subscriber_id)
                 .where(d.status == "sent"))
        if last is not None:
            query = query.where(d.sent_at > last - OVERLAP)
        found: dict[tuple[str, str, str, str], dict[str, object]] = {}
        for row in connection.execute(query.execution_options(yield_per=BATCH)):
            period = archive_period(row.frequency, row.started_at, zone)
            for slug, ids, _hidden in json.loads(row.articles):
                for article_id in ids:
                    article = articles.get(article_id)
                    key = (row.frequency, period, slug, article_id)
                    if article is None or key in found and found[key]["first_sent_at"] <= row.sent_at:
                        continue
                    found[key] = {"frequency": row.frequency, "period": period, "category": slug, "article_id": article_id,
                                  "title": article.title, "url": article_url(article), "first_sent_at": row.sent_at}
        rows = list(found.values())
        added = 0
        for start in range(0, len(rows), 500):
            added += len(connection.execute(_insert(connection.dialect.name, rows[start:start + 500])).all())
        if last is None:
            connection.execute(archive_state.insert().values(name=STATE, collected_until=now))
        else:
            connection.execute(archive_state.update().where(archive_state.c.name == STATE).values(collected_until=now))
    if added:
        log.info("archive: %d articles of sent digests recorded", added)
    return added


def load_issues(database: Database, category_order: Mapping[str, int]) -> list[ArchiveIssue]:
    """Every archived issue, newest period first; sections in the site's category order."""
    a = archive_items.c
    grouped: dict[tuple[str, str], dict[str, list[ArchiveItem]]] = {}
    with database.read() as connection:
        for row in connection.execute(select(archive_items).order_by(a.first_sent_at, a.title)):
            sections = grouped.setdefault((row.frequency, row.period), {})
            sections.setdefault(row.category, []).append(ArchiveItem(row.article_id, row.title, row.url, row.first_sent_at))
    issues = [
        ArchiveIssue(frequency, period, tuple(
            (slug, tuple(items)) for slug, items in sorted(sections.items(), key=lambda kv: (category_order.get(kv[0], 1 << 30), kv[0]))
        ))
        for (frequency, period), sections in grouped.items()
    ]
    issues.sort(key=lambda issue: (issue.period, issue.frequency), reverse=True)
    return issues
