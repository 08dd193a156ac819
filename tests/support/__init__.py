"""Test helpers: real servers started on 127.0.0.1 and database/queue fixtures."""
