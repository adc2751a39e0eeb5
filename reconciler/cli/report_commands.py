"""``reconciler report access``: the access review, from the state and the dated plan."""

from __future__ import annotations

import datetime as dt
import sys

from reconciler.cli import commands
from reconciler.cli.choices import AccessFormat
from reconciler.cli.options import ReportAccessOptions
from reconciler.errors import EXIT_OK
from reconciler.plan import git, provenance, report
from reconciler.render import access


def report_access(options: ReportAccessOptions, *, now: dt.datetime) -> int:
    """Who holds which role as applied, what the YAML would change, in ``options.fmt``."""
    path = options.path
    store = commands.store_for(path, options.common)
    # git blame runs beside the parse, on another core; collected by commits.
    with git.blaming(path) as blames:
        made, recorded, desired = commands.make_plan(
            path,
            store,
            when=commands.today(options.at, now),
            allow_disables=None,
            cache=commands.parse_cache(path, options.common.cache, common=options.common),
        )
        made = commands.with_input_path(made, path)
        sources = [user.source for user in desired.users.values()]
        found = provenance.commits(sources, path, blames)
    built = report.build(desired, recorded, made, commits=found)
    if options.redact:
        built = report.redact(built, options.redact)
    match options.fmt:
        case AccessFormat.MARKDOWN:
            chunks = access.markdown_chunks(built)
        case AccessFormat.CSV:
            chunks = access.csv_chunks(built)
        case AccessFormat.JSON:
            chunks = access.json_chunks(built)
    # Bytes, in pieces: UTF-8 whatever the locale says (RFC 4180's CRLF and the CSV's BOM
    # as written), and 100k accounts never held as one string.
    sys.stdout.flush()
    for chunk in chunks:
        sys.stdout.buffer.write(chunk.encode("utf-8"))
    sys.stdout.buffer.flush()
    return EXIT_OK
