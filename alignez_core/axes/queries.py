"""Reading user query files: text only, capped, with a note when something was cut."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alignez_core.errors import FitError

MAX_FILE_BYTES = 1024 * 1024
MAX_QUERIES = 200
MAX_QUERY_CHARS = 2000


@dataclass(frozen=True)
class QuerySet:
    queries: list[str]
    notes: list[str]


def parse_queries(text: str, source: str = "queries") -> QuerySet:
    """One query per non-empty line; capped in count and length, with notes saying so."""
    if "\x00" in text:
        raise FitError(f"{source} is not a text file (it contains NUL bytes).")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    queries = [line for line in lines if line]
    if not queries:
        raise FitError(f"{source} has no queries: it is empty or only whitespace.")
    notes = []
    if len(queries) > MAX_QUERIES:
        notes.append(f"{source}: using the first {MAX_QUERIES} of {len(queries)} queries.")
        queries = queries[:MAX_QUERIES]
    long = sum(len(q) > MAX_QUERY_CHARS for q in queries)
    if long:
        notes.append(f"{source}: {long} queries cut to {MAX_QUERY_CHARS} characters.")
        queries = [q[:MAX_QUERY_CHARS] for q in queries]
    return QuerySet(queries, notes)


def read_queries(path: str | Path) -> QuerySet:
    """Read a query file (UTF-8 text, one per line); only the first 1 MiB is read."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise FitError(f"Cannot read query file {path}: {exc.strerror or exc}.") from None
    notes = []
    if len(data) > MAX_FILE_BYTES:
        data = data[:MAX_FILE_BYTES].rsplit(b"\n", 1)[0]
        notes.append(f"{path.name}: file is over {MAX_FILE_BYTES} bytes; read the first 1 MiB.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FitError(f"{path.name} is not a UTF-8 text file.") from None
    parsed = parse_queries(text, path.name)
    return QuerySet(parsed.queries, notes + parsed.notes)
