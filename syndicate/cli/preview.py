"""`syndicate preview`: the digest a subscriber would get now, as HTML, text or the exact .eml bytes."""

from __future__ import annotations

import sys
import tempfile
import webbrowser
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from syndicate.cli import AppContext, pass_app
from syndicate.config import Settings
from syndicate.digest import LinkMaker, select_digest
from syndicate.errors import MissingSecretError, UsageError
from syndicate.subscribers import Frequency, PlaceholderLinks, Subscriber, SubscriberStatus
from syndicate.wiring import Components, load_corpus, message_builder


def _parse_since(value: str | None, settings: Settings) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--since: expected an ISO 8601 date or datetime such as 2026-11-20T08:00, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(settings.site.timezone))
    return moment


def _categories(value: str, known: set[str]) -> tuple[str, ...]:
    slugs = tuple(dict.fromkeys(s.strip() for s in value.split(",") if s.strip()))
    unknown = [s for s in slugs if s not in known]
    if not slugs or unknown:
        raise UsageError(
            f"--categories: unknown category {', '.join(unknown) or '(none given)'}",
            hint=f"known categories: {', '.join(sorted(known))}",
        )
    return slugs


@click.command()
@click.option("--subscriber", "subscriber_email", default=None, help="Preview a stored subscriber's next digest.")
@click.option("--categories", default=None, help="Comma-separated category slugs, for a made-up subscriber.")
@click.option("--frequency", type=click.Choice(["daily", "weekly"]), default=None, help="Default: [digest] frequency.")
@click.option("--since", default=None, help="Only articles after this ISO 8601 time (default: one period ago).")
@click.option("--format", "fmt", type=click.Choice(["html", "text", "eml"]), default="html", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write here instead of stdout.")
@click.option("--open", "open_browser", is_flag=True, help="Show the HTML in a web browser.")
@pass_app
def preview(
    app: AppContext,
    subscriber_email: str | None,
    categories: str | None,
    frequency: str | None,
    since: str | None,
    fmt: str,
    output: Path | None,
    open_browser: bool,
) -> None:
    """Show exactly what a digest would contain now; changes no state.

    With --subscriber the digest is that stored subscriber's next one (their categories, frequency
    and high-water mark), with their real signed links; otherwise a made-up subscriber following
    --categories gets placeholder links."""
    if subscriber_email is None and categories is None:
        raise UsageError("preview needs --categories a,b (or --subscriber EMAIL)")
    settings = app.settings
    corpus = load_corpus(settings)
    now = datetime.now(UTC)
    components = Components(settings)
    links: LinkMaker = PlaceholderLinks(components.urls)
    if subscriber_email is not None:
        subscriber, links = _stored(components, subscriber_email, since, links)
    else:
        assert categories is not None
        subscriber = Subscriber(
            id=0,
            email=f"preview@{settings.mail.domain}",
            name="Preview",
            status=SubscriberStatus.ACTIVE,
            categories=_categories(categories, {c.slug for c in corpus.categories}),
            frequency=Frequency(frequency or settings.digest.frequency),
            timezone=settings.digest.timezone or settings.site.timezone,
            send_hour=settings.digest.send_hour,
            high_water=_parse_since(since, settings),
        )
    digest = select_digest(subscriber, corpus.articles, corpus.categories, now, settings.digest.max_articles)
    if digest is None:
        click.echo(f"nothing new in {', '.join(subscriber.categories)}: no digest would be sent", err=True)
        return
    renderer = components.renderer
    rendered = renderer.render_digest(digest, links, corpus.categories)
    if fmt == "eml":
        data = message_builder(settings, renderer, links, corpus.categories, now).digest_message(digest).data
    else:
        data = (rendered.html if fmt == "html" else rendered.text).encode("utf-8")
    if output is not None:
        output.write_bytes(data)
        click.echo(f"wrote {output} ({digest.count} articles, {len(data)} bytes)", err=True)
    elif not open_browser:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    if open_browser:
        _open(rendered.html, output if fmt == "html" else None)


def _stored(components: Components, email: str, since: str | None,
            placeholder: LinkMaker) -> tuple[Subscriber, LinkMaker]:
    """The stored subscriber (their --since, if given) and their signed links (placeholder ones,
    with a warning, when the signing secret is not set)."""
    try:
        subscriber = components.store.get_by_email(email)
    finally:
        components.close()
    if since is not None:
        subscriber = replace(subscriber, high_water=_parse_since(since, components.settings))
    try:
        return subscriber, components.links()
    except MissingSecretError as e:
        click.echo(f"warning: {e}; the preview shows placeholder links", err=True)
        return subscriber, placeholder


def _open(document: str, written: Path | None) -> None:
    if written is None:
        with tempfile.NamedTemporaryFile("w", suffix=".html", prefix="syndicate-preview-", delete=False, encoding="utf-8") as f:
            f.write(document)
            written = Path(f.name)
    if not webbrowser.open(written.resolve().as_uri()):
        click.echo(f"could not start a browser; the preview is in {written}", err=True)
