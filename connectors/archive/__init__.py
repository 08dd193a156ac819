"""Mail archives read from disk (mbox, Maildir, .eml)."""
