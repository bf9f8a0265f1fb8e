"""`syndicate run`: the service (feeds over HTTP, subscriber pages, admin API, scheduler) until SIGTERM."""

from __future__ import annotations

import logging

import click

from syndicate.cli import AppContext, pass_app
from syndicate.cli._collector import collector_paused
from syndicate.service import Bound, Service, listen, with_bound_port
from syndicate.site import SITE_FEED
from syndicate.wiring import ServiceSecret, environ_with, service_secrets, site_urls


def _welcome(app: AppContext, bound: Bound, secrets: tuple[ServiceSecret, ...], build_line: str) -> list[str]:
    """What to open, where the mail lands, and the admin token when the demo generated it."""
    settings = app.settings
    urls = site_urls(settings, bound.base_url)
    formats = settings.feeds.formats
    lines = [
        build_line,
        f"syndicate is running on {bound.base_url}/",
        f"  feeds:   {urls.feed(SITE_FEED, formats[0])}"
        + (f" (also {', '.join(urls.feed_path(SITE_FEED, f).rsplit('/', 1)[1] for f in formats[1:])})" if formats[1:] else "")
        + ", and one per category",
        f"  OPML:    {urls.opml()}",
        f"  signup:  {urls.signup()}",
    ]
    if settings.mail.backend == "file":
        lines.append(f"  mail lands in {settings.mail.folder}/ (file backend: one .eml file per message)")
    else:
        lines.append(f"  mail goes out through the {settings.mail.backend} backend")
    if settings.site.base_url.rstrip("/") != bound.base_url:
        lines.append(f"  links in emails point at [site] base_url = {settings.site.base_url}")
    for secret in secrets:
        if secret.generated_file is None:
            continue
        if secret.variable == settings.http.admin_token_env:
            lines.append(f"  admin API: {bound.base_url}/api (OpenAPI document: {bound.base_url}/api/openapi.json) "
                         f"with the header  Authorization: Bearer {secret.value}")
            lines.append(f"  console: {bound.base_url}/admin/ (sign in with the admin token above)")
        lines.append(f"  {secret.what}: generated for this demo, kept in {secret.generated_file}")
    lines.append("Stop with Ctrl+C (or SIGTERM): the message in flight finishes, the rest stays queued.")
    return lines


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: [http] host).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default: [http] port; 0 picks a free one).")
@click.option("--no-scheduler", "no_scheduler", is_flag=True, help="Serve HTTP only; never take the scheduler lease.")
@pass_app
def run(app: AppContext, host: str | None, port: int | None, no_scheduler: bool) -> None:
    """Run the service: build the feeds, serve them and the subscriber pages, send digests on schedule."""
    app.quiet_level = "INFO"  # a service's log is its output
    configured = app.settings
    if logging.getLogger().level > logging.DEBUG:  # "Running job ..." twice a minute says nothing; misses stay WARNINGs
        logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
    # Bound first: a loopback base_url (the demo's) then follows --port into the pages and emails built.
    bound = listen(host or configured.http.host, configured.http.port if port is None else port)
    settings = with_bound_port(configured, bound)
    if settings is not configured:
        app.settings_override(settings)
    secrets = service_secrets(settings)
    service = Service(settings, environ=environ_with(secrets), scheduler=not no_scheduler,
                      around_build=collector_paused)
    service.handle_signals()
    try:
        report = service.open()
        build_line = (f"built {report.articles} articles in {report.categories} categories into {report.output}/"
                      + (f" ({len(report.problems)} problems, see the log)" if report.problems else ""))
        for line in _welcome(app, bound, secrets, build_line):
            click.echo(line)
        if not service.stopping.is_set():
            service.start_scheduler()
            service.start_watching()
            service.serve(bound)
    finally:
        service.close()
