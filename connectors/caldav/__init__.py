"""CalDAV calendars (Radicale, Xandikos, iCloud, Nextcloud...)."""
