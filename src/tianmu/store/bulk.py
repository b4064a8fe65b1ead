"""Dialect-neutral bulk helpers: chunked IN lists, chunked executemany inserts, upsert of one row.

SQLite caps bound parameters per statement (999 on old builds) and PostgreSQL's protocol caps them at
65,535, so IN lists are sent in chunks of at most 500 and inserts in batches of 1,000 rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Column, Connection, Table, delete, insert, select, update

__all__ = ["IN_CHUNK", "chunks", "delete_in", "insert_rows", "select_in", "upsert_row"]

IN_CHUNK = 500
INSERT_BATCH = 1000

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """executemany in batches (one round trip per batch on both dialects)."""
    for batch in chunks(rows, INSERT_BATCH):
        conn.execute(insert(table), list(batch))


def delete_in(conn: Connection, column: Column[Any], values: Iterable[Any]) -> None:
    ordered = sorted(set(values))
    for part in chunks(ordered):
        conn.execute(delete(column.table).where(column.in_(part)))


def select_in(
    conn: Connection, columns: Sequence[Column[Any]], key: Column[Any], values: Iterable[Any]
) -> list[Any]:
    """Rows whose `key` is in `values`, fetched in chunks."""
    ordered = sorted(set(values))
    out: list[Any] = []
    for part in chunks(ordered):
        out.extend(conn.execute(select(*columns).where(key.in_(part))).all())
    return out


def upsert_row(conn: Connection, table: Table, key: Column[Any], row: dict[str, Any]) -> None:
    """Insert or replace one row by its primary key (select-then-write: the same on every dialect)."""
    exists = conn.execute(select(key).where(key == row[key.name])).first()
    if exists is None:
        conn.execute(insert(table).values(**row))
    else:
        conn.execute(update(table).where(key == row[key.name]).values(**row))
