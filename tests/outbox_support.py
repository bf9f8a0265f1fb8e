"""Shared pieces of the outbox, delivery and send tests: a site with articles, subscribers, settings
pointing at a database URL and (optionally) a real test SMTP server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from syndicate.config import Settings
from syndicate.delivery._service import DeliveryService
from syndicate.storage._database import Database, create_database, upgrade
from syndicate.subscribers._model import Subscriber
from syndicate.subscribers._store import SubscriberDefaults, SubscriberStore, new_subscriber
from syndicate.wiring import content_source, delivery_config
from tests.site_helpers import make_settings, write_article

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
SECRET = {"SYNDICATE_SECRET": "test-secret-for-links-0123456789abcdef", "SYNDICATE_SMTP_PASSWORD": "pw"}
CATEGORIES = ("city", "science", "sport")


def write_site(root: Path, count: int = 6, *, now: datetime = NOW) -> Path:
    """`count` articles over three categories, one every two hours before `now`."""
    content = root / "content"
    for i in range(count):
        when = now - timedelta(hours=2 * (i + 1))
        write_article(content, f"a{i}", title=f"Story {i}", categories=[CATEGORIES[i % 3]], date=when.isoformat())
    return content


def settings_for(root: Path, database_url: str, *, port: int | None = None, **sections: dict) -> Settings:
    mail = {"backend": "smtp" if port else "memory", "from": "Test Times <digest@news.example>", "domain": "news.example"}
    extra: dict[str, dict] = {"database": {"url": database_url}, "mail": mail}
    if port:
        extra["smtp"] = {"host": "127.0.0.1", "port": port, "security": "none", "connections": 2, "timeout": 5,
                         "ehlo_name": "client.test"}
    for name, values in sections.items():
        extra[name] = {**extra.get(name, {}), **values}
    return make_settings(root, write_site(root) if not (root / "content").exists() else root / "content", **extra)


def add_subscribers(database: Database, count: int, *, categories=CATEGORIES, now: datetime = NOW,
                    start: int = 0) -> list[Subscriber]:
    store = SubscriberStore(database)
    news = [
        new_subscriber(f"reader{i}@example.org", categories=categories, valid_categories=CATEGORIES,
                       defaults=SubscriberDefaults(), name=f"Reader {i}")
        for i in range(start, start + count)
    ]
    store.import_batch(news, now=now - timedelta(days=30), confirmed=True)
    return [store.get_by_email(n.email) for n in news]


def open_db(url: str) -> Database:
    database = create_database(url)
    upgrade(database)
    return database


def service(settings: Settings, database: Database, backend=None) -> DeliveryService:
    factory = (lambda: backend) if backend is not None else None
    return DeliveryService(delivery_config(settings), database, content_source(settings), backend_factory=factory, environ=SECRET)
