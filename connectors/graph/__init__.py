"""Microsoft Graph (Microsoft 365): calendar, mailbox, push."""
