"""Calendar items read from EWS replies field by field, for the sync's bulk reads.

exchangelib turns every item of a reply into a ``CalendarItem`` by running the parser of
each of its ~100 fields over the item's XML and setting each through ``__setattr__``,
whatever ``only_fields`` asked for: for a full sync of 10,000 events (SyncFolderItems,
then GetItem of every item) that is most of the sync's time. Here the same services
(``SyncFolderItems``, ``GetItem``, exchangelib's own request, paging and error handling)
read a calendar item with the parsers of only the fields asked for, exchangelib's own
(``Field.from_xml``), into a ``CalendarRecord``: the same attribute names and values as
the ``CalendarItem`` would have (``id`` and ``changekey`` from its ItemId; an all-day
item's start and end as dates, as ``CalendarItem.from_xml`` makes them; a field not asked
for reads as the field's default). Items of other types are exchangelib's as before.
Two more short ways, each giving what exchangelib gives: a time in the form Exchange
writes (``...T08:00:00Z``) is read without ``strptime``, and GetItem's ItemIds are
written straight from the (id, change key) pairs.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from exchangelib import CalendarItem
from exchangelib.ewsdatetime import UTC, EWSDateTime
from exchangelib.fields import DateOrDateTimeField, DateTimeField
from exchangelib.items import ID_ONLY
from exchangelib.services import GetItem, SyncFolderItems
from exchangelib.services.common import shape_element
from exchangelib.util import create_element

_TAG = CalendarItem.response_tag()
_ID_TAG = CalendarItem.get_field_by_fieldname("_id").response_tag()  # t:ItemId
_UTC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")  # as Exchange writes times


class CalendarRecord:
    """The fields of one calendar item that a reply carried (see the module doc)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:  # a field not asked for: its default
        if name.startswith("__"):
            raise AttributeError(name)
        return CalendarItem.get_field_by_fieldname(name).default


def _time_reader(field: Any) -> Callable[[Any, Any], Any]:
    """``field.from_xml`` of a date-time field, with a short way for the form Exchange
    writes (``2030-01-07T08:00:00Z``): the same EWSDateTime in UTC that exchangelib's
    ``strptime`` makes, at a third of the cost; anything else goes to exchangelib."""
    tag = field.response_tag()

    def read(elem: Any, account: Any) -> Any:
        found = elem.find(tag)
        text = found.text if found is not None else None
        if text and len(text) == 20 and _UTC_TIME.fullmatch(text):
            try:
                return EWSDateTime(int(text[:4]), int(text[5:7]), int(text[8:10]),
                                   int(text[11:13]), int(text[14:16]), int(text[17:19]),
                                   tzinfo=UTC)  # fmt: skip
            except ValueError:
                pass  # out of range: exchangelib's own handling
        return field.from_xml(elem=elem, account=account)

    return read


def _field_reader(field: Any) -> Callable[[Any, Any], Any]:
    if type(field) in (DateTimeField, DateOrDateTimeField):
        return _time_reader(field)
    return lambda elem, account: field.from_xml(elem=elem, account=account)


class _Reader:
    """Reads the calendar items of replies asked with ``additional_fields``."""

    def __init__(self, additional_fields: Iterable[Any]) -> None:
        fields = {fp.field.name: fp.field for fp in additional_fields}
        self.readers = tuple((name, _field_reader(f)) for name, f in fields.items())

    def read(self, elem: Any, account: Any) -> CalendarRecord:
        values = {name: read(elem, account) for name, read in self.readers}
        ident = elem.find(_ID_TAG)  # its attributes, as exchangelib's ItemId reads them
        values["id"] = (ident.get("Id") or None) if ident is not None else None
        values["changekey"] = (ident.get("ChangeKey") or None) if ident is not None else None
        if values.get("is_all_day"):  # as CalendarItem.from_xml: dates in the item's zones
            for name in ("start", "end"):
                value = values.get(name)
                if value is None:
                    continue
                if name == "end":
                    value -= datetime.timedelta(days=1)
                values[name] = value.astimezone(values.get(f"_{name}_timezone")).date()
        elem.clear()  # as exchangelib does: the reply's tree shrinks as it is read
        parent = elem.getparent()
        if parent is not None:
            parent.remove(elem)
        return CalendarRecord(values)


def field_paths(folder: Any, fields: Iterable[str]) -> set[Any]:
    """The FieldPaths exchangelib asks for ``fields`` (as ``fetch`` and ``sync_items`` do:
    validated, the zones of start and end added, ItemId and ChangeKey left out)."""
    names = list(fields)
    for name in names:
        folder.validate_item_field(field=name, version=folder.account.version)
    return {f for f in folder.normalize_fields(fields=names) if not f.field.is_attribute}


class _GetItem(GetItem):  # type: ignore[misc]
    def __init__(self, *args: Any, reader: _Reader, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reader = reader

    def get_payload(self, items: Iterable[tuple[str, str | None]], additional_fields: Any,
                    shape: str) -> Any:  # fmt: skip
        """GetItem's request as exchangelib writes it, the ItemIds written straight from
        the (id, change key) pairs (exchangelib's way costs ~10 ms per 100 ids)."""
        payload = create_element(f"m:{self.SERVICE_NAME}")
        payload.append(
            shape_element(tag="m:ItemShape", shape=shape, additional_fields=additional_fields,
                          version=self.account.version)
        )  # fmt: skip
        ids = create_element("m:ItemIds")
        for item_id, changekey in items:
            attrs = {"Id": item_id}
            if changekey is not None:
                attrs["ChangeKey"] = changekey
            ids.append(create_element("t:ItemId", attrs=attrs))
        payload.append(ids)
        return payload

    def _elem_to_obj(self, elem: Any) -> Any:
        if elem.tag == _TAG:
            return self.reader.read(elem, self.account)
        return super()._elem_to_obj(elem)


class _SyncFolderItems(SyncFolderItems):  # type: ignore[misc]
    def __init__(self, *args: Any, reader: _Reader, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reader = reader

    def _elem_to_obj(self, elem: Any) -> Any:
        kind = self.change_types_map[elem.tag]
        if kind in (self.CREATE, self.UPDATE) and len(elem) and elem[0].tag == _TAG:
            return kind, self.reader.read(elem[0], self.account)
        return super()._elem_to_obj(elem)


def get_items(
    account: Any, folder: Any, refs: list[tuple[str, str]], fields: Iterable[str], chunk: int
) -> Iterator[Any]:
    """GetItem of ``refs``, ``chunk`` a request, in their order (errors as exchangelib
    yields them: exception objects)."""
    paths = field_paths(folder, fields)
    service = _GetItem(account=account, chunk_size=chunk, reader=_Reader(paths))
    yield from service.call(items=refs, additional_fields=paths, shape=ID_ONLY)


class ItemSync:
    """Every page of SyncFolderItems from ``state`` (None: from the start), as
    ``Folder.sync_items`` pages it: iterate for (change type, item or ItemId); then
    ``state`` is the new sync state."""

    def __init__(
        self, folder: Any, state: str | None, fields: Iterable[str], page: int
    ) -> None:  # fmt: skip
        self.folder = folder
        self.state = state
        self.paths = field_paths(folder, fields)
        self.page = page

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        service = _SyncFolderItems(account=self.folder.account, reader=_Reader(self.paths))
        state = self.state
        while True:
            yield from service.call(
                folder=self.folder, shape=ID_ONLY, additional_fields=self.paths,
                sync_state=state, ignore=None, max_changes_returned=self.page, sync_scope=None,
            )  # fmt: skip
            if service.sync_state == state:
                break  # the same state again: exchangelib stops here too
            state = service.sync_state
            if service.includes_last_item_in_range:
                break
        self.state = service.sync_state
