"""The web app (minimal for now: a health page and a status page)."""
