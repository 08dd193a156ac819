"""The `assistant` command (Typer).

Help and usage errors are click's plain text, not Typer's rich panels: the same words,
readable at 80 columns and in a pipe, and `assistant --help` answers without importing
rich's markdown and traceback machinery (issue 16: <= 0.15 s). Set before Typer is
imported, which reads it once.
"""

import os

os.environ.setdefault("TYPER_USE_RICH", "0")
