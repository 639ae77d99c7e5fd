"""Writes on usage: the usage sync (and, as they land, billing)."""
