"""The whole sandbox: federation + CloudIdentity fakes and their control endpoints."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from reconciler.sandbox.cloudidentity import CloudIdentitySandbox, build_cloudidentity
from reconciler.sandbox.control import ControlHandler, build_federation
from reconciler.sandbox.federation import FederationSandbox
from reconciler.sandbox.federation_model import TenantSeed
from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.sandbox.server import RunningSandbox
from reconciler.sandbox.wire import Handler

SANDBOX_APP_KEY = "sandbox-app-key"
SANDBOX_APP_SECRET = "sandbox-app-secret"
SANDBOX_ACCESS_KEY = "AKLTsandbox"
SANDBOX_SECRET_KEY = "sandbox-secret-key"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sandbox:
    """The mounted handlers of one sandbox process."""

    federation: FederationSandbox
    control: ControlHandler
    cloudidentity: CloudIdentitySandbox

    def handlers(self) -> tuple[Handler, ...]:
        """In dispatch order."""
        return (self.control, self.cloudidentity, self.federation)


def build(
    settings: FederationSettings | None = None,
    *,
    role_ids: Iterable[str] = (),
    clock: Callable[[], float] | None = None,
) -> Sandbox:
    """A sandbox with the default tenant (``sandbox-app-key``) owning ``role_ids``.

    ``clock`` times the federation tasks (unix seconds; the real clock by default): a
    ``control.ManualClock`` holds every task where it is until a test moves it.
    """
    cloudidentity = build_cloudidentity()
    federation, control = build_federation(settings, clock, also_reset=(cloudidentity,))
    federation.seed_tenant(
        TenantSeed(
            app_key=SANDBOX_APP_KEY,
            app_secret=SANDBOX_APP_SECRET,
            role_ids=tuple(sorted(set(role_ids))),
        )
    )
    return Sandbox(federation=federation, control=control, cloudidentity=cloudidentity)


def serve(sandbox: Sandbox, host: str, port: int) -> RunningSandbox:
    """Bind the sandbox (not started)."""
    return RunningSandbox(sandbox.handlers(), host, port)
