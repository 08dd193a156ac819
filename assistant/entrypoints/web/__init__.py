"""The web app: pages for the pair, a JSON API under /api/, /health (see ``app``)."""
