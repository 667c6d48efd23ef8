"""The limits on a dataset upload, built once from the settings and checked at two points that
every reader (CSV, Parquet, JSON records, NPZ, JSON X/y) passes through before it does the work:
DatasetLimits.admit_columns (a table's columns, from its header, schema or keys) and
DatasetLimits.admit (its rows and stored bytes), so decode work is bounded by rows x columns."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Settings
from service.errors import invalid


@dataclass(frozen=True)
class DatasetLimits:
    max_rows: int = 1_000_000
    """BACKPROP_MAX_DATASET_ROWS"""
    max_bytes: int = 512 * 1024 * 1024
    """BACKPROP_MAX_DATASET_BYTES: the arrays as stored (features, category codes, target)."""
    max_categories: int = 1000
    """BACKPROP_MAX_CATEGORIES: distinct values of a text column (and classes of a target)."""
    max_columns: int = 5000
    """BACKPROP_MAX_DATASET_COLUMNS: columns of a table, target and ignored ones included."""

    @classmethod
    def of(cls, settings: Settings) -> "DatasetLimits":
        return cls(settings.max_dataset_rows, settings.max_dataset_bytes,
                   settings.max_categories, settings.max_dataset_columns)

    @property
    def decode_budget(self) -> int:
        """Bytes a Parquet file may decode to (values before conversion, text included),
        counted from the decoded batches."""
        return 4 * self.max_bytes

    def admit_columns(self, columns: int, field: str = "file") -> None:
        """413 naming the setting unless a table of `columns` columns (or more: a reader may
        stop counting once past the limit) fits."""
        if columns > self.max_columns:
            raise invalid(field, f"the table has at least {columns} columns; this service takes "
                                 f"at most {self.max_columns} (BACKPROP_MAX_DATASET_COLUMNS): "
                                 f"upload fewer columns, or NPZ arrays X and y for wide numeric "
                                 f"data", 413)

    def admit(self, rows: int, stored_bytes: int = 0, field: str = "file",
              more_rows: bool = False) -> None:
        """413 naming the setting unless `rows` rows taking `stored_bytes` as stored fit
        (`more_rows`: the reader knows there are more than `rows`, not how many)."""
        if rows > self.max_rows:
            counted = f"more than {self.max_rows}" if more_rows else str(rows)
            raise invalid(field, f"the dataset has {counted} rows; this service takes at most "
                                 f"{self.max_rows} (BACKPROP_MAX_DATASET_ROWS)", 413)
        if stored_bytes > self.max_bytes:
            raise invalid(field, f"the dataset takes {stored_bytes} bytes as stored ({rows} "
                                 f"rows); this service takes at most {self.max_bytes} "
                                 f"(BACKPROP_MAX_DATASET_BYTES): upload fewer rows or columns, "
                                 f"or ignore some (ignore=col,col)", 413)
