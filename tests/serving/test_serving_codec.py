"""The wire format: npy-in-msgpack round trips, and every malformed input gives a clear 4xx."""

from __future__ import annotations

import io
import pickle

import msgpack
import numpy as np
import pytest

from serving.codec import RequestError, check_array, decode_array, pack, unpack
from serving.schemas import EncoderInfo, ModelInfo, parse_embed, parse_plan

INFO = ModelInfo(
    name="arm",
    image_size=64,
    action_dim=2,
    state_dim=2,
    action_low=[-1, -1],
    action_high=[1, 1],
    horizon=2,
    control_fps=10.0,
    num_samples=16,
    num_iterations=2,
)
ENCODER = EncoderInfo(patch_size=16, tubelet_size=2, embed_dim=192)


def plan_message(**overrides: object) -> dict[str, object]:
    message: dict[str, object] = {
        "frames": np.zeros((1, 64, 64, 3), np.uint8),
        "state": np.zeros(2, np.float32),
        "goal": np.zeros((64, 64, 3), np.uint8),
    }
    message.update(overrides)
    return unpack(pack(message), ["frames", "state", "goal", "previous_plan", "model", "seed"])


def test_arrays_round_trip_through_msgpack() -> None:
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    message = unpack(pack({"x": array, "name": "a", "seed": 3}), ["x", "name", "seed"])
    assert message["name"] == "a" and message["seed"] == 3
    np.testing.assert_array_equal(decode_array("x", message["x"]), array)


def test_parse_plan_accepts_both_frame_layouts_and_normalises_dtypes() -> None:
    request = parse_plan(
        plan_message(frames=np.zeros((64, 64, 3), np.uint8), state=np.ones(2)), {"arm": INFO}, "arm"
    )
    assert request.frames.shape == (1, 64, 64, 3)
    assert request.state.shape == (1, 2) and request.state.dtype == np.float32
    assert request.model == "arm" and request.previous_plan is None


def test_parse_plan_resizes_other_camera_sizes() -> None:
    # a 48x80 camera: short side to 64, centre crop; a flat image stays flat
    frames = np.full((48, 80, 3), 200, np.uint8)
    goal = np.full((1, 128, 128, 3), 9, np.uint8)[0]
    request = parse_plan(plan_message(frames=frames, goal=goal), {"arm": INFO}, "arm")
    assert request.frames.shape == (1, 64, 64, 3) and request.goal.shape == (64, 64, 3)
    assert (request.frames == 200).all() and (request.goal == 9).all()


@pytest.mark.parametrize(
    ("overrides", "status", "field", "words"),
    [
        ({"frames": np.zeros((1, 8, 32, 3), np.uint8)}, 422, "frames", "within [16, 1024]"),
        ({"goal": np.zeros((2000, 64, 3), np.uint8)}, 422, "goal", "2000x64"),
        ({"frames": np.zeros((2, 64, 64, 3), np.uint8)}, 422, "frames", "(1, *, *, 3)"),
        ({"frames": np.zeros((1, 64, 64, 3), np.float32)}, 422, "frames", "uint8"),
        ({"state": np.array([0.0, np.nan], np.float32)}, 422, "state", "NaN"),
        ({"state": np.zeros(3, np.float32)}, 422, "state", "(2,)"),
        ({"previous_plan": np.full((2, 2), np.inf)}, 422, "previous_plan", "infinite"),
        ({"previous_plan": np.zeros((3, 2))}, 422, "previous_plan", "(2, 2)"),
        ({"goal": b"\x93NUMPY garbage"}, 422, "goal", "not a valid .npy"),
        ({"goal": "a string"}, 422, "goal", ".npy bytes"),
        ({"model": "nope"}, 404, "model", "unknown model"),
        ({"seed": -1}, 422, "seed", "integer"),
        ({"state": None}, 422, "state", "required"),
    ],
)
def test_parse_plan_rejects_bad_fields(
    overrides: dict[str, object], status: int, field: str, words: str
) -> None:
    with pytest.raises(RequestError) as caught:
        parse_plan(plan_message(**overrides), {"arm": INFO}, "arm")
    assert caught.value.status == status
    assert caught.value.field == field
    assert words in caught.value.message


def test_truncated_npy_names_the_field() -> None:
    raw = pack({"frames": np.zeros((1, 64, 64, 3), np.uint8)})
    message = msgpack.unpackb(raw)
    message["frames"] = message["frames"][:-10]
    with pytest.raises(RequestError, match=r"field 'frames' is not a valid \.npy array"):
        decode_array("frames", message["frames"])


def test_truncated_msgpack_body_is_a_400() -> None:
    body = pack({"frames": np.zeros((8, 8), np.uint8)})
    with pytest.raises(RequestError) as caught:
        unpack(body[: len(body) // 2], ["frames"])
    assert caught.value.status == 400


@pytest.mark.parametrize("body", [b"", b"\x01", msgpack.packb([1, 2]), b"\xc1garbage"])
def test_non_map_bodies_are_rejected(body: bytes) -> None:
    with pytest.raises(RequestError) as caught:
        unpack(body, ["frames"])
    assert caught.value.status == 400


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(RequestError, match="unknown field 'colour'"):
        unpack(pack({"colour": 1}), ["frames"])


def test_pickled_payloads_are_never_loaded() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RequestError, match=r"not a valid \.npy"):
        decode_array("frames", buffer.getvalue())
    with pytest.raises(RequestError, match=r"not a valid \.npy"):
        decode_array("frames", pickle.dumps(np.zeros(3)))


def test_trailing_bytes_are_rejected() -> None:
    raw = msgpack.unpackb(pack({"x": np.zeros(3)}))["x"] + b"extra"
    with pytest.raises(RequestError, match="extra bytes"):
        decode_array("x", raw)


def test_check_array_returns_native_byte_order() -> None:
    big_endian = np.arange(4, dtype=">f4")
    checked = check_array("x", big_endian, [(4,)], ["float32"])
    assert checked.dtype == np.dtype("<f4") or checked.dtype.isnative
    np.testing.assert_array_equal(checked, [0, 1, 2, 3])


def test_parse_embed_checks_tubelets_patches_and_limits() -> None:
    message = unpack(pack({"frames": np.zeros((2, 64, 64, 3), np.uint8)}), ["frames", "pool"])
    request = parse_embed(message, ENCODER, max_frames=8, max_size=128)
    assert request.frames.shape == (1, 2, 64, 64, 3) and not request.batched
    for frames, words in [
        (np.zeros((3, 64, 64, 3), np.uint8), "tubelet"),
        (np.zeros((2, 60, 64, 3), np.uint8), "patch size"),
        (np.zeros((16, 64, 64, 3), np.uint8), "limit of 8"),
        (np.zeros((2, 256, 256, 3), np.uint8), "<= 128"),
        (np.zeros((2, 64, 64, 4), np.uint8), "must be"),
    ]:
        bad = unpack(pack({"frames": frames}), ["frames"])
        with pytest.raises(RequestError, match=words):
            parse_embed(bad, ENCODER, max_frames=8, max_size=128)


def npy_header(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "shape", [(100_000, 100_000, 3), (1_000_000, 1_000_000, 3), (4_000, 4_000, 3)]
)
def test_npy_header_claiming_more_than_the_body_is_a_422_before_allocating(
    shape: tuple[int, ...],
) -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(RequestError) as caught:
            decode_array("frames", npy_header(shape) + b"\x00" * 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.status == 422 and caught.value.field == "frames"
    assert "claims shape" in caught.value.message
    assert peak < 1024 * 1024, f"{peak} bytes allocated for a {shape} claim"


@pytest.mark.parametrize("shape", [(-1, -2), (-4,)])
def test_npy_header_with_negative_sizes_is_a_422(shape: tuple[int, ...]) -> None:
    with pytest.raises(RequestError, match=r"not a valid \.npy") as caught:
        decode_array("state", npy_header(shape, "<f4") + b"\x00" * 8)
    assert caught.value.status == 422


@pytest.mark.parametrize(
    "array",
    [np.arange(6, dtype=">f4").reshape(2, 3), np.asfortranarray(np.arange(6).reshape(2, 3))],
)
def test_decode_array_keeps_byte_order_and_fortran_layout_values(array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    decoded = decode_array("x", buffer.getvalue())
    np.testing.assert_array_equal(decoded, array)
    assert decoded.flags.writeable


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("state", np.array([1e300, 0.0])),  # float64, infinite as float32
        ("state", np.array([-1e39, 0.0])),
        ("previous_plan", np.full((2, 2), 1e300)),
    ],
)
def test_floats_are_checked_finite_after_the_cast_to_float32(field: str, value: object) -> None:
    with pytest.raises(RequestError, match="infinite") as caught:
        parse_plan(plan_message(**{field: value}), {"arm": INFO}, "arm")
    assert caught.value.status == 422 and caught.value.field == field
