"""POST /v1/contacts/import: contacts streamed as CSV or JSON lines, validated row by row and
written with COPY in batches, so a million rows never sit in memory at once.

The import is one transaction: a broken stream imports nothing, while a row that fails
validation is skipped and reported (the first 100 are listed, all are counted).
"""

from __future__ import annotations

import codecs
import csv
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ValidationError

from herald.api.auth import Account, Pool
from herald.api.config import ApiConfig
from herald.api.contacts import ContactIn
from herald.api.envelope import Envelope, ok
from herald.api.errors import ApiError, ErrorCode, model_error
from herald.api.fields import parse_uuid
from herald.api.guard import problem
from herald.store import contacts_api, lists

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])

IMPORT_PATH = "/v1/contacts/import"
STREAMING_PATHS = (IMPORT_PATH,)
MAX_REPORTED_ERRORS = 100
TAG_SEPARATORS = (";", "|")
CSV_TYPES = ("text/csv", "application/csv")
JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")


class StreamError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


class RowError(BaseModel):
    line: int
    code: str
    number: int
    field: str | None
    message: str


class ImportResult(BaseModel):
    imported: int
    rejected: int
    errors: list[RowError]
    list_id: uuid.UUID | None


@dataclass(kw_only=True)
class Tally:
    imported: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, line: int, code: ErrorCode, fld: str | None, message: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(
                {
                    "line": line,
                    "code": code.code,
                    "number": code.number,
                    "field": fld or "row",
                    "message": message,
                }
            )


async def numbered_lines(
    chunks: AsyncIterator[bytes], max_line_bytes: int
) -> AsyncIterator[tuple[int, str]]:
    """UTF-8 lines with their numbers from 1, without line ends, decoded incrementally."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    number = 0
    try:
        async for chunk in chunks:
            pending += decoder.decode(chunk)
            if "\n" not in pending:
                if len(pending) > max_line_bytes:
                    raise StreamError(number + 1, f"line longer than {max_line_bytes} bytes")
                continue
            *complete, pending = pending.split("\n")
            for line in complete:
                number += 1
                yield number, line.removesuffix("\r")
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise StreamError(number + 1, "the body is not UTF-8") from None
    if pending.strip():
        yield number + 1, pending.removesuffix("\r")


async def csv_records(
    lines: AsyncIterator[tuple[int, str]], max_line_bytes: int
) -> AsyncIterator[tuple[int, list[str]]]:
    """CSV records with the number of their first line; quoted fields may span lines."""
    parts: list[str] = []
    first = 0
    quotes = 0
    async for number, line in lines:
        if not parts:
            first = number
        parts.append(line)
        quotes += line.count('"')
        if quotes % 2:  # inside a quoted field: the record goes on
            if sum(len(p) for p in parts) > max_line_bytes:
                raise StreamError(first, "unterminated quoted field")
            continue
        text = "\n".join(parts)
        parts, quotes = [], 0
        if text.strip():
            yield first, next(csv.reader([text]))
    if parts:
        raise StreamError(first, "unterminated quoted field")


def csv_row(header: list[str], values: list[str]) -> dict[str, Any]:
    """A CSV row as contact fields; unknown columns (or metadata.<key>) become metadata."""
    if len(values) != len(header):
        raise ValueError(f"{len(values)} values for {len(header)} columns")
    row: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for name, value in zip(header, values, strict=True):
        value = value.strip()
        if not value:
            continue
        if name == "tags":
            for sep in TAG_SEPARATORS:
                value = value.replace(sep, ",")
            row["tags"] = [t.strip() for t in value.split(",") if t.strip()]
        elif name in ContactIn.model_fields and name != "metadata":
            row[name] = value
        else:
            metadata[name.removeprefix("metadata.")] = value
    if metadata:
        row["metadata"] = metadata
    return row


def contact_record(account: str, raw: dict[str, Any]) -> tuple[Any, ...]:
    """A COPY record for a validated row; raises ApiError naming the bad field."""
    # One such value would fail the COPY, and with it the whole import.
    unstorable = problem(raw)
    if unstorable is not None:
        fld, reason = unstorable
        raise ApiError(ErrorCode.VALIDATION_FAILED, reason, field=fld)
    try:
        contact = ContactIn.model_validate(raw)
    except ValidationError as exc:
        code, message, fld = model_error(list(exc.errors()))
        raise ApiError(code, message, field=fld) from None
    if contact.viber_user_id is not None:
        # The COPY writes contacts only; a value taken here would be silently dropped.
        raise ApiError(
            ErrorCode.VALIDATION_FAILED,
            "set viber_user_id with POST or PUT /v1/contacts, not in a bulk import",
            field="viber_user_id",
        )
    return (
        uuid.uuid4(),
        account,
        contact.phone,
        contact.email,
        contact.first_name,
        contact.last_name,
        contact.country_code,
        contact.lifecycle_stage,
        list(dict.fromkeys(contact.tags)),
        contact.metadata,
    )


async def _rows(
    request: Request, kind: str, config: ApiConfig
) -> AsyncIterator[tuple[int, dict[str, Any] | Exception]]:
    lines = numbered_lines(request.stream(), config.import_max_line_bytes)
    if kind == "jsonl":
        async for number, line in lines:
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield number, ValueError(f"not JSON: {exc}")
                continue
            yield number, value if isinstance(value, dict) else ValueError("not a JSON object")
        return
    header: list[str] | None = None
    async for number, values in csv_records(lines, config.import_max_line_bytes):
        if header is None:
            header = [h.strip().lower().lstrip("\ufeff") for h in values]
            if not {"phone", "email"} & set(header):
                raise StreamError(number, "the header needs a phone or an email column")
            continue
        try:
            yield number, csv_row(header, values)
        except ValueError as exc:
            yield number, exc


def _kind(request: Request, format: str | None) -> str:
    if format is not None:
        return format
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in CSV_TYPES:
        return "csv"
    if content_type in JSONL_TYPES:
        return "jsonl"
    raise ApiError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        "send text/csv or application/x-ndjson, or name the format",
        field="format",
    )


_BODY = {
    "required": True,
    "content": {
        "text/csv": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
}


@router.post(
    "/import",
    response_model=Envelope[ImportResult],
    openapi_extra={"requestBody": _BODY},
)
async def import_contacts(
    request: Request,
    account: Account,
    pool: Pool,
    format: Literal["csv", "jsonl"] | None = None,
    list_id: Annotated[str | None, Query(description="Add every imported contact here")] = None,
) -> dict[str, Any]:
    """CSV (a header row; tags separated by ; or |; other columns become metadata) or JSON
    lines (one contact object per line, as POST /v1/contacts takes it)."""
    config: ApiConfig = request.app.state.config
    kind = _kind(request, format)
    target = None
    if list_id is not None:
        target = parse_uuid(list_id, ErrorCode.LIST_NOT_FOUND)
        if await lists.get(pool, account, target) is None:
            raise ApiError(ErrorCode.LIST_NOT_FOUND, field="list_id")
    tally = Tally()
    seen = 0
    async with pool.acquire() as conn, conn.transaction():
        batch: list[tuple[Any, ...]] = []
        try:
            async for number, row in _rows(request, kind, config):
                seen += 1
                if seen > config.import_max_rows:
                    raise StreamError(number, f"more than {config.import_max_rows} rows")
                if isinstance(row, Exception):
                    tally.reject(number, ErrorCode.VALIDATION_FAILED, None, str(row))
                    continue
                try:
                    batch.append(contact_record(account, row))
                except ApiError as exc:
                    tally.reject(number, exc.code, exc.field, exc.message)
                    continue
                if len(batch) >= config.import_batch_rows:
                    await _flush(conn, batch, target)
                    tally.imported += len(batch)
                    batch = []
        except StreamError as exc:
            raise ApiError(ErrorCode.IMPORT_FAILED, str(exc), field="body") from None
        if batch:
            await _flush(conn, batch, target)
            tally.imported += len(batch)
    return ok(
        request,
        {
            "imported": tally.imported,
            "rejected": tally.rejected,
            "errors": tally.errors,
            "list_id": target,
        },
    )


async def _flush(conn: Any, batch: list[tuple[Any, ...]], list_id: uuid.UUID | None) -> None:
    await contacts_api.copy_contacts(conn, batch)
    if list_id is not None:
        await contacts_api.copy_members(conn, list_id, [r[0] for r in batch])
