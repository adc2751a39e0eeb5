"""jsontext.laid_out: readable JSON (a key or a list item per line) written by the C encoder."""

from __future__ import annotations

import json

from reconciler import jsontext
from reconciler.stores.model import Action


def test_the_text_reads_back_as_the_value_with_one_line_per_key_and_item() -> None:
    value = {
        "counters": {"applied": 2, "failed": 0},
        "applied": [{"account": "li.wei", "action": "CREATE"}, {"account": "ana", "action": "X"}],
        "empty": [],
        "none": {},
        "text": 'zoë\n"quoted"',
    }
    text = jsontext.laid_out(value)
    assert json.loads(text) == value
    lines = text.splitlines()
    assert '    {"account":"li.wei","action":"CREATE"},' in lines
    assert '    {"account":"ana","action":"X"}' in lines
    assert [line.split(":")[0].strip() for line in lines if line.startswith('  "')] == [
        '"counters"',
        '"applied"',
        '"empty"',
        '"none"',
        '"text"',
    ]
    assert "zoë" in text  # readable text stays as it is


def test_string_objects_are_laid_out_as_the_objects_themselves() -> None:
    """Objects made of strings, encoded once each from a template, print byte for byte as
    the dicts would: quotes, backslashes, control characters, non-ASCII, a lone surrogate,
    a percent sign, a str subclass (an enum member) and keys that need escaping alike."""
    keys = ("account", 'we"ird %s')
    rows = [
        ("li.wei", Action.CREATE),
        ('q"uote\\back', "100%s %d"),
        ("tab\there\nnew\x01line", "zoë ☃"),
        ("\ud800", ""),
    ]
    as_objects = [dict(zip(keys, row, strict=True)) for row in rows]
    for value in ({"applied": as_objects}, {"applied": as_objects[:1]}, {"applied": []}):
        lines = jsontext.string_objects(keys, (tuple(o.values()) for o in value["applied"]))
        assert jsontext.laid_out({"applied": lines}) == jsontext.laid_out(value)
