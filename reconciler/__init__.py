"""reconciler: a declarative plan/apply loop for federated users and roles."""

__version__ = "0.1.0"
