"""Clients of the two vendor APIs, behind one HTTP seam (``providers.http``)."""
