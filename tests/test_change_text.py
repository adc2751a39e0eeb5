"""A change's canonical text built from pieces (``change_text``) against the encoded document.

The built text is what the saved plan holds and what ``changes_digest`` hashes: it must be,
byte for byte, the canonical JSON of ``planfile._reviewed_json(change)``, and each source
the encoding of ``planfile._source``. Whatever the builder does not build is left to the
document encoder, never guessed.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import pytest

from reconciler.desired.commit import Commit
from reconciler.desired.model import Source
from reconciler.plan import change_text, planfile
from reconciler.plan.model import (
    Action,
    Change,
    Expired,
    Field,
    FieldChange,
    Guard,
    Plan,
    Reason,
)
from reconciler.stores.model import AccountRecord
from reconciler.values import replace

GOLDEN = Path(__file__).parent / "golden"
# Quotes, backslashes, control characters, non-ASCII and a character beyond the BMP.
STRINGS = ("plain", 'qu"ote\\back', "tab\tnew\nline\x00\x1f", "Zoë Ünal", "emoji \U0001f600")
ROLES = ((), ("1672380646005741601",), ("1672380646005741603", "1672380646005741609"))
SOURCES = (
    None,
    Source(file="team.yaml", line=3),
    Source(file='dir/t\u00e9am "x".yaml', line=0),
    Source(file="team.yaml", line=12, commit=Commit(hash="4f1c2ab", author="Zoë", date="d")),
    Source(file="team.yaml", line=13, commit=Commit()),
)


def _record(text: str, roles: tuple[str, ...], *, enabled: bool = True) -> AccountRecord:
    """A record whose name and email are made of ``text``."""
    return AccountRecord(
        account="acct",
        name=f"N {text}",
        email=f"{text}@example.com",
        role_ids=roles,
        enabled=enabled,
        last_task_id="t-1",
    )


def _changes() -> list[Change]:
    """Every action and reason with every combination of fields, roles and before."""
    found = []
    fields_choices: tuple[tuple[FieldChange, ...], ...] = (
        (),
        (FieldChange(field=Field.EMAIL, before="a@x", after="b\u00e9@x"),),
        (FieldChange(field=Field.NAME, before='o"ld', after="new\\"),),
        (
            FieldChange(field=Field.NAME, before="a", after="b"),
            FieldChange(field=Field.EMAIL, before="c", after="d"),
        ),
    )
    combinations = itertools.product(
        Action, Reason, STRINGS, ROLES, ROLES, fields_choices, (True, False)
    )
    for index, (action, reason, text, added, removed, fields, has_before) in enumerate(
        combinations
    ):
        if action is Action.DISABLE and fields:
            continue
        after = _record(text, added, enabled=action is not Action.DISABLE)
        found.append(
            Change(
                action=action,
                account=f"acct.{text}",
                reason=reason,
                before=_record(text[::-1], removed) if has_before else None,
                after=after,
                fields=fields,
                roles_added=added,
                roles_removed=removed,
                source=SOURCES[index % len(SOURCES)],
            )
        )
    return found


def _reference(change: Change) -> str:
    """The change's document encoded with sorted keys: what a reader hashes."""
    return planfile._canonical(planfile._reviewed_json(change))


def test_every_built_change_is_its_documents_canonical_text() -> None:
    """Every action, reason, field set, role list, record and awkward string: the built
    text is the canonical JSON of the change's document."""
    changes = _changes()
    texts = change_text.Texts(planfile._canonical_presorted)
    for change in changes:
        assert texts.change(change) == _reference(change), change


@pytest.mark.parametrize("source", SOURCES)
def test_a_built_source_is_the_encoded_source(source: Source | None) -> None:
    """Sources without a commit, with one and uncommitted: the text ``_source`` encodes to,
    the second time too (the pieces then come from the plan's caches)."""
    texts = change_text.Texts(planfile._canonical_presorted)
    wanted = planfile._canonical_presorted(planfile._source(source))
    assert texts.source(source, planfile._commit_json) == wanted
    assert texts.source(source, planfile._commit_json) == wanted


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.glob("plan-*.json")))
def test_golden_changes_are_built_or_left_to_the_encoder(name: str) -> None:
    """Every change of the golden plans: built as its document's canonical text, or (an end
    date carried out, an adopted record) left to the document encoder."""
    plan = planfile.loads((GOLDEN / name).read_text(encoding="utf-8"), where=name)
    texts = change_text.Texts(planfile._canonical_presorted)
    for change in plan.changes:
        adopted = any(r is not None and r.adopted for r in (change.before, change.after))
        if change.expired or adopted:
            with pytest.raises(change_text.Unusual):
                texts.change(change)
        else:
            assert texts.change(change) == _reference(change), change.account


def _base() -> Change:
    return Change(
        action=Action.MODIFY,
        account="li.wei",
        reason=Reason.CHANGED,
        before=_record("old", ("1",)),
        after=_record("new", ("1",)),
        fields=(FieldChange(field=Field.EMAIL, before="old@example.com", after="new@x"),),
        source=Source(file="t.yaml", line=4),
    )


def _odd(change: Change) -> dict[str, Any]:
    """Changes the builder must not build, by what makes them odd."""
    record = change.after
    return {
        "expired": replace(change, expired=(Expired(role_id="1", on=dt.date(2027, 1, 1)),)),
        "adopted before": replace(change, before=replace(record, adopted=True)),
        "adopted after": replace(change, after=replace(record, adopted=True)),
        "enabled 1": replace(change, after=replace(record, enabled=1)),  # type: ignore[arg-type]
        "number name": replace(change, after=replace(record, name=7)),  # type: ignore[arg-type]
        "field twice": replace(change, fields=change.fields * 2),
        "number field": replace(
            change, fields=(FieldChange(field=Field.NAME, before=None, after=3),)
        ),
        "disable with fields": replace(change, action=Action.DISABLE),
        "number role id": replace(change, roles_added=(1,)),  # type: ignore[arg-type]
    }


@pytest.mark.parametrize("kind", sorted(_odd(_base())))
def test_odd_changes_are_left_to_the_document_encoder(kind: str) -> None:
    """A change of a shape the planner does not make is not built (Unusual or TypeError),
    and the plan's line and digest are still its document's."""
    change = _odd(_base())[kind]
    texts = change_text.Texts(planfile._canonical_presorted)
    if kind == "number role id":  # built: a list of numbers encodes as the encoder does
        assert texts.change(change) == _reference(change)
    else:
        with pytest.raises((change_text.Unusual, TypeError)):
            texts.change(change)
    _assert_encoded_as_documents((change, _base()))


def test_role_ids_equal_to_other_types_do_not_share_a_text() -> None:
    """``(1,)`` and ``(True,)`` are equal keys: only string ids are kept, so neither reuses
    the other's text."""
    texts = change_text.Texts(planfile._canonical_presorted)
    assert texts.ids((1,)) == "[1]"  # type: ignore[arg-type]
    assert texts.ids((True,)) == "[true]"  # type: ignore[arg-type]
    assert texts.ids(("1",)) == '["1"]'
    assert texts.ids(("1",)) == '["1"]'


def test_commits_equal_to_others_of_another_type_do_not_share_a_text() -> None:
    """A commit whose date is 1 and one whose date is True are equal keys: only commits of
    strings are kept, so neither reuses the other's text."""
    texts = change_text.Texts(planfile._canonical_presorted)
    one = Source(file="t.yaml", line=3, commit=Commit(hash="abc", author="A", date=1))  # type: ignore[arg-type]
    true = Source(file="t.yaml", line=3, commit=Commit(hash="abc", author="A", date=True))  # type: ignore[arg-type]
    assert '"date":1' in texts.source(one, planfile._commit_json)
    assert '"date":true' in texts.source(true, planfile._commit_json)


def test_a_odd_source_line_is_left_to_the_document_encoder() -> None:
    """A line that is not an int is not built."""
    texts = change_text.Texts(planfile._canonical_presorted)
    with pytest.raises(change_text.Unusual):
        texts.source(Source(file="t.yaml", line=True), planfile._commit_json)
    odd = replace(_base(), source=Source(file="t.yaml", line=True))
    _assert_encoded_as_documents((odd,))


def _assert_encoded_as_documents(changes: tuple[Change, ...]) -> None:
    """``planfile.encode`` gives each change's document as its line, and the reader's digest."""
    plan = Plan(
        lineage=None,
        serial=0,
        input_digest="sha256:0",
        changes=changes,
        batches=(),
        roles={},
        managed=0,
        guard=Guard(disables=0, limit=0, rule=""),
    )
    encoded = planfile.encode(plan)
    canonical = planfile._canonical_presorted
    lines = []
    for change in changes:  # the line as the file has it: source, why, then the rest
        front = '{"source":' + canonical(planfile._source(change.source))
        if change.expired:
            front += ',"why":' + canonical(list(plan.why(change)))
        lines.append(front + "," + _reference(change)[1:])
    assert list(encoded.lines) == lines
    assert encoded.digest == planfile.digest(planfile.change_json(c, plan) for c in changes)


def test_a_plan_of_every_kind_of_change_encodes_as_its_documents() -> None:
    """``encode`` over all the generated changes: lines and digest as the documents give."""
    _assert_encoded_as_documents(tuple(_changes()[::7]))
