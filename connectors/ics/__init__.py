"""iCalendar parsing and read-only ICS feeds."""
