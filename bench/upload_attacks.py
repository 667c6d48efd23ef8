"""The uploads of issue 22's attacks on the decoders (items 4, 6 and 9), for the rows of
bench/isolation.py: each method sends one, as a tenant would, and checks the answer."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


class UploadAttacks:
    """Issue 22's attacks on the upload decoders (items 4, 6 and 9), each sent back to back."""

    def __init__(self, url: str, key: str):
        self.client = httpx.Client(base_url=url, timeout=600,
                                   headers={"Authorization": f"Bearer {key}"})
        rows = 40_000   # a 20 KB text in every row, dictionary-encoded, no Arrow schema
        text = pa.array(["a" * 20_000]).take(pa.array(np.zeros(rows, np.int32)))
        buf = io.BytesIO()
        pq.write_table(pa.table({"t": text, "y": pa.array(np.arange(rows) % 2)}), buf,
                       store_schema=False, compression="zstd")
        self.bomb = buf.getvalue()
        self.keys = (b'{"name": "keys", "records": ['
                     + b",".join(b'{"k%05d": 1}' % i for i in range(10_000)) + b"]}")
        rng = np.random.default_rng(0)
        self.wide = "\n".join([",".join(f"c{i}" for i in range(100_000))] + [
            ",".join(map(str, rng.integers(0, 9, 100_000))) for _ in range(40)]).encode()
        buf = io.BytesIO()
        pq.write_table(pa.table({f"c{i}": pa.array(np.zeros(40)) for i in range(100_000)}),
                       buf)
        self.wide_parquet_file = buf.getvalue()

    def _upload(self, statuses: tuple[int, ...], **kwargs) -> None:
        answer = self.client.post("/v1/datasets", **kwargs)
        assert answer.status_code in statuses, answer.text[:300]
        if answer.status_code == 201:
            self.client.delete(f"/v1/datasets/{answer.json()['id']}")

    def parquet_bomb(self) -> None:
        self._upload((201,), files={"file": ("bomb.parquet", self.bomb)})

    def records_with_a_key_each(self) -> None:
        self._upload((413,), content=self.keys, headers={"Content-Type": "application/json"})

    def wide_csv(self) -> None:
        self._upload((413,), files={"file": ("wide.csv", self.wide)})

    def wide_parquet(self) -> None:
        self._upload((413,), files={"file": ("wide.parquet", self.wide_parquet_file)})

    def list_datasets(self) -> None:
        assert self.client.get("/v1/datasets").status_code == 200
