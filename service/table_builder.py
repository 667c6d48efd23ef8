"""Arrow record batches -> a dataset's stored arrays and its schema (core.dataset_schema).

The readers in service/tables.py (CSV, Parquet, JSON records, X/y arrays) all feed record
batches to one TableBuilder, which decides each column's kind once, from the first batch's
types, and then copies every batch into arrays allocated once for all rows: numeric features
into one float block (NaN where missing) next to the calendar features of date columns (engine
.calendar), categorical ones into int32 codes, the target into y.
The API holds about the stored arrays, never the file's text as Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.dataset_schema import (COLUMN_KINDS, ColumnInfo, DatasetSchema, TargetInfo,
                                 beyond_float, date_info, numeric_infos, numeric_targets,
                                 whole_classes)
from engine.calendar import date_features, feature_names
from service import cells
from service.errors import invalid
from service.upload_limits import DatasetLimits

FLOAT_DTYPES = {"float32": np.float32, "float64": np.float64}
ID_MIN_ROWS = 20
"""A text column whose every value differs is taken for an id from this many rows on."""
COMPACT_ROWS = 1 << 16
"""Rows moved at a time when rows without a target are left out."""
FREE_TEXT_MIN_ROWS = 100
"""...and one with more distinct values than half its rows for free text, from this many."""


@dataclass
class TableOptions:
    """What the uploader said about the table (form fields, or the JSON body's fields)."""

    target: list[str] | None = None         # default: the last column
    ignore: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)   # declared kinds, `columns=`
    dtype: str = "float32"
    limits: DatasetLimits = field(default_factory=DatasetLimits)


@dataclass
class Table:
    """A parsed dataset: the arrays core.dataset_schema describes, and the schema itself."""

    numeric: np.ndarray       # (n, p) float32/64, NaN where missing
    codes: np.ndarray         # (n, q) int32, -1 where missing
    y: np.ndarray             # (n,) or (n, k)
    schema: DatasetSchema

    @property
    def n_rows(self) -> int:
        return len(self.y)


def is_numeric(kind: pa.DataType) -> bool:
    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind) or pa.types.is_null(kind))


def is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def is_bytes(kind: pa.DataType) -> bool:
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def undictionary(kind: pa.DataType) -> pa.DataType:
    """What a column's values are: a dictionary of numbers or bytes (Parquet read as a
    dictionary, or written from one) is planned as its values' type."""
    return kind.value_type if pa.types.is_dictionary(kind) and not is_text(kind) else kind


def is_temporal(kind: pa.DataType) -> bool:
    return pa.types.is_temporal(kind)


class Categories:
    """A text column's distinct values, each given a code as it first appears; at most `cap`
    (beyond it the column is marked and its values no longer kept, bounding memory)."""

    def __init__(self, cap: int):
        self.cap, self.index, self.overflow = cap, {}, False

    def codes(self, values: pa.Array) -> np.ndarray:
        """(n,) int32 codes of canonical text (cells.category_array), -1 for a missing value.
        Two words with one meaning ("2007", "2007.0") share a code."""
        encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
        words = encoded.dictionary.to_pylist()
        lookup = np.full(len(words) + 1, -1, dtype=np.int32)
        for i, word in enumerate(words):
            if word is None:
                continue
            code = self.index.get(word)
            if code is None and not self.overflow:
                if len(self.index) >= self.cap:
                    self.overflow = True
                else:
                    code = self.index[word] = len(self.index)
            lookup[i] = -1 if code is None else code
        positions = pc.fill_null(encoded.indices, len(words)).to_numpy(zero_copy_only=False)
        return lookup[positions]

    def sorted(self) -> tuple[list[str], np.ndarray]:
        """(categories sorted, remap) where remap[old code] is the code in sorted order."""
        words = sorted(self.index, key=self.index.__getitem__)
        order = sorted(range(len(words)), key=words.__getitem__)
        remap = np.empty(len(words), dtype=np.int32)
        remap[order] = np.arange(len(words), dtype=np.int32)
        return [words[i] for i in order], remap


@dataclass
class Plan:
    """What happens to one column."""

    name: str
    role: str                    # "feature", "target" or "ignored"
    kind: str                    # numeric, categorical, date or ignored
    slot: int = -1               # (first) column in the numeric/codes block (or y), -1 if not
    declared: bool = False       # stored
    problem: str | None = None
    categories: Categories | None = None
    features: list[str] | None = None   # a date column's calendar features, from `slot` on

    @property
    def width(self) -> int:
        """Columns taken in the numeric block (a date: one per feature)."""
        return len(self.features) if self.features else 1


class TableBuilder:
    """Copies record batches of one layout into a Table. Build with the column names and arrow
    types (CSV: after type inference; Parquet: its schema) and an upper bound of the rows."""

    def __init__(self, names: list[str], types: list[pa.DataType], options: TableOptions,
                 capacity: int):
        self.options = options
        self.plans = self._plan(names, types, options)
        features = [p for p in self.plans if p.role == "feature"]
        n_num = 0
        for plan in features:
            if plan.kind in ("numeric", "date"):
                plan.slot, n_num = n_num, n_num + plan.width
        for slot, plan in enumerate(p for p in features if p.kind == "categorical"):
            plan.slot = slot
        targets = [p for p in self.plans if p.role == "target"]
        for slot, plan in enumerate(targets):
            plan.slot = slot
        self.target_kind = targets[0].kind
        n_cat = sum(p.kind == "categorical" for p in features)
        dtype = np.dtype(FLOAT_DTYPES[options.dtype])
        row_bytes = n_num * dtype.itemsize + n_cat * 4 + 8 * len(targets)
        limits = options.limits
        capacity = max(0, min(capacity, limits.max_rows + 1))
        # The line count bounds the rows from above (a quoted cell can span lines): rows are
        # counted as they come (reserve), bytes checked here, before anything is held.
        limits.admit(min(capacity, limits.max_rows), capacity * row_bytes)
        self.numeric = np.empty((capacity, n_num), dtype=dtype)
        # Each date's days, kept for the schema's first and last date after rows are dropped.
        self.days = {p.name: np.empty(capacity) for p in features if p.kind == "date"}
        self.codes = np.empty((capacity, n_cat), dtype=np.int32)
        if self.target_kind == "categorical":
            self.y = np.empty(capacity, dtype=np.int64)
        else:
            self.y = np.empty((capacity, len(targets)), dtype=np.float64)
        self.rows = 0

    # -- the layout ----------------------------------------------------------------------------
    @staticmethod
    def _plan(names: list[str], types: list[pa.DataType], options: TableOptions) -> list[Plan]:
        options.limits.admit_columns(len(names))
        blank = [i + 1 for i, name in enumerate(names) if not name.strip()]
        if blank:
            raise invalid("file", f"column {blank[0]} has no name; give every column a name in "
                                  f"the header row")
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in seen:
                raise invalid("file", f"the column name {name!r} appears twice (columns "
                                      f"{seen[name] + 1} and {i + 1}); give each column its "
                                      f"own name")
            seen[name] = i
        listed = f"the columns are {names}"
        target = options.target or [names[-1]]
        unknown = [t for t in target if t not in seen]
        if unknown:
            raise invalid("target", f"column(s) {unknown} are not in the table; {listed}")
        for field_name, given in (("ignore", options.ignore), ("columns", list(options.kinds))):
            unknown = [c for c in given if c not in seen]
            if unknown:
                raise invalid(field_name, f"column(s) {unknown} are not in the table; {listed}")
        for name, kind in options.kinds.items():
            if kind not in COLUMN_KINDS:
                raise invalid("columns", f"{name!r}: unknown kind {kind!r}; valid kinds: "
                                         f"{', '.join(COLUMN_KINDS)}")
        clash = [t for t in target if t in options.ignore or options.kinds.get(t) == "ignored"]
        if clash:
            raise invalid("ignore", f"{clash} is the target; it cannot also be ignored")
        plans = [TableBuilder._plan_column(name, undictionary(kind), name in target, options)
                 for name, kind in zip(names, types)]
        if not any(p.role == "feature" for p in plans):
            raise invalid("target", "leaves no feature column; keep at least one column that "
                                    "is neither the target nor ignored")
        return plans

    @staticmethod
    def _plan_column(name: str, kind: pa.DataType, is_target: bool,
                     options: TableOptions) -> Plan:
        declared = options.kinds.get(name)
        if is_target:
            if declared == "categorical" or (declared is None and is_text(kind)):
                return Plan(name, "target", "categorical",
                            categories=Categories(options.limits.max_categories))
            if declared == "numeric" or is_numeric(kind):
                return Plan(name, "target", "numeric")
            raise invalid("target", f"column {name!r} holds {kind} values, which cannot be a "
                                    f"target; choose a column of numbers or of class names")
        if name in options.ignore or declared == "ignored":
            return Plan(name, "ignored", "ignored", declared=True)
        if declared == "numeric" or (declared is None and is_numeric(kind)):
            return Plan(name, "feature", "numeric", declared=declared is not None)
        if declared == "categorical" or (declared is None and is_text(kind)):
            return Plan(name, "feature", "categorical", declared=declared is not None,
                        categories=Categories(options.limits.max_categories))
        if cells.is_date_type(kind):
            return Plan(name, "feature", "date",
                        features=feature_names(pa.types.is_timestamp(kind)))
        what = "times of day or durations" if is_temporal(kind) else f"{kind} values"
        unit = "seconds" if is_temporal(kind) else "numbers"
        fix = (f"ignore it (ignore={name}), or declare its kind (columns={{\"{name}\": "
               f"\"numeric\"}} for {unit}, or \"categorical\")")
        return Plan(name, "ignored", "ignored", problem=f"holds {what}; {fix}")

    # -- the rows ----------------------------------------------------------------------------
    def add(self, batch: pa.RecordBatch) -> None:
        """The next batch.num_rows rows, every column."""
        start = self.reserve(batch.num_rows)
        self.put(start, batch.num_rows, dict(enumerate(batch.columns)))

    def reserve(self, n: int) -> int:
        """Room for the next n rows (their values come through put); returns where they start."""
        start, end = self.rows, self.rows + n
        self.options.limits.admit(end, more_rows=True)
        if end > len(self.y):
            raise invalid("file", "has more rows than its line count allowed for; check the "
                                  "file's line endings and quoting")
        self.rows = end
        return start

    def put(self, start: int, n: int, columns: dict[int, pa.Array | pa.ChunkedArray]) -> None:
        """Values of rows start..start+n for some columns, {column index: values}: all of a
        CSV batch's at once; a Parquet row group's a few columns at a time."""
        end = start + n
        for index, values in columns.items():
            plan = self.plans[index]
            if plan.role == "ignored":
                continue
            if isinstance(values, pa.ChunkedArray):
                values = values.combine_chunks()
            if pa.types.is_dictionary(values.type) and not is_text(values.type):
                values = self._undictionary(plan, values)
            if plan.kind == "categorical":
                codes = plan.categories.codes(self._text(plan, values))
                if plan.role == "target":
                    self.y[start:end] = codes
                else:
                    self.codes[start:end, plan.slot] = codes
                continue
            if plan.kind == "date":
                days = self.days[plan.name][start:end] = cells.days_since_epoch(values)
                self.numeric[start:end, plan.slot:plan.slot + plan.width] = date_features(
                    days, plan.features)
                continue
            numbers = self._numbers(plan, values)
            if plan.role == "target":
                self.y[start:end, plan.slot] = numbers
            else:
                self.numeric[start:end, plan.slot] = self._fits(plan, numbers)

    @staticmethod
    def _undictionary(plan: Plan, values: pa.DictionaryArray) -> pa.Array:
        """A dictionary of bytes as one of text (each distinct value checked once), any other
        dictionary as its plain values (numbers: a fixed size per row)."""
        if not is_bytes(values.type.value_type):
            return values.dictionary_decode()
        try:
            words = values.dictionary.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise invalid(plan.name, "holds bytes that are not UTF-8 text; store the column "
                                     "as UTF-8 strings, or ignore it "
                                     f"(ignore={plan.name})") from None
        return pa.DictionaryArray.from_arrays(values.indices, words)

    def _text(self, plan: Plan, values: pa.Array) -> pa.Array:
        return cells.category_array(values, plan.name)

    def _numbers(self, plan: Plan, values: pa.Array) -> np.ndarray:
        """float64 values (service.cells' rules), NaN for missing; infinities refused."""
        return cells.number_array(values, plan.name)

    def _fits(self, plan: Plan, numbers: np.ndarray) -> np.ndarray:
        if beyond_float(numbers, self.options.dtype) is not None:
            raise invalid(plan.name, f"holds values too large for {self.options.dtype} "
                                     f"(largest allowed {np.finfo(self.options.dtype).max:.3g}); "
                                     f"upload with dtype=float64")
        return numbers

    # -- the end -------------------------------------------------------------------------------
    def finish(self) -> Table:
        if self.rows == 0:
            raise invalid("file", "has a header but no data rows")
        numeric, codes, y = (a[:self.rows] for a in (self.numeric, self.codes, self.y))
        target_plans = [p for p in self.plans if p.role == "target"]
        if self.target_kind == "categorical":
            keep = y >= 0
            classes, remap = target_plans[0].categories.sorted()
            if target_plans[0].categories.overflow:
                cap = self.options.limits.max_categories
                raise invalid("target", f"column {target_plans[0].name!r} has more than {cap} "
                                        f"distinct values: too many classes "
                                        f"(BACKPROP_MAX_CATEGORIES)")
            y[keep] = remap[y[keep]]
        else:
            keep = ~np.isnan(y).any(axis=1)
            classes = None
        dropped = int(len(y) - keep.sum())
        days = {name: a[:self.rows] for name, a in self.days.items()}
        if dropped:
            if dropped == len(y):
                raise invalid("target", "no row has a target value; choose another target")
            numeric, codes, y = (compact(a, keep) for a in (numeric, codes, y))
            days = {name: compact(a, keep) for name, a in days.items()}
        if self.target_kind == "numeric":
            y = numeric_targets(y)
            classes = whole_classes(y, self.options.limits.max_categories)
        numeric_plans = [p for p in self.plans if p.role == "feature" and p.kind == "numeric"]
        slot_names = [f"#{j}" for j in range(numeric.shape[1])]   # dates' features too
        for plan in numeric_plans:
            slot_names[plan.slot] = plan.name
        infos = numeric_infos(slot_names, numeric)
        described = {p.name: infos[p.slot] for p in numeric_plans}
        described.update({p.name: date_info(p.name, p.features, days[p.name])
                          for p in self.plans if p.kind == "date"})
        columns = [described.get(plan.name) or self._column_info(plan, codes)
                   for plan in self.plans if plan.role != "target"]
        target = TargetInfo(names=[p.name for p in target_plans], kind=self.target_kind,
                            classes=classes, rows_dropped=dropped)
        return Table(numeric, codes, y, DatasetSchema(columns=columns, target=target))

    def _column_info(self, plan: Plan, codes: np.ndarray) -> ColumnInfo:
        """A categorical or ignored column's info (numeric ones come from numeric_infos)."""
        info = ColumnInfo(name=plan.name, kind=plan.kind, declared=plan.declared,
                          problem=plan.problem)
        if plan.kind == "categorical":
            column = codes[:, plan.slot]
            categories, remap = plan.categories.sorted()
            present = column >= 0
            column[present] = remap[column[present]]
            info.missing = int((~present).sum())
            info.categories = categories
            info.problem = None if plan.declared and not plan.categories.overflow else \
                text_problem(plan.name, len(categories), len(column) - info.missing,
                             plan.categories.overflow, self.options.limits.max_categories)
        return info


def text_problem(name: str, distinct: int, present: int, overflow: bool,
                 cap: int) -> str | None:
    """Why a text column cannot be one-hot encoded as it is, or None."""
    fix = (f"ignore it (ignore={name}), or declare it categorical (columns={{\"{name}\": "
           f"\"categorical\"}}) to use it anyway")
    if overflow:
        return (f"has more than {cap} distinct values (BACKPROP_MAX_CATEGORIES), like free "
                f"text; ignore it (ignore={name})")
    if present >= ID_MIN_ROWS and distinct == present:
        return f"has a different value in every row, like an id; {fix}"
    if present >= FREE_TEXT_MIN_ROWS and distinct > present / 2:
        return f"has {distinct} distinct values in {present} rows, like free text; {fix}"
    return None


def compact(array: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """array[keep] in place (rows moved forward a chunk at a time), never a full copy."""
    kept = np.flatnonzero(keep)
    for start in range(0, len(kept), COMPACT_ROWS):
        rows = kept[start:start + COMPACT_ROWS]
        array[start:start + len(rows)] = array[rows]
    return array[:len(kept)]


