"""Exchange Web Services: calendar, mailbox, push."""
