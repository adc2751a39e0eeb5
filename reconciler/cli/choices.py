"""The closed sets of choices the command line offers (formats, shells).

Apart from ``options`` so that building the parser (and ``--help``) needs only these, not
the frozen values the parsed command becomes.
"""

from __future__ import annotations

import enum


class ValidateFormat(enum.StrEnum):
    """How ``validate`` reports problems."""

    TEXT = "text"
    JSON = "json"
    GITHUB = "github"
    SARIF = "sarif"


class PlanFormat(enum.StrEnum):
    """How ``plan`` and ``show`` render a plan."""

    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


class ReportFormat(enum.StrEnum):
    """How ``apply`` and ``refresh`` report."""

    TEXT = "text"
    JSON = "json"


class AccessFormat(enum.StrEnum):
    """How ``report access`` writes the access review."""

    MARKDOWN = "markdown"
    CSV = "csv"
    JSON = "json"


class Shell(enum.StrEnum):
    """Shells ``completion`` writes a script for."""

    BASH = "bash"
    ZSH = "zsh"
    FISH = "fish"
