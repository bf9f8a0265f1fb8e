"""docs/configuration.md documents every configuration key, is up to date, and its examples are valid."""

from __future__ import annotations

import re
import tomllib

from syndicate import docs
from syndicate.config import settings_from_mapping


def test_every_configuration_key_has_a_description():
    assert docs.undocumented() == [], "describe these keys with Field(description=...) or in syndicate/docs.py"


def test_the_committed_reference_is_the_generated_one():
    assert docs.OUTPUT.read_text(encoding="utf-8") == docs.render(), "run: python -m syndicate.docs"


def test_every_key_appears_with_its_default_and_in_an_example():
    text = docs.OUTPUT.read_text(encoding="utf-8")
    examples = [tomllib.loads(block) for block in re.findall(r"```toml\n(.*?)```", text, re.S)]
    merged: dict = {}
    for example in examples:
        for section, values in example.items():
            merged.setdefault(section, {}).update(values)
    for key in docs.config_keys():
        assert f"| `{key.key}` |" in text.split(f"## [{key.section}]")[1].split("\n## ")[0], key.name
        if key.example is not None:
            named = docs.NAMED_TABLES.get(key.section)
            table = merged[key.section][named] if named else merged[key.section]
            assert key.key in table, f"{key.name} has no example"
    settings_from_mapping(merged)  # the examples together form a valid configuration
