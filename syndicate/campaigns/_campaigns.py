"""The campaigns table and what is done with a campaign: create, preview, test, send (now or when due), list.

A campaign is sent as a run of the outbox whose deliveries have since_key "campaign:<id>": the
same sending loop, backend, rate limits, skip of anyone no longer active, retries and requeue as
digests; UNIQUE(subscriber, since_key, until) makes it once per subscriber however often it is
planned. Its messages carry the digests' headers and signed unsubscribe links (MessageBuilder).
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import parseaddr
from itertools import islice

from sqlalchemy import insert, select, update

from syndicate.config import MailSettings
from syndicate.content import render_markdown, unsafe_character
from syndicate.delivery import DeliveryService, RunReport
from syndicate.digest import EmailRenderer, LinkMaker, MessageBuilder, RenderedEmail
from syndicate.errors import UsageError
from syndicate.mail import MailBackend, OutgoingMessage, SendResult
from syndicate.storage import Database
from syndicate.storage.schema import campaigns
from syndicate.subscribers import AddressRules, Filter, Subscriber, SubscriberStatus, SubscriberStore

log = logging.getLogger(__name__)

MAX_SUBJECT = 200
MAX_BODY = 200_000
PLAN_BATCH = 1000
VARIANTS = ("letter", "announcement")  # a greeting then the body, or the subject as a heading


class CampaignError(UsageError):
    """A campaign that cannot be created or sent as asked."""


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"


@dataclass(frozen=True)
class NewCampaign:
    """A validated campaign not yet stored."""

    subject: str
    body: str  # Markdown
    categories: tuple[str, ...]  # () = every active subscriber
    variant: str = "letter"

    @classmethod
    def checked(cls, subject: str, body: str, categories: Iterable[str], valid: Iterable[str],
                variant: str = "letter") -> NewCampaign:
        subject = (subject or "").strip()
        if not subject:
            raise CampaignError("subject: is empty")
        if len(subject) > MAX_SUBJECT:
            raise CampaignError(f"subject: longer than {MAX_SUBJECT} characters")
        if any(ch in subject for ch in "\r\n"):
            raise CampaignError("subject: contains a line break")
        if bad := unsafe_character(subject):
            raise CampaignError(f"subject: contains a character no email can carry ({bad})")
        if not (body or "").strip():
            raise CampaignError("body: is empty")
        if len(body) > MAX_BODY:
            raise CampaignError(f"body: longer than {MAX_BODY} characters")
        if bad := unsafe_character(body):
            raise CampaignError(f"body: contains a character no email can carry ({bad})")
        slugs = tuple(sorted({c.strip() for c in categories if c.strip()}))
        known = set(valid)
        unknown = [c for c in slugs if c not in known]
        if unknown:
            raise CampaignError(f"categories: unknown {', '.join(unknown)} (valid: {', '.join(sorted(known)) or 'none'})")
        if variant not in VARIANTS:
            raise CampaignError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
        return cls(subject, body, slugs, variant)


@dataclass(frozen=True)
class Campaign:
    id: int
    subject: str
    body: str
    categories: tuple[str, ...]
    status: CampaignStatus
    created_at: datetime
    send_at: datetime | None
    run_id: int | None
    created_by: str
    variant: str = "letter"
    counts: dict[str, int] | None = None  # the outbox's counts of its deliveries, when asked for


def _campaign(row: object) -> Campaign:
    return Campaign(
        id=row.id, subject=row.subject, body=row.body, categories=tuple(json.loads(row.categories)),  # type: ignore[attr-defined]
        status=CampaignStatus(row.status), created_at=row.created_at, send_at=row.send_at,  # type: ignore[attr-defined]
        run_id=row.run_id, created_by=row.created_by, variant=row.variant,  # type: ignore[attr-defined]
    )


def _wanted(subscriber: Subscriber, categories: Sequence[str]) -> bool:
    """Of the campaign's audience: every category asked for, or one of them (a subscriber who chose
    no category follows every one)."""
    return not categories or not subscriber.categories or bool(set(categories) & set(subscriber.categories))


class Campaigns:
    """Every read and write of campaigns, and sending them through `delivery` (its outbox and backend)."""

    def __init__(self, mail: MailSettings, database: Database, store: SubscriberStore, delivery: DeliveryService,
                 *, renderer: EmailRenderer, builder: Callable[[LinkMaker, datetime], MessageBuilder],
                 placeholder_links: LinkMaker, backend: Callable[[], MailBackend],
                 addresses: AddressRules | None = None) -> None:
        """`builder(links, now)` makes a MessageBuilder (the digests' headers); `mail` is [mail] (sender, domain)."""
        self.mail = mail
        self.builder = builder
        self.addresses = addresses or AddressRules()
        self.database = database
        self.store = store
        self.delivery = delivery
        self.renderer = renderer
        self.placeholder_links = placeholder_links
        self.backend = backend

    # -- the table

    def create(self, new: NewCampaign, *, now: datetime, actor: str, send_at: datetime | None = None) -> Campaign:
        if send_at is not None and send_at.tzinfo is None:
            raise CampaignError("send_at: needs a UTC offset (e.g. 2026-12-24T09:00+01:00)")
        status = CampaignStatus.SCHEDULED if send_at is not None else CampaignStatus.DRAFT
        with self.database.write() as connection:
            campaign_id = connection.execute(insert(campaigns).values(
                subject=new.subject, body=new.body, categories=json.dumps(list(new.categories)), status=status.value,
                created_at=now, send_at=send_at, run_id=None, created_by=actor[:120], variant=new.variant,
            )).inserted_primary_key[0]  # type: ignore[index]
        log.info("campaign created id=%s status=%s actor=%s", campaign_id, status.value, actor)
        return self.get(int(campaign_id))

    def get(self, campaign_id: int, *, counts: bool = False) -> Campaign:
        with self.database.read() as connection:
            row = connection.execute(select(campaigns).where(campaigns.c.id == campaign_id)).first()
        if row is None:
            raise CampaignError(f"no campaign with id {campaign_id}")
        campaign = self._settled(_campaign(row))
        return replace(campaign, counts=self.delivery.outbox.campaign_counts(campaign_id)) if counts else campaign

    def recent(self, limit: int = 50) -> list[Campaign]:
        with self.database.read() as connection:
            rows = connection.execute(select(campaigns).order_by(campaigns.c.id.desc()).limit(limit)).all()
        return [replace(c, counts=self.delivery.outbox.campaign_counts(c.id)) for c in map(self._settled, map(_campaign, rows))]

    def _settled(self, campaign: Campaign) -> Campaign:
        """A campaign whose run was finished by someone else (the service resuming it after a restart,
        the retry job) is marked sent when next looked at."""
        if campaign.status is CampaignStatus.SENDING and campaign.run_id is not None:
            try:
                finished = self.delivery.report(campaign.run_id).status == "finished"
            except LookupError:  # the run was pruned: long finished
                finished = True
            if finished:
                with self.database.write() as connection:
                    connection.execute(update(campaigns).where(campaigns.c.id == campaign.id)
                                       .values(status=CampaignStatus.SENT.value))
                return replace(campaign, status=CampaignStatus.SENT)
        return campaign

    def schedule(self, campaign_id: int, send_at: datetime | None) -> Campaign:
        """Send at `send_at` (None: back to a draft); only a campaign not yet sent."""
        campaign = self.get(campaign_id)
        if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
            raise CampaignError(f"campaign {campaign_id} is {campaign.status.value}: it cannot be rescheduled")
        status = CampaignStatus.SCHEDULED if send_at is not None else CampaignStatus.DRAFT
        with self.database.write() as connection:
            connection.execute(update(campaigns).where(campaigns.c.id == campaign_id).values(status=status.value, send_at=send_at))
        return self.get(campaign_id)

    # -- what it looks like

    def audience(self, campaign: Campaign) -> Iterable[Subscriber]:
        """The active subscribers it is for, by id."""
        active = self.store.iter_plain(Filter(status=SubscriberStatus.ACTIVE))
        return (s for s in active if _wanted(s, campaign.categories))

    def audience_count(self, campaign: Campaign) -> int:
        return self.store.count_following(campaign.categories)

    def render(self, campaign: Campaign, subscriber: Subscriber, links: LinkMaker) -> RenderedEmail:
        return self.renderer.render_campaign(f"campaign:{campaign.id}", campaign.subject,
                                             render_markdown(campaign.body), campaign.body.strip(), subscriber, links,
                                             variant=campaign.variant)

    def preview(self, campaign_id: int, *, email: str | None = None) -> RenderedEmail:
        """What a subscriber (`email`, or a made-up one) would get, with placeholder links."""
        campaign = self.get(campaign_id)
        subscriber = self.store.get_by_email(email) if email else _sample(self.store)
        return self.render(campaign, subscriber, self.placeholder_links)

    def send_test(self, campaign_id: int, to: str, *, now: datetime) -> SendResult:
        """Mail one copy to `to` (placeholder links); changes no state."""
        address = self.addresses.parse(to, field="to").text
        campaign = self.get(campaign_id)
        subscriber = replace(_sample(self.store), email=address)
        builder = self.builder(self.placeholder_links, now)
        rendered = self.render(campaign, subscriber, self.placeholder_links)
        mid = f"<campaign-test.{campaign.id}.{int(now.timestamp())}@{self.mail.domain}>"
        data = builder.campaign_message(subscriber, rendered, mid)
        message = OutgoingMessage("test", parseaddr(self.mail.from_)[1], (address,), data, mid)
        result = next(iter(self.backend().send_messages([message])))
        log.info("campaign test copy id=%s outcome=%s", campaign.id, result.outcome)
        return result

    # -- sending

    def plan(self, campaign_id: int, *, now: datetime) -> RunReport:
        """Record the campaign's run and one delivery per active subscriber of its audience (never a
        second one for a subscriber who has it already). A campaign is planned once."""
        campaign = self.get(campaign_id)
        if campaign.run_id is not None:
            raise CampaignError(f"campaign {campaign_id} was already sent (run {campaign.run_id})",
                                hint="failed deliveries can be requeued: syndicate deliveries requeue --run N")
        outbox = self.delivery.outbox
        run_id = outbox.start_run("manual", {"campaign": campaign_id}, now)
        with self.database.write() as connection:  # claimed for this run: a second plan() is refused
            claimed = connection.execute(
                update(campaigns).where(campaigns.c.id == campaign_id, campaigns.c.run_id.is_(None))
                .values(run_id=run_id, status=CampaignStatus.SENDING.value)
            ).rowcount
        if not claimed:
            outbox.refresh(run_id, now)
            raise CampaignError(f"campaign {campaign_id} is being sent by another process")
        audience = iter(self.audience(campaign))
        while batch := list(islice(audience, PLAN_BATCH)):
            outbox.add_campaign_deliveries(run_id, campaign.id, campaign.created_at, [s.id for s in batch],
                                           self.mail.domain, now)
        report = outbox.refresh(run_id, now)
        log.info("campaign planned id=%s run=%s deliveries=%s", campaign_id, run_id, report.total)
        return report

    def finish(self, campaign_id: int) -> Campaign:
        """The campaign with its counts, marked sent if its run has nothing open any more."""
        return self.get(campaign_id, counts=True)

    def send(self, campaign_id: int, *, now: datetime, stop: object = None,
             progress: Callable[[RunReport], None] | None = None) -> Campaign:
        """plan() then work the run to its end (retries wait for the retry job, as digests' do)."""
        report = self.plan(campaign_id, now=now)
        self.delivery.work(report.run_id, stop=stop, progress=progress)  # type: ignore[arg-type]
        return self.finish(campaign_id)

    def due(self, now: datetime) -> list[int]:
        """Scheduled campaigns whose time has come."""
        c = campaigns.c
        with self.database.read() as connection:
            return list(connection.execute(
                select(c.id).where(c.status == CampaignStatus.SCHEDULED.value, c.send_at <= now, c.run_id.is_(None)).order_by(c.id)
            ).scalars())

    def send_due(self, now: datetime, stop: object = None) -> list[Campaign]:
        """Send every scheduled campaign that is due (the scheduler's job)."""
        sent = []
        for campaign_id in self.due(now):
            try:
                sent.append(self.send(campaign_id, now=now, stop=stop))
            except CampaignError as e:  # planned meanwhile by another process
                log.warning("scheduled campaign not sent id=%s: %s", campaign_id, e)
        return sent


def _sample(store: SubscriberStore) -> Subscriber:
    defaults = store.defaults
    return Subscriber(id=0, email="subscriber@example.org", name="Sam Sample", status=SubscriberStatus.ACTIVE,
                      categories=(), frequency=defaults.frequency, timezone=defaults.timezone, send_hour=defaults.send_hour)
