"""``reconciler sandbox``: the fake APIs on loopback, ready for a first apply.

The tenant's role catalogue is seeded from a desired state (``--roles-from``, by default
the current directory) so a newcomer's first apply does not fail with 100-217 for every
account; when there is nothing to seed from, the banner says so loudly. The banner's
settings are ``export`` lines that can be pasted as they are: the sandbox's credentials
are public test values, not secrets. Binding problems are ``error:`` lines with a hint.
"""

from __future__ import annotations

import errno
import ipaddress
import shlex
import socket
import sys
from pathlib import Path

from reconciler.cli import commands
from reconciler.cli.commands import out
from reconciler.cli.options import SandboxOptions
from reconciler.desired import loading
from reconciler.errors import EXIT_OK, InputError, UsageError, ValidationFailed
from reconciler.values import frozen


@frozen
class Seeded:
    """The role ids the sandbox tenant starts with, where they came from, and why none."""

    role_ids: tuple[str, ...]
    source: Path
    why_none: str | None = None


def seed_roles(roles_from: Path | None) -> Seeded:
    """The role ids of the desired state at ``roles_from`` (default: ``.``, if it holds one).

    An explicit path must hold a valid desired state. The default may hold none: then no
    role is seeded, and the banner says why.
    """
    path = roles_from if roles_from is not None else Path(".")
    source = path.resolve()
    if roles_from is None and not _holds_yaml(path):
        return Seeded(role_ids=(), source=source, why_none="no *.yaml or *.yml files there")
    try:
        desired = commands.load(path)
    except ValidationFailed as failed:
        for problem in failed.problems:
            out(problem.render(), stream=sys.stderr)
        raise _unusable(path, failed) from failed
    except InputError as error:
        raise _unusable(path, error) from error
    role_ids = tuple(sorted({role.id for role in desired.roles.values()}))
    return Seeded(
        role_ids=role_ids,
        source=source,
        why_none=None if role_ids else "the desired state defines no roles",
    )


def _holds_yaml(path: Path) -> bool:
    if path.is_file():
        return path.suffix in loading.YAML_SUFFIXES
    return path.is_dir() and any(
        child.suffix in loading.YAML_SUFFIXES and not child.name.startswith(".")
        for child in path.iterdir()
    )


def _unusable(path: Path, error: InputError) -> InputError:
    return InputError(
        f"cannot seed the sandbox's roles from {path}: {error.message}",
        hint=f"fix it (`reconciler validate {shlex.quote(str(path))}` lists the problems), "
        "or pass --roles-from PATH with another desired state",
    )


def banner(url: str, seeded: Seeded, keys: dict[str, str]) -> list[str]:
    """The lines printed at start: comments and ``export`` lines, all pasteable."""
    lines = [
        f"# reconciler sandbox listening on {url} (Ctrl-C stops it)",
        "# Paste these lines into a shell to point reconciler at it (public test credentials):",
        *(f"export {name}={shlex.quote(value)}" for name, value in keys.items()),
    ]
    if seeded.why_none is None:
        lines.append(f"# roles seeded: {len(seeded.role_ids)} from {seeded.source}")
    else:
        lines += [
            f"# WARNING: seeded 0 roles from {seeded.source}: {seeded.why_none}.",
            "# WARNING: every CREATE or MODIFY naming a role will fail with 100-217; restart "
            "with --roles-from PATH (your desired state).",
        ]
    lines.append(f"# test-only control endpoints under {url}/_sandbox/")
    return lines


def sandbox(options: SandboxOptions) -> int:
    """``reconciler sandbox``: serve the fake APIs until interrupted."""
    from reconciler.sandbox import app  # noqa: PLC0415 - the sandbox loads only when served

    if not options.allow_remote and not is_loopback(options.host):
        raise UsageError(
            f"--host {options.host!r} is not a loopback address: the sandbox serves fake APIs "
            "that accept its published credentials, so anyone who can reach it could use them",
            hint="reconciler sandbox --host 127.0.0.1 (or add --allow-remote if others must "
            "reach it, e.g. from a container, on a network you trust)",
        )
    seeded = seed_roles(options.roles_from)
    box = app.build(role_ids=seeded.role_ids)
    try:
        server = app.serve(box, options.host, options.port)
    except (OSError, OverflowError) as exc:
        raise _bind_error(options.host, options.port, exc) from exc
    url = _reachable(server.url)
    keys = {
        "RECONCILER_FEDERATION_URL": url,
        "RECONCILER_FEDERATION_APP_KEY": app.SANDBOX_APP_KEY,
        "RECONCILER_FEDERATION_APP_SECRET": app.SANDBOX_APP_SECRET,
        "RECONCILER_CLOUDIDENTITY_URL": url,
        "VOLCENGINE_ACCESS_KEY": app.SANDBOX_ACCESS_KEY,
        "VOLCENGINE_SECRET_KEY": app.SANDBOX_SECRET_KEY,
    }
    for line in banner(url, seeded, keys):
        out(line)
    if seeded.why_none is not None:
        out(f"warning: the sandbox tenant has no roles: {seeded.why_none}", stream=sys.stderr)
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return EXIT_OK


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1); never resolved by DNS."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _reachable(url: str) -> str:
    """The URL clients use: loopback when the sandbox listens on every address."""
    return url.replace("//0.0.0.0:", "//127.0.0.1:")


def _bind_error(host: str, port: int, exc: OSError | OverflowError) -> UsageError:
    """Why the sandbox cannot listen on ``host:port``, and what to pass instead."""
    where = f"{host}:{port}"
    other_port = "stop what listens there, or pass --port N (--port 0 picks a free port)"
    other_host = "pass --host with an address of this machine, e.g. --host 127.0.0.1"
    match exc:
        case OverflowError():
            return UsageError(f"cannot listen on {where}: ports are 0-65535", hint=other_port)
        case socket.gaierror():
            return UsageError(f"cannot listen on {where}: host name not found", hint=other_host)
        case OSError(errno=errno.EADDRINUSE):
            return UsageError(f"cannot listen on {where}: the port is in use", hint=other_port)
        case OSError(errno=errno.EADDRNOTAVAIL):
            return UsageError(
                f"cannot listen on {where}: not an address of this machine", hint=other_host
            )
        case OSError(errno=errno.EACCES):
            return UsageError(
                f"cannot listen on {where}: permission denied (ports below 1024 need privileges)",
                hint="pass --port 8780 or another port above 1023",
            )
        case _:
            return UsageError(
                f"cannot listen on {where}: {exc.strerror or type(exc).__name__}",
                hint=f"{other_host}; {other_port}",
            )
