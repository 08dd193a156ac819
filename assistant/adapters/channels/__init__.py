"""Notification channels: how a message leaves the outbox."""
