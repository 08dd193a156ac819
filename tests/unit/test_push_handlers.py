"""The receiving side of webhook push, pure: Graph validation and clientState, Google
channel tokens and resource states."""

from __future__ import annotations

import json

from connectors.google.push import handle_google_notification
from connectors.graph.push import graph_subscription_ids, handle_graph_notification

SECRETS = {"sub-1": "secret-1", "sub-2": "secret-2"}


def body(*items: dict[str, object]) -> bytes:
    return json.dumps({"value": list(items)}).encode()


def test_graph_validation_token_is_echoed_verbatim_as_plain_text() -> None:
    reply, signals = handle_graph_notification(b"", {"validationToken": "a b<&>"}, {})
    assert (reply.status, reply.body, signals) == (200, b"a b<&>", [])
    assert reply.content_type.startswith("text/plain")


def test_graph_changes_and_lifecycle_events_per_subscription() -> None:
    raw = body(
        {"subscriptionId": "sub-1", "clientState": "secret-1", "changeType": "created"},
        {"subscriptionId": "sub-1", "clientState": "secret-1", "changeType": "updated"},
        {"subscriptionId": "sub-2", "clientState": "secret-2", "lifecycleEvent": "missed"},
        {"subscriptionId": "sub-2", "clientState": "secret-2",
         "lifecycleEvent": "reauthorizationRequired"},
    )  # fmt: skip
    reply, signals = handle_graph_notification(raw, {}, SECRETS)
    assert reply.status == 202
    assert signals == [("sub-1", "change"), ("sub-2", "missed"),
                       ("sub-2", "reauthorizationRequired")]  # fmt: skip
    assert graph_subscription_ids(raw) == ["sub-1", "sub-2"]


def test_graph_forged_or_foreign_notifications_are_dropped() -> None:
    forged = body({"subscriptionId": "sub-1", "clientState": "secret-2"})
    assert handle_graph_notification(forged, {}, SECRETS)[0].status == 403
    missing = body({"subscriptionId": "sub-1"})
    assert handle_graph_notification(missing, {}, SECRETS)[0].status == 403
    foreign = body({"subscriptionId": "sub-9", "clientState": "x"})
    reply, signals = handle_graph_notification(foreign, {}, SECRETS)
    assert (reply.status, signals) == (202, [])
    mixed = body({"subscriptionId": "sub-1", "clientState": "nope"},
                 {"subscriptionId": "sub-2", "clientState": "secret-2"})  # fmt: skip
    reply, signals = handle_graph_notification(mixed, {}, SECRETS)
    assert (reply.status, signals) == (202, [("sub-2", "change")])


def test_graph_malformed_bodies_are_bad_requests() -> None:
    for raw in (b"", b"{", b"[]", b'{"value": 3}'):
        assert handle_graph_notification(raw, {}, SECRETS)[0].status == 400


def google(state: str, token: str = "tok", channel: str = "ch-1") -> dict[str, str]:
    return {"X-Goog-Channel-ID": channel, "X-Goog-Channel-Token": token,
            "X-Goog-Resource-State": state, "X-Goog-Message-Number": "1"}  # fmt: skip


def test_google_states_and_tokens() -> None:
    tokens = {"ch-1": "tok"}
    assert handle_google_notification(google("sync"), tokens)[1] == [("ch-1", "sync")]
    reply, signals = handle_google_notification(google("exists"), tokens)
    assert (reply.status, signals) == (200, [("ch-1", "exists")])
    lower = {k.lower(): v for k, v in google("not_exists").items()}
    assert handle_google_notification(lower, tokens)[1] == [("ch-1", "not_exists")]
    assert handle_google_notification(google("exists", "bad"), tokens)[0].status == 403
    assert handle_google_notification(google("exists", channel="ch-2"), tokens)[0].status == 404
    assert handle_google_notification(google("weird"), tokens)[0].status == 400
