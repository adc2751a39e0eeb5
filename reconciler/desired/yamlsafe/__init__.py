"""Safe YAML parsing for hostile input: the only package that imports PyYAML.

``text`` is what the bytes tell before parsing (nesting bounds, YAML 1.2 spellings, the
words of each message; no PyYAML), ``loader`` the safe loader (which nodes become which
values), ``parsing`` one file from text to data with every failure a located problem.
"""

from reconciler.desired.yamlsafe.loader import YamlProblem, yaml11_reading
from reconciler.desired.yamlsafe.parsing import (
    MAX_EXPANDED_NODES,
    Parsed,
    gc_paused,
    marks_at,
    node_at,
    parse,
)
from reconciler.desired.yamlsafe.text import HostileInput, Mark, kind_of

__all__ = [
    "MAX_EXPANDED_NODES",
    "HostileInput",
    "Mark",
    "Parsed",
    "YamlProblem",
    "gc_paused",
    "kind_of",
    "marks_at",
    "node_at",
    "parse",
    "yaml11_reading",
]
