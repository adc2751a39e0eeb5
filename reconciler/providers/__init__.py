"""Clients of the two vendor APIs, behind one HTTP seam.

``http`` builds the httpx clients and translates their failures, ``retry`` times the
retries, ``urls`` holds the URL, loopback and TLS policy; the last two are pure.
"""
