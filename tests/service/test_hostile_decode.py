"""Arrays built to hurt the decoder, sent over HTTP to a stack of its own: every .npy header
is sized before any data is decompressed, so bombs and lying headers are 413/422 answers that
cost the API no memory, and numbers that fit no array are 422s naming the field."""

from __future__ import annotations

import io
import zipfile

import httpx
import numpy as np
import pytest

from tests.service.helpers import (classifier, module_client, module_stack, npy_bytes,
                                   npz_bytes, trained_records)
from tests.service.hostile_helpers import npy_header, peak_rss, refused, zip_of

MB = 1 << 20
ZEROS = bytes(MB)


stack = module_stack("hostile-decode")
api = module_client()


def upload(api: httpx.Client, content: bytes) -> httpx.Response:
    return api.post("/v1/datasets", files={"file": ("d.npz", content)})


# -- NPZ -------------------------------------------------------------------------------------------
def test_members_without_an_npy_header_are_422_at_once(stack, api):
    """Before: numpy read such a member whole (1 GB here from a 1 MB file; the API peaked at
    1.67 GB), then answered 500, and the memory stayed held."""
    bomb = zip_of({"X.npy": (ZEROS, 1024), "y.npy": npy_bytes(np.zeros(4))})
    assert len(bomb) < 2 * MB
    with peak_rss(stack.api.pid) as memory:
        answer = upload(api, bomb)
    refused(answer, 422, "X", "lacks the .npy header")
    assert memory["grew"] < 40, memory


def test_a_compressed_bomb_over_the_limits_is_413_before_it_is_decompressed(stack, api):
    """1 MB of file declaring 560 MB of float32 zeros (the limit is 512 MiB as stored). Before:
    the API went from 124 to 1182 MB decompressing it, then answered 413."""
    rows, cols = 140_000, 1000
    bomb = _header_then_zeros("X.npy", (rows, cols), "<f4",
                              {"y.npy": npy_bytes(np.zeros(rows, np.int64))})
    assert len(bomb) < 2 * MB
    with peak_rss(stack.api.pid) as memory:
        answer = upload(api, bomb)
    refused(answer, 413, "X", "BACKPROP_MAX_DATASET_BYTES")
    assert memory["grew"] < 40, memory


def _header_then_zeros(name: str, shape: tuple, descr: str, others: dict[str, bytes]) -> bytes:
    """A zip whose member `name` is a .npy header for `shape`, then that many zero bytes."""
    nbytes = int(np.prod(shape)) * np.dtype(descr).itemsize
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        with archive.open(name, "w", force_zip64=True) as member:
            member.write(npy_header(shape, descr))
            for start in range(0, nbytes, MB):
                member.write(ZEROS[:min(MB, nbytes - start)])
        for other, content in others.items():
            archive.writestr(other, content)
    return buf.getvalue()


@pytest.mark.parametrize("shape,status,words", [
    ((10**12, 10), 413, "BACKPROP_MAX_DATASET_ROWS"),
    ((1000, 10**9), 413, "BACKPROP_MAX_DATASET_BYTES"),
    ((2**62, 2**62), 413, "BACKPROP_MAX_DATASET_ROWS"),
])
def test_huge_declared_shapes_are_413_not_memory_errors(api, shape, status, words):
    """The header declares the shape; 16 bytes of data follow. Before: MemoryError, 500."""
    npz = zip_of({"X.npy": npy_header(shape) + bytes(16), "y.npy": npy_bytes(np.zeros(3))})
    refused(upload(api, npz), status, "X", words)


@pytest.mark.parametrize("data,words", [
    (bytes(10), "holds 10 bytes of data where its .npy header declares 80"),
    (bytes(81), "holds more data than its .npy header declares"),
], ids=["short", "long"])
def test_a_member_with_more_or_less_data_than_declared_is_422(api, data, words):
    npz = zip_of({"X.npy": npy_header((10, 2)) + data, "y.npy": npy_bytes(np.zeros(10))})
    refused(upload(api, npz), 422, "X", words)


@pytest.mark.parametrize("header,words", [
    (b"\x93NUMPY\x02\x00" + (2**31).to_bytes(4, "little"), "header of 2147483648 bytes"),
    (b"\x93NUMPY\x07\x00", "format version 7"),
    (npy_header((2, 2), "|O"), "Python objects"),
    (npy_header((2, 2), "<c16"), "must be numeric"),
    (b"\x93NUMPY\x01\x00\x20\x00" + b"{'descr': '<f4', 'shape': (((((".ljust(31) + b"\n",
     "unreadable .npy header"),
], ids=["4-GB-header", "version-7", "objects", "complex", "broken-header"])
def test_bad_npy_headers_are_422(api, header, words):
    npz = zip_of({"X.npy": header + bytes(64), "y.npy": npy_bytes(np.zeros(2))})
    refused(upload(api, npz), 422, "X", words)


def test_a_label_of_2_64_minus_1_is_refused_not_stored_as_minus_1(api):
    y = np.array([0, 1, 2**64 - 1], dtype=np.uint64)
    answer = upload(api, npz_bytes(X=np.zeros((3, 2), np.float32), y=y))
    refused(answer, 422, "y", "18446744073709551615", "2**63")


def test_a_good_npz_still_round_trips_exactly(api):
    X = np.asfortranarray(np.random.default_rng(0).normal(size=(50, 3))).astype(">f8")
    y = np.arange(50, dtype=np.uint8) % 3
    answer = upload(api, npz_bytes(X=X, y=y))
    assert answer.status_code == 201, answer.text
    meta = answer.json()
    assert (meta["n_samples"], meta["n_features"], meta["classes"]) == (50, 3, 3)
    compressed = io.BytesIO()
    np.savez_compressed(compressed, X=X.astype(np.float32), y=y)
    again = upload(api, compressed.getvalue()).json()
    assert again["sha256"] == meta["sha256"]


# -- JSON numbers -----------------------------------------------------------------------------------
def test_the_json_integer_10_to_the_400_is_422_naming_the_field(api):
    raw = b'{"X": [[1, ' + str(10**400).encode() + b']], "y": [0]}'
    refused(api.post("/v1/datasets", content=raw, headers={"Content-Type": "application/json"}),
            422, "X[0][1]")
    raw = b'{"network": {"layers": [{"units": 2, "activation": "softmax"}], "loss": ' \
        b'"cross_entropy"}, "data": {"X": [[1, ' + str(10**400).encode() + b']], "y": [0]}}'
    refused(api.post("/v1/jobs", content=raw, headers={"Content-Type": "application/json"}),
            422, "data.X[0][1]")


# -- .npy predict bodies --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_id(api) -> str:
    X = np.array([[0, 1], [1, 0], [1, 1], [0, 0]] * 5, dtype=np.float32)
    return trained_records(api, X, np.arange(20) % 3, classifier(hidden=4))["model_id"]


@pytest.mark.parametrize("body,words", [
    (npy_header((10**12, 2)) + bytes(16), "holds 16 bytes of data"),
    (npz_bytes(X=np.zeros((2, 2))), "looks like an NPZ archive"),
    (b"\x93NUMPY\x01\x00\xff\xff", "header of 65535 bytes; at most 10000"),
], ids=["huge-shape", "npz", "long-header"])
def test_npy_predict_bodies_are_sized_from_their_header(stack, api, model_id, body, words):
    with peak_rss(stack.api.pid) as memory:
        answer = api.post(f"/v1/models/{model_id}/predict", content=body,
                          headers={"Content-Type": "application/x-npy"})
    refused(answer, 422, "inputs", words)
    assert memory["grew"] < 40, memory
