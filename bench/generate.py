"""Generates a corpus of N articles in the export format, for benchmarks.

About 5 KB of Markdown body each, 40 categories, 1 to 3 categories per article,
dates spread over the year before `--end`. Deterministic for a given seed.

    python bench/generate.py OUT_DIR --count 10000
"""

from __future__ import annotations

import argparse
import random
from datetime import date, timedelta
from pathlib import Path

WORDS = ["council", "river", "budget", "tram", "science", "market", "festival", "harbour", "drone", "battery", "reef", "grid", "chip", "export", "marathon", "museum", "sensor", "water", "energy", "policy", "vote", "city", "report", "analyst", "survey", "data", "school", "hospital", "bridge", "station", "coast", "forest", "rain", "summer", "winter", "league", "goal", "season", "film", "orchestra", "gallery", "painter", "novel", "theatre", "engine", "software", "network", "privacy", "court", "judge", "law"]
CATEGORY_STEMS = (
    "Local", "City Hall", "Transport & Roads", "Science", "Environment", "Technology", "Business",
    "Markets", "Culture", "Arts", "Sports", "Health", "Education", "Army-Wars", "Conflict Zones",
    "Military Tech.", "Weather", "Travel", "Food", "Opinion",
)


def categories(count: int = 40) -> list[str]:
    """`count` distinct category names in the styles real exports use."""
    names = []
    for i in range(count):
        a, b = CATEGORY_STEMS[i % len(CATEGORY_STEMS)], CATEGORY_STEMS[(i * 7 + 3) % len(CATEGORY_STEMS)]
        names.append(f"{a}-{b} {i:02d}")
    return names


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 18))]
    if rng.random() < 0.2:
        words[2] = f"**{words[2]}**"
    if rng.random() < 0.15:
        words[4] = f"[{words[4]}](#)"
    if rng.random() < 0.1:
        words[5] = f"\\${rng.randint(1, 900)}"
    return " ".join(words).capitalize() + "."


def article(rng: random.Random, index: int, names: list[str], day: date) -> str:
    paragraphs = []
    size = 0
    while size < 5000:
        paragraph = " ".join(_sentence(rng) for _ in range(rng.randint(3, 6)))
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    chosen = rng.sample(names, rng.randint(1, 3))
    listed = "\n".join(f"{n}. {name}" for n, name in enumerate(chosen, start=1))
    title = f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} {rng.choice(WORDS)} number {index}"
    body = "\n\n".join(paragraphs)
    return (
        f"\n## {title}\n\n### Description\n\n{body}\n\nby Author {index % 97}\n\n"
        f"### Category\n\n{listed}\n\n### Date Created\n\n{day:%m/%d/%Y}\n"
    )


def generate(folder: Path, count: int, *, category_count: int = 40, seed: int = 7, end: date = date(2026, 11, 25)) -> list[Path]:
    """Write `count` articles under `folder` (100 per sub-folder); returns their paths."""
    rng = random.Random(seed)
    names = categories(category_count)
    paths = []
    for i in range(count):
        path = Path(folder) / f"batch-{i // 100:03d}" / f"article-{i:05d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(article(rng, i, names, end - timedelta(days=rng.randint(0, 364))), encoding="utf-8")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    generate(args.folder, args.count, seed=args.seed)


if __name__ == "__main__":
    main()
