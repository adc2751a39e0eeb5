"""jsontext.laid_out: readable JSON (a key or a list item per line) written by the C encoder."""

from __future__ import annotations

import json

from reconciler import jsontext


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
