"""The binary wire format: msgpack maps whose array fields are `.npy` bytes.

Request and response bodies are one msgpack map (`Content-Type: application/msgpack`). Scalars
(model name, seed, energy) are plain msgpack values; every array is the bytes of a `.npy` file,
read with `np.load(allow_pickle=False)` so no request can make the server unpickle anything.
Every failure is a `RequestError` with the HTTP status and a message naming the field.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
CONTENT_TYPE = MSGPACK_TYPES[0]

Shape = Sequence[int | None]  # None: any size on that axis


class RequestError(Exception):
    """A client error: HTTP `status`, a message and the offending field if there is one."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def payload(self) -> dict[str, Any]:
        return {"detail": self.message, "field": self.field}

    def __reduce__(self) -> tuple[type[RequestError], tuple[int, str, str | None]]:
        # raised in a replica, it travels to the ingress pickled: rebuild it with all its fields
        return (RequestError, (self.status, self.message, self.field))


def encode_array(array: np.ndarray) -> bytes:
    """One array -> `.npy` bytes (never pickled: object arrays are refused)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _read_header(field: str, buffer: io.BytesIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The `.npy` header (shape, Fortran order, dtype), parsed without reading any data."""
    try:
        version = np.lib.format.read_magic(buffer)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buffer)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buffer)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as error:
        raise RequestError(
            422, f"field '{field}' is not a valid .npy array: {error}", field
        ) from None
    if dtype.hasobject:
        raise RequestError(
            422, f"field '{field}' is not a valid .npy array: object dtype is refused", field
        )
    if any(size < 0 for size in shape):
        raise RequestError(
            422, f"field '{field}' is not a valid .npy array: negative shape {shape}", field
        )
    return tuple(shape), bool(fortran), dtype


def decode_array(field: str, value: Any) -> np.ndarray:
    """`.npy` bytes -> array, with a 422 naming `field` for anything else or truncated data.

    The header's shape and dtype are checked against the bytes actually sent before anything
    is allocated (a header may claim terabytes), and nothing goes through `np.load`.
    """
    if not isinstance(value, bytes | bytearray):
        message = f"field '{field}' must be .npy bytes, got {type(value).__name__}"
        raise RequestError(422, message, field)
    buffer = io.BytesIO(value)
    shape, fortran, dtype = _read_header(field, buffer)
    claimed = math.prod(shape) * dtype.itemsize
    sent = len(value) - buffer.tell()
    if sent > claimed:
        raise RequestError(422, f"field '{field}' has {sent - claimed} extra bytes", field)
    if claimed != sent:
        raise RequestError(
            422,
            f"field '{field}' is not a valid .npy array: its header claims shape {shape} "
            f"{dtype} ({claimed} bytes) but {sent} bytes follow",
            field,
        )
    flat = np.frombuffer(value, dtype=dtype, count=math.prod(shape), offset=buffer.tell())
    return flat.reshape(shape, order="F" if fortran else "C").copy()


def pack(message: Mapping[str, Any]) -> bytes:
    """A map of scalars and arrays -> msgpack bytes (arrays as `.npy`)."""
    encoded = {
        key: encode_array(value) if isinstance(value, np.ndarray) else value
        for key, value in message.items()
    }
    return bytes(msgpack.packb(encoded, use_bin_type=True))


def unpack(body: bytes, allowed: Iterable[str]) -> dict[str, Any]:
    """msgpack bytes -> map with string keys; 400 if it is not one, 422 for an unknown key."""
    if not body:
        raise RequestError(400, "the request body is empty; send a msgpack map")
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as error:  # msgpack raises several unrelated types for bad input
        raise RequestError(400, f"the body is not valid msgpack: {error}") from None
    if not isinstance(message, dict):
        raise RequestError(400, f"the body must be a msgpack map, got {type(message).__name__}")
    known = set(allowed)
    for key in message:
        if key not in known:
            raise RequestError(422, f"unknown field '{key}'; expected {sorted(known)}", str(key))
    return message


def describe(shape: Shape, dtype: str) -> str:
    dims = ", ".join("*" if size is None else str(size) for size in shape)
    return f"({dims}{',' if len(shape) == 1 else ''}) {dtype}"


def _matches(array: np.ndarray, shape: Shape) -> bool:
    return array.ndim == len(shape) and all(
        size is None or size == actual for size, actual in zip(shape, array.shape, strict=True)
    )


def check_array(
    field: str, array: np.ndarray, shapes: Sequence[Shape], dtypes: Sequence[str]
) -> np.ndarray:
    """Check shape (one of `shapes`) and dtype (one of `dtypes`); floats must be finite.

    Returns a native-byte-order contiguous array, floats cast to float32 (checked finite after
    the cast); the error names the field, the expected and the received shape and dtype.
    """
    wanted = " or ".join(describe(shape, "|".join(dtypes)) for shape in shapes)
    got = describe(array.shape, str(array.dtype))
    if array.dtype.kind not in "biuf" or array.dtype.name not in dtypes:
        raise RequestError(422, f"field '{field}' must be {wanted}, got {got}", field)
    if not any(_matches(array, shape) for shape in shapes):
        raise RequestError(422, f"field '{field}' must be {wanted}, got {got}", field)
    if array.dtype.kind == "f":
        # the models compute in float32: 1e300 is finite in float64 and infinite once cast
        with np.errstate(over="ignore"):
            array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise RequestError(
                422, f"field '{field}' contains NaN or infinite values (as float32)", field
            )
    return np.ascontiguousarray(array.astype(array.dtype.newbyteorder("="), copy=False))


def check_finite_result(what: str, *values: np.ndarray | float) -> None:
    """A model output that is NaN or infinite is never a success: 422 naming the input range."""
    if not all(np.isfinite(np.asarray(value)).all() for value in values):
        raise RequestError(
            422,
            f"the {what} is not finite: the inputs are outside the range the model can compute "
            "in float32",
        )


def optional_int(message: Mapping[str, Any], field: str, low: int, high: int) -> int | None:
    """An optional integer field within `[low, high]`."""
    value = message.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(422, f"field '{field}' must be an integer in [{low}, {high}]", field)
    return value


def optional_str(message: Mapping[str, Any], field: str) -> str | None:
    value = message.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(422, f"field '{field}' must be a string", field)
    return value


def required(message: Mapping[str, Any], field: str) -> Any:
    if message.get(field) is None:
        raise RequestError(422, f"field '{field}' is required", field)
    return message[field]
