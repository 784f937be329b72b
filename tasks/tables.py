"""Side tables keyed by video source (probe labels, VQA questions): one reader, one matching rule.

A table is parquet, CSV or JSON lines, local or `s3://`; the format comes from the file
extension (`.parquet`/`.pq`, `.csv`, `.jsonl`/`.ndjson`/`.json`), else from the first bytes.
Its `source` column names the video a row belongs to, in one of two ways:

- the full URI the clip's `source` holds (`s3://bucket/raw/a.mp4`, `/data/a.mp4`), or
- the bare file name (`a.mp4`, no `/`), which matches every clip source with that file name.

A full URI wins over a file name. `SourceMatcher` applies the rule; it is a plain object, so it
travels into Ray Data stages.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterable, Sequence
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from tasks import storage

SOURCE_COLUMN = "source"
FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def table_format(uri: str, head: bytes) -> str:
    """`parquet`, `csv` or `jsonl`: by extension, else by the first bytes of the file."""
    suffix = posixpath.splitext(uri.lower())[1]
    if suffix in FORMATS:
        return FORMATS[suffix]
    if head.startswith(b"PAR1"):
        return "parquet"
    return "jsonl" if head.lstrip().startswith(b"{") else "csv"


def read_table(uri: str, columns: Sequence[str] = (SOURCE_COLUMN,)) -> pa.Table:
    """The table at `uri` (parquet, CSV or JSON lines); `columns` must all be present."""
    fs, path = storage.filesystem(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"table not found: {uri}")
    data = fs.cat_file(path)
    kind = table_format(uri, data[:8])
    try:
        if kind == "parquet":
            table = pq.read_table(pa.BufferReader(data))
        elif kind == "csv":
            table = pacsv.read_csv(io.BytesIO(data))
        else:
            table = pajson.read_json(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as error:
        raise ValueError(f"cannot read {uri} as {kind}: {error}") from error
    missing = [name for name in columns if name not in table.column_names]
    if missing:
        raise ValueError(f"{uri} lacks column(s) {missing}; it has {table.column_names}")
    if SOURCE_COLUMN in table.column_names:
        table = table.set_column(
            table.column_names.index(SOURCE_COLUMN),
            SOURCE_COLUMN,
            table[SOURCE_COLUMN].cast(pa.string()),
        )
    return table


def file_name(source: str) -> str:
    """The file name of a source URI or path (percent-escapes of URLs undone)."""
    name = posixpath.basename(source.rstrip("/"))
    return unquote(name) if "://" in source else name


class SourceMatcher:
    """Finds the table key (a full URI or a bare file name) that a clip's source belongs to."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.full: set[str] = set()
        self.names: set[str] = set()
        for key in keys:
            (self.names if "/" not in key and "://" not in key else self.full).add(key)

    def match(self, source: str) -> str | None:
        """The key for `source`: its full URI if the table has it, else its file name, else None."""
        if source in self.full:
            return source
        if source.startswith("file://") and source.removeprefix("file://") in self.full:
            return source.removeprefix("file://")
        name = file_name(source)
        return name if name in self.names else None
