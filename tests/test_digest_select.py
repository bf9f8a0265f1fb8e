"""What goes into a digest: dedup, windows, nothing new, future articles, the cap, time zones."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from syndicate.digest._select import Timeline, first_digest_start, select_digest
from syndicate.subscribers._model import Frequency
from tests.digest_support import SAMPLE_NOW, article, category, hours, sample_corpus, sample_settings, subscriber

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
BUSINESS, MAIN, SPORTS, TECH = category("business"), category("main"), category("sports"), category("technology")
SITE_ORDER = (BUSINESS, MAIN, SPORTS, TECH)
SETTINGS = sample_settings()


def shown(digest):
    return [(s.category.slug, [a.id for a in s.articles], s.hidden) for s in digest.sections]


def test_an_article_in_several_followed_categories_appears_once_under_the_first_in_site_order():
    both = article("chips", NOW - hours(2), TECH, BUSINESS)  # written tech-first; the site order puts business first
    other = article("derby", NOW - hours(3), SPORTS, TECH)
    reader = subscriber(("technology", "business", "sports"), high_water=NOW - hours(10))
    digest = select_digest(reader, [both, other], SITE_ORDER, NOW, SETTINGS.digest.max_articles)
    assert shown(digest) == [("business", ["chips"], 0), ("sports", ["derby"], 0)]
    assert digest.count == 2


def test_categories_the_subscriber_does_not_follow_never_show():
    reader = subscriber(("sports",), high_water=NOW - hours(10))
    digest = select_digest(reader, [article("a", NOW - hours(1), MAIN, SPORTS), article("b", NOW - hours(1), TECH)], SITE_ORDER, NOW, SETTINGS.digest.max_articles)
    assert shown(digest) == [("sports", ["a"], 0)]


def test_newest_first_within_a_category():
    items = [article(f"m{i}", NOW - hours(i), MAIN) for i in (1, 3, 5)]
    digest = select_digest(subscriber(("main",), high_water=NOW - hours(24)), items, SITE_ORDER, NOW, SETTINGS.digest.max_articles)
    assert shown(digest) == [("main", ["m1", "m3", "m5"], 0)]


def test_first_daily_digest_covers_only_the_last_day():
    items = [article("fresh", NOW - hours(23), MAIN), article("old", NOW - hours(25), MAIN), article("ancient", NOW - timedelta(days=300), MAIN)]
    digest = select_digest(subscriber(("main",), frequency=Frequency.DAILY), items, SITE_ORDER, NOW, SETTINGS.digest.max_articles)
    assert shown(digest) == [("main", ["fresh"], 0)]
    assert digest.since == NOW - hours(24)


def test_first_weekly_digest_covers_the_last_seven_days():
    items = [article("six-days", NOW - timedelta(days=6), MAIN), article("eight-days", NOW - timedelta(days=8), MAIN)]
    digest = select_digest(subscriber(("main",), frequency=Frequency.WEEKLY), items, SITE_ORDER, NOW, SETTINGS.digest.max_articles)
    assert shown(digest) == [("main", ["six-days"], 0)]


def test_nothing_new_gives_no_digest_and_the_high_water_mark_is_what_the_next_one_starts_from():
    items = [article("seen", NOW - hours(5), MAIN)]
    reader = subscriber(("main",), high_water=NOW - hours(5))
    assert select_digest(reader, items, SITE_ORDER, NOW, SETTINGS.digest.max_articles) is None
    # a newer article later is picked up from that same mark
    later = NOW + hours(3)
    digest = select_digest(reader, [article("new", NOW + hours(1), MAIN), *items], SITE_ORDER, later, SETTINGS.digest.max_articles)
    assert shown(digest) == [("main", ["new"], 0)]
    assert digest.since == NOW - hours(5)


def test_until_is_the_newest_included_article_time():
    items = [article("b", NOW - hours(1), SPORTS), article("a", NOW - hours(2), MAIN)]
    digest = select_digest(subscriber(("main", "sports"), high_water=NOW - hours(9)), items, SITE_ORDER, NOW, SETTINGS.digest.max_articles)
    assert digest.until == NOW - hours(1)


def test_an_article_dated_in_the_future_waits_until_its_time():
    future = article("tomorrow", NOW + hours(20), MAIN)
    reader = subscriber(("main",), high_water=NOW - hours(1))
    assert select_digest(reader, [future], SITE_ORDER, NOW, SETTINGS.digest.max_articles) is None
    digest = select_digest(reader, [future], SITE_ORDER, NOW + hours(20), SETTINGS.digest.max_articles)
    assert shown(digest) == [("main", ["tomorrow"], 0)]


def test_the_cap_shows_the_newest_and_counts_the_rest_per_category():
    settings = sample_settings(digest={"max_articles": 3})
    items = [article(f"s{i}", NOW - hours(i), SPORTS) for i in (1, 4, 6)] + [article(f"m{i}", NOW - hours(i), MAIN) for i in (2, 3, 5)]
    items.sort(key=lambda a: a.published, reverse=True)
    digest = select_digest(subscriber(("main", "sports"), high_water=NOW - hours(10)), items, SITE_ORDER, NOW, settings.digest.max_articles)
    assert shown(digest) == [("main", ["m2", "m3"], 1), ("sports", ["s1"], 2)]
    assert (digest.count, digest.hidden) == (3, 3)
    assert digest.until == NOW - hours(1)


def test_a_category_whose_articles_are_all_beyond_the_cap_still_says_how_many_more():
    settings = sample_settings(digest={"max_articles": 1})
    items = [article("m1", NOW - hours(1), MAIN), article("t1", NOW - hours(2), TECH)]
    digest = select_digest(subscriber(("main", "technology"), high_water=NOW - hours(10)), items, SITE_ORDER, NOW, settings.digest.max_articles)
    assert shown(digest) == [("main", ["m1"], 0), ("technology", [], 1)]


def test_the_high_water_mark_itself_is_excluded_and_instants_compare_across_time_zones():
    mark = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)
    same_instant = article("at-mark", datetime(2026, 11, 26, 13, 30, tzinfo=timezone(timedelta(hours=14))), MAIN)
    just_after = article("after", datetime(2026, 11, 26, 0, 30, 1, tzinfo=ZoneInfo("Europe/Paris")), MAIN)
    reader = subscriber(("main",), high_water=mark, timezone="Pacific/Kiritimati")
    digest = select_digest(reader, [just_after, same_instant], SITE_ORDER, NOW, SETTINGS.digest.max_articles)
    assert shown(digest) == [("main", ["after"], 0)]


def test_a_first_weekly_window_is_a_week_on_the_subscribers_own_clock_across_a_dst_change():
    # Europe/Paris left summer time on 2026-10-25: "a week ago at 08:00" was 169 hours earlier.
    now = datetime(2026, 10, 29, 8, 0, tzinfo=ZoneInfo("Europe/Paris"))
    reader = subscriber(("main",), frequency=Frequency.WEEKLY, timezone="Europe/Paris")
    start = first_digest_start(reader, now)
    assert now.astimezone(UTC) - start == hours(169)
    now_utc = now.astimezone(UTC)
    inside = article("inside", now_utc - hours(168.5), MAIN)  # more than 168 hours ago, still in the week
    outside = article("outside", now_utc - hours(169.5), MAIN)
    digest = select_digest(reader, [inside, outside], SITE_ORDER, now_utc, SETTINGS.digest.max_articles)
    assert shown(digest) == [("main", ["inside"], 0)]
    # In UTC (no DST) the same window is exactly 168 hours.
    assert now.astimezone(UTC) - first_digest_start(replace(reader, timezone="UTC"), now) == hours(168)


def test_subscribers_who_get_the_same_articles_share_a_variant_key():
    items = [article("a", NOW - hours(1), MAIN), article("b", NOW - hours(2), SPORTS)]
    one = select_digest(subscriber(("main", "sports"), high_water=NOW - hours(5)), items, SITE_ORDER, NOW, SETTINGS.digest.max_articles)
    two = select_digest(subscriber(("main", "sports", "technology"), id=7, high_water=NOW - hours(9)), items, SITE_ORDER, NOW, SETTINGS.digest.max_articles)
    three = select_digest(subscriber(("main",), high_water=NOW - hours(5)), items, SITE_ORDER, NOW, SETTINGS.digest.max_articles)
    assert one.variant_key == two.variant_key
    assert three.variant_key != one.variant_key


def test_naive_now_is_refused():
    import pytest

    with pytest.raises(ValueError, match="timezone-aware"):
        select_digest(subscriber(("main",)), [], SITE_ORDER, datetime(2026, 1, 1), SETTINGS.digest.max_articles)


def test_articles_out_of_order_are_refused_rather_than_silently_missed():
    import pytest

    items = [article("older", NOW - hours(5), MAIN), article("newer", NOW - hours(1), MAIN)]
    with pytest.raises(ValueError, match="newest first"):
        select_digest(subscriber(("main",), high_water=NOW - hours(9)), items, SITE_ORDER, NOW, SETTINGS.digest.max_articles)


def test_a_timeline_made_once_selects_exactly_what_the_plain_list_does():
    import random

    from syndicate.digest._select import Timeline

    rng = random.Random(5)
    cats = SITE_ORDER
    items = sorted(
        (article(f"a{i}", NOW - hours(rng.uniform(-30, 24 * 10)), *rng.sample(cats, rng.randint(1, 3))) for i in range(300)),
        key=lambda a: a.published,
        reverse=True,
    )
    timeline = Timeline.of(items)
    for i in range(200):
        reader = subscriber(
            tuple(c.slug for c in rng.sample(cats, rng.randint(1, 4))),
            id=i,
            frequency=rng.choice([Frequency.DAILY, Frequency.WEEKLY]),
            high_water=rng.choice([None, NOW - hours(rng.uniform(0, 200))]),
        )
        assert select_digest(reader, timeline, SITE_ORDER, NOW, SETTINGS.digest.max_articles) == select_digest(reader, items, SITE_ORDER, NOW, SETTINGS.digest.max_articles)
    import pytest

    with pytest.raises(ValueError, match="newest first"):
        Timeline.of(list(reversed(items)))


def test_a_subscriber_with_no_category_chosen_follows_every_category():
    items = [article("a", NOW - hours(1), MAIN), article("b", NOW - hours(2), TECH)]
    digest = select_digest(subscriber((), high_water=NOW - hours(10)), items, SITE_ORDER, NOW, SETTINGS.digest.max_articles)
    assert shown(digest) == [("main", ["a"], 0), ("technology", ["b"], 0)]


def test_a_selector_remembering_shared_choices_gives_every_subscriber_exactly_their_own_digest():
    import random

    from syndicate.digest._select import MEMO_SIZE, Selector, Timeline

    rng = random.Random(9)
    items = sorted(
        (article(f"a{i}", NOW - hours(rng.uniform(-30, 24 * 10)), *rng.sample(SITE_ORDER, rng.randint(1, 3))) for i in range(200)),
        key=lambda a: a.published,
        reverse=True,
    )
    timeline = Timeline.of(items)
    selector = Selector(items, SITE_ORDER, NOW, SETTINGS.digest.max_articles)
    shared_marks = [None, NOW - hours(24), NOW - hours(7 * 24)]  # a fifth of the subscribers share one of these
    for i in range(MEMO_SIZE + 600):  # more distinct choices than it remembers: some are forgotten and made again
        reader = subscriber(
            tuple(sorted(c.slug for c in rng.sample(SITE_ORDER, rng.randint(0, 2)))),
            id=i,
            email=f"r{i}@example.org",
            frequency=rng.choice([Frequency.DAILY, Frequency.WEEKLY]),
            high_water=rng.choice(shared_marks) if rng.random() < 0.2 else NOW - hours(rng.uniform(0, 200)),
        )
        digest = selector.select(reader)
        assert digest == select_digest(reader, timeline, SITE_ORDER, NOW, SETTINGS.digest.max_articles)
        assert digest is None or digest.subscriber is reader


def test_a_timeline_of_the_corpus_chooses_what_one_of_its_articles_chooses_and_makes_only_the_shown_articles():
    settings = sample_settings()
    every = sample_corpus(settings).articles
    lazy_corpus = sample_corpus(settings)
    made = []
    article_of = lazy_corpus.article
    lazy_corpus.__dict__["article"] = lambda ref: made.append(ref.id) or article_of(ref)  # counts what it makes
    lazy = Timeline.of_corpus(lazy_corpus)
    whole = Timeline.of(every)
    slugs = [c.slug for c in lazy_corpus.categories]
    readers = [subscriber((slug,), high_water=SAMPLE_NOW - hours(h)) for slug in slugs for h in (6, 30)]
    for reader in readers:
        a = select_digest(reader, lazy, lazy_corpus.categories, SAMPLE_NOW, 30)
        b = select_digest(reader, whole, lazy_corpus.categories, SAMPLE_NOW, 30)
        assert (a and shown(a)) == (b and shown(b))
    shown_ids = {a.id for reader in readers if (d := select_digest(reader, whole, lazy_corpus.categories, SAMPLE_NOW, 30))
                 for a in d.articles}
    assert shown_ids and set(made) == shown_ids
    assert len(every) > len(shown_ids)
