"""Use cases: each takes a unit of work, ids and ``now``; jobs and the CLI call them."""
