"""Adapters: storage, outbox, channels, secrets and the push supervisor."""
