"""Renderings of a plan: text for people, JSON for machines, Markdown for PR comments."""
