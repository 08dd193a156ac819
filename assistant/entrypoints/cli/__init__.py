"""The `assistant` command (Typer)."""
