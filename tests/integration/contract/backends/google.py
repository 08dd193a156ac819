"""Google Calendar: our connector through google-api-python-client against the
protocol-level server in ``tests/support/google_server.py``.

The manager's other client (the Google Calendar app) changes the calendar with raw
REST calls to the same server, the way Google's clients do: instances of a series are
found with ``events.instances`` and changed or deleted by their instance id; a cancelled
event is a deleted one. Its requests use a token the fault injection leaves alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from connectors.google.calendar import GoogleCalendar
from tests.integration.contract.backend import Series
from tests.support.google_server import GoogleCalendarServer

NAME = "google"
MANAGER = "alex@example.com"


class GoogleBackend:
    name = NAME
    zone = "Europe/Paris"
    refreshes_on_401 = True

    def __init__(self, server: GoogleCalendarServer) -> None:
        self.server = server
        self.client_id, self.client_secret = server.add_client()
        self.refresh_token = server.issue_refresh_token(MANAGER, self.client_id)
        self._http = httpx.Client(
            base_url=f"{server.url}calendar/v3/calendars/primary/",
            headers={"Authorization": f"Bearer {server.access_token_for(MANAGER, exempt=True)}"},
            timeout=10,
        )

    def close(self) -> None:
        self._http.close()

    # ----------------------------------------------------------------- connector

    def source(self, timeout: float = 10.0) -> GoogleCalendar:
        return GoogleCalendar.installed_app(
            self.client_id,
            self.client_secret,
            self.refresh_token,
            token_uri=self.server.token_uri,
            api_root=self.server.url,
            timeout=timeout,
            zone=self.zone,
        )

    def writer(self) -> GoogleCalendar:
        return self.source()

    # ------------------------------------------------------------ other client

    def create(
        self, uid: str, summary: str, start: datetime, end: datetime,
        *, location: str = "", series: Series | None = None,
    ) -> None:  # fmt: skip
        body: dict[str, Any] = {
            "iCalUID": uid,
            "summary": summary,
            "start": self._when(start),
            "end": self._when(end),
        }
        if location:
            body["location"] = location
        if series is not None:
            body["recurrence"] = [f"RRULE:FREQ=WEEKLY;COUNT={series.count}"]
        self._call("POST", "events", json=body)

    def move(self, uid: str, start: datetime, end: datetime) -> None:
        event = self._by_uid(uid)
        self._call(
            "PATCH",
            f"events/{event['id']}",
            json={"start": self._when(start), "end": self._when(end)},
        )

    def cancel(self, uid: str) -> None:
        self._call("DELETE", f"events/{self._by_uid(uid)['id']}")

    def move_occurrence(
        self, uid: str, original_start: datetime, start: datetime, end: datetime
    ) -> None:
        instance = self._instance(uid, original_start)
        self._call(
            "PATCH", f"events/{instance['id']}",
            json={"start": self._when(start), "end": self._when(end)},
        )  # fmt: skip

    def cancel_occurrence(self, uid: str, original_start: datetime) -> None:
        self._call("DELETE", f"events/{self._instance(uid, original_start)['id']}")

    def delete(self, uid: str) -> None:
        self._call("DELETE", f"events/{self._by_uid(uid)['id']}")

    # --------------------------------------------------------------- misbehave

    def expire_token(self) -> None:
        self.server.expire_sync_tokens()

    def fail_next(self, status: int, *, retry_after: int | None = None, times: int = 1) -> None:
        self.server.fail_next(status, retry_after=retry_after, times=times)

    def hang_next(self, seconds: float) -> None:
        self.server.hang_next(seconds)

    # ----------------------------------------------------------------- helpers

    def _when(self, moment: datetime) -> dict[str, str]:
        return {"dateTime": moment.isoformat(), "timeZone": self.zone}

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def _by_uid(self, uid: str) -> dict[str, Any]:
        items = self._call("GET", "events", params={"iCalUID": uid})["items"]
        masters = [i for i in items if not i.get("recurringEventId")]
        assert masters, f"no event with iCalUID {uid}"
        return dict(masters[0])

    def _instance(self, uid: str, original_start: datetime) -> dict[str, Any]:
        master = self._by_uid(uid)
        when = original_start.astimezone(UTC)
        params = {
            "timeMin": (when - timedelta(minutes=1)).isoformat(),
            "timeMax": (when + timedelta(minutes=1)).isoformat(),
        }
        for item in self._call("GET", f"events/{master['id']}/instances", params=params)["items"]:
            original = datetime.fromisoformat(item["originalStartTime"]["dateTime"])
            if original == when:
                return dict(item)
        raise AssertionError(f"no instance of {uid} at {original_start}")


@contextmanager
def open_backend(tmp_path: Path) -> Iterator[GoogleBackend]:
    with GoogleCalendarServer(time_zone=GoogleBackend.zone) as server:
        backend = GoogleBackend(server)
        try:
            yield backend
        finally:
            backend.close()
