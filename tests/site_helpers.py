"""Helpers for the feed, page and build tests: a content folder in tmp_path and settings for it."""

from __future__ import annotations

import shutil
from pathlib import Path

from syndicate.config import Settings, settings_from_mapping

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CONTENT = REPO / "content"
BASE_URL = "https://news.example"


def make_settings(root: Path, content: Path, **sections: dict) -> Settings:
    """Settings whose content, var and output folders live under `root` (a tmp_path)."""
    data = {
        "site": {"base_url": BASE_URL, "title": "Test Times", "timezone": "Europe/Paris", "author": "The Desk",
                 "description": "Test news"},
        "content": {"folder": str(content), "cache": str(root / "var" / "cache" / "articles.pickle")},
        "output": {"folder": str(root / "public")},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return settings_from_mapping(data, path=root / "syndicate.toml")


def copy_sample(root: Path) -> Path:
    """A copy of the repository's sample articles under `root`."""
    return Path(shutil.copytree(SAMPLE_CONTENT, root / "content"))


def write_article(folder: Path, name: str, *, title: str, categories: list[str], date: str,
                  body: str = "Some text.", updated: str | None = None, extra: str = "") -> Path:
    """A front-matter article `folder/name.md`; `date` in ISO 8601."""
    path = folder / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    quoted = ", ".join('"' + c.replace('"', '\\"') + '"' for c in categories)
    escaped = title.replace("\\", "\\\\").replace('"', '\\"')
    lines = ["---", f'title: "{escaped}"', f"date: {date}", f"categories: [{quoted}]"]
    if updated:
        lines.append(f"updated: {updated}")
    if extra:
        lines.append(extra)
    path.write_text("\n".join(lines) + "\n---\n" + body + "\n", encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder`: relative path -> (bytes, mtime_ns)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*")) if p.is_file()
    }
