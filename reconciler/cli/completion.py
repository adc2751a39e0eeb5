"""Shell completion scripts for bash, zsh and fish, written from the command grammar.

The grammar (``grammar.spec()``) is walked into a :class:`CommandSpec` tree; each shell's
script is that tree as lookup tables plus a small driver that finds the command words before
the cursor (skipping option values) and completes subcommands, flags, choices or files.
Generated, not hand-written, so a new flag is completed without anyone remembering to.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator

from reconciler.cli.choices import Shell
from reconciler.errors import UsageError
from reconciler.values import frozen

FILES = "@files"  # the table value that means "complete file names"

_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.@,:/=+-]+$")


@frozen
class Option:
    """One flag: its spellings, whether it takes a value, and what that value can be."""

    names: tuple[str, ...]
    help: str = ""
    takes_value: bool = False
    choices: tuple[str, ...] = ()
    files: bool = False
    hidden: bool = False  # a deprecated spelling: its value is skipped, the flag never offered


@frozen
class Positional:
    """One operand, in order: a choice, a file, or free text (nothing to complete)."""

    name: str
    choices: tuple[str, ...] = ()
    files: bool = False


@frozen
class CommandSpec:
    """A command (the program itself has ``words == ()``) and what it accepts."""

    words: tuple[str, ...]
    help: str = ""
    options: tuple[Option, ...] = ()
    positionals: tuple[Positional, ...] = ()
    subcommands: tuple[CommandSpec, ...] = ()


def script(shell: Shell, spec: CommandSpec, prog: str) -> str:
    """The completion script for ``shell``."""
    match shell:
        case Shell.BASH:
            return bash(spec, prog)
        case Shell.ZSH:
            return zsh(spec, prog)
        case Shell.FISH:
            return fish(spec, prog)


def _walk(spec: CommandSpec) -> Iterator[CommandSpec]:
    yield spec
    for sub in spec.subcommands:
        yield from _walk(sub)


def _word(text: str) -> str:
    """A word that goes into a script unquoted-safe; anything else is a bug in the grammar."""
    if not _SAFE_WORD.match(text):
        raise UsageError(f"cannot write a completion word {text!r}")
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _value_table(option: Option) -> str:
    return FILES if option.files else " ".join(_word(c) for c in option.choices)


def _positional_table(positional: Positional) -> str:
    return FILES if positional.files else " ".join(_word(c) for c in positional.choices)


def _case(name: str, rows: list[tuple[str, str]]) -> list[str]:
    """A POSIX-style function printing the value of its one argument's row (bash and zsh)."""
    lines = [f"{name}() {{", '    case "$1" in']
    lines += [
        f"        {shlex.quote(key)}) printf '%s\\n' {shlex.quote(value)} ;;" for key, value in rows
    ]
    return [*lines, "    esac", "}", ""]


def _key(words: tuple[str, ...]) -> str:
    return " ".join(words)


def _tables(spec: CommandSpec, prefix: str) -> list[str]:
    """The lookup functions both bash and zsh drivers use."""
    commands = list(_walk(spec))
    subs = [(_key(c.words), " ".join(_word(s.words[-1]) for s in c.subcommands)) for c in commands]
    opts = [
        (_key(c.words), " ".join(_word(n) for o in c.options if not o.hidden for n in o.names))
        for c in commands
    ]
    valued = [
        (_key(c.words), " ".join(n for o in c.options if o.takes_value for n in o.names))
        for c in commands
    ]
    values = [
        (f"{_key(c.words)} {name}", _value_table(o))
        for c in commands
        for o in c.options
        if o.takes_value and (o.choices or o.files)
        for name in o.names
    ]
    operands = [
        (f"{_key(c.words)} {index}", _positional_table(p))
        for c in commands
        for index, p in enumerate(c.positionals)
        if p.choices or p.files
    ]
    return [
        *_case(f"{prefix}_subs", [row for row in subs if row[1]]),
        *_case(f"{prefix}_opts", opts),
        *_case(f"{prefix}_valued", [row for row in valued if row[1]]),
        *_case(f"{prefix}_optval", values),
        *_case(f"{prefix}_posval", operands),
        f"{prefix}_in() {{",
        "    local want=$1 item; shift",
        '    for item in "$@"; do [[ $item == "$want" ]] && return 0; done',
        "    return 1",
        "}",
        "",
    ]


# The walk over the words before the cursor, shared by bash and zsh: it tracks the command
# (``key``), skips each option's value (``--opt VALUE``; a lone ``=`` is bash splitting
# ``--opt=VALUE`` at COMP_WORDBREAKS) and counts operands (``npos``).
_WALK = """\
        w=${{{words}[i]}}
        if [[ $w == "=" ]]; then skip=1; continue; fi
        if (( skip )); then skip=0; continue; fi
        case $w in
            --*=*) ;;
            -*) if {p}_in "$w" $({p}_valued "$key"); then skip=1; fi ;;
            *) if {p}_in "$w" $({p}_subs "$key"); then key=${{key:+$key }}$w; npos=0
               else npos=$((npos + 1)); fi ;;
        esac"""


_BASH_DRIVER = """\
{p}_reply() {{
    local line
    COMPREPLY=()
    if [[ $1 == {files} ]]; then
        compopt -o filenames 2>/dev/null || true
        while IFS= read -r line; do COMPREPLY+=("$line"); done < <(compgen -f -- "$2")
    else
        while IFS= read -r line; do COMPREPLY+=("$line"); done < <(compgen -W "$1" -- "$2")
    fi
}}

{p}() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev="" key="" w i npos=0 skip=0 opt=""
    (( COMP_CWORD > 0 )) && prev=${{COMP_WORDS[COMP_CWORD-1]}}
    for (( i = 1; i < COMP_CWORD; i++ )); do
{walk}
    done
    if [[ $prev == "=" ]] && (( COMP_CWORD > 1 )); then
        opt=${{COMP_WORDS[COMP_CWORD-2]}}
    elif [[ $cur == "=" ]]; then
        opt=$prev; cur=""
    elif {p}_in "$prev" $({p}_valued "$key"); then
        opt=$prev
    fi
    if [[ -n $opt ]]; then
        {p}_reply "$({p}_optval "$key $opt")" "$cur"
    elif [[ $cur == -* ]]; then
        {p}_reply "$({p}_opts "$key")" "$cur"
    elif [[ -n $({p}_subs "$key") ]]; then
        {p}_reply "$({p}_subs "$key")" "$cur"
    else
        {p}_reply "$({p}_posval "$key $npos")" "$cur"
    fi
    return 0
}}

complete -F {p} {prog}
"""


def bash(spec: CommandSpec, prog: str) -> str:
    """The bash script: ``source <(reconciler completion bash)``."""
    p = f"_{prog.replace('-', '_')}"
    walk = _WALK.format(words="COMP_WORDS", p=p)
    header = [
        f"# bash completion for {prog}: generated by `{prog} completion bash`.",
        f"# Load it with: source <({prog} completion bash)",
        "",
    ]
    driver = _BASH_DRIVER.format(p=p, prog=prog, walk=walk, files=FILES)
    return "\n".join([*header, *_tables(spec, p), driver])


_ZSH_DRIVER = """\
{p}_zreply() {{
    if [[ $1 == {files} ]]; then _files; elif [[ -n $1 ]]; then compadd -- ${{=1}}; fi
}}

{p}() {{
    local cur=${{words[CURRENT]}} prev=${{words[CURRENT-1]}} key="" w i npos=0 skip=0
    local -a described
    for (( i = 2; i < CURRENT; i++ )); do
{walk}
    done
    if [[ $cur == --*=* ]] && {p}_in "${{cur%%=*}}" $({p}_valued "$key"); then
        local opt=${{cur%%=*}}
        compset -P '*='
        {p}_zreply "$({p}_optval "$key $opt")"
    elif {p}_in "$prev" $({p}_valued "$key"); then
        {p}_zreply "$({p}_optval "$key $prev")"
    elif [[ $cur == -* ]]; then
        described=("${{(@f)$({p}_opthelp "$key")}}")
        _describe -t options option described
    elif [[ -n $({p}_subs "$key") ]]; then
        described=("${{(@f)$({p}_subhelp "$key")}}")
        _describe -t commands command described
    else
        {p}_zreply "$({p}_posval "$key $npos")"
    fi
}}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    {p} "$@"
else
    compdef {p} {prog}
fi
"""


def _described(
    spec: CommandSpec, pick: Callable[[CommandSpec], list[str]]
) -> list[tuple[str, str]]:
    return [(_key(c.words), "\n".join(pick(c))) for c in _walk(spec) if pick(c)]


def _colon(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:")


def _subcommand_help(command: CommandSpec) -> list[str]:
    return [f"{_colon(s.words[-1])}:{_one_line(s.help)}" for s in command.subcommands]


def _option_help(command: CommandSpec) -> list[str]:
    return [
        f"{_colon(n)}:{_one_line(o.help)}" for o in command.options if not o.hidden for n in o.names
    ]


def zsh(spec: CommandSpec, prog: str) -> str:
    """The zsh script: save it as ``_reconciler`` on ``$fpath``, or ``source`` it."""
    p = f"_{prog.replace('-', '_')}"
    walk = _WALK.format(words="words", p=p)
    header = [
        f"#compdef {prog}",
        f"# zsh completion for {prog}: generated by `{prog} completion zsh`.",
        f"# Save it as _{prog} in a directory on $fpath, or: source <({prog} completion zsh)",
        "",
    ]
    return "\n".join(
        [
            *header,
            *_tables(spec, p),
            *_case(f"{p}_subhelp", _described(spec, _subcommand_help)),
            *_case(f"{p}_opthelp", _described(spec, _option_help)),
            _ZSH_DRIVER.format(p=p, prog=prog, walk=walk, files=FILES),
        ]
    )


_FISH_DRIVER = """\
function {p}_key --description 'the {prog} command words before the cursor'
    set -l key
    set -l skip 0
    for w in (commandline -opc)[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        switch $w
            case '--*=*'
            case '-*'
                if contains -- $w ({p}_valued "$key")
                    set skip 1
                end
            case '*'
                if contains -- $w ({p}_subs "$key")
                    set key $key $w
                end
        end
    end
    echo "$key"
end

function {p}_at --argument-names want
    set -l key ({p}_key)
    test "$key" = "$want"
end
"""


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_switch(name: str, rows: list[tuple[str, list[str]]]) -> list[str]:
    lines = [f"function {name} --argument-names key", "    switch $key"]
    for key, words in rows:
        lines += [
            f"        case {_fish_quote(key)}",
            f"            printf '%s\\n' {' '.join(words)}",
        ]
    return [*lines, "    end", "end", ""]


def _fish_option(prog: str, condition: str, option: Option) -> str:
    parts = [f"complete -c {prog} -n {condition}"]
    for name in option.names:
        parts.append(f"-l {name[2:]}" if name.startswith("--") else f"-s {name[1:]}")
    if option.files:
        parts.append("-r -F")
    elif option.choices:
        parts.append(f"-x -a {_fish_quote(' '.join(_word(c) for c in option.choices))}")
    elif option.takes_value:
        parts.append("-x")
    if option.help:
        parts.append(f"-d {_fish_quote(_one_line(option.help))}")
    return " ".join(parts)


def _fish_command(prog: str, p: str, command: CommandSpec) -> list[str]:
    condition = _fish_quote(f"{p}_at {_fish_quote(_key(command.words))}")
    lines = [
        f"complete -c {prog} -n {condition} -a {_word(s.words[-1])} "
        f"-d {_fish_quote(_one_line(s.help))}"
        for s in command.subcommands
    ]
    lines += [_fish_option(prog, condition, o) for o in command.options if not o.hidden]
    for positional in command.positionals:
        if positional.files:
            lines.append(f"complete -c {prog} -n {condition} -F")
        elif positional.choices:
            choices = " ".join(_word(c) for c in positional.choices)
            lines.append(f"complete -c {prog} -n {condition} -x -a {_fish_quote(choices)}")
    return lines


def fish(spec: CommandSpec, prog: str) -> str:
    """The fish script: save it as ``~/.config/fish/completions/reconciler.fish``."""
    p = f"__{prog.replace('-', '_')}"
    commands = list(_walk(spec))
    subs = [(_key(c.words), [_word(s.words[-1]) for s in c.subcommands]) for c in commands]
    valued = [
        (_key(c.words), [n for o in c.options if o.takes_value for n in o.names]) for c in commands
    ]
    lines = [
        f"# fish completion for {prog}: generated by `{prog} completion fish`.",
        f"# Save it as ~/.config/fish/completions/{prog}.fish, or: {prog} completion fish | source",
        "",
        *_fish_switch(f"{p}_subs", [row for row in subs if row[1]]),
        *_fish_switch(f"{p}_valued", [row for row in valued if row[1]]),
        _FISH_DRIVER.format(p=p, prog=prog),
        f"complete -c {prog} -f",
    ]
    for command in commands:
        lines += _fish_command(prog, p, command)
    return "\n".join(lines) + "\n"
