"""What a cell means: the one set of rules that every table path applies, at upload (CSV,
Parquet, JSON records) and at predict (JSON records, CSV, inference-protocol tensors), so a
value stored at upload is the value looked up at predict.

    missing    null, an absent key, NaN, or the text "", NA, N/A, NaN, nan, null, NULL, ?
    boolean    true/false (JSON), or the text true/True/TRUE/false/False/FALSE: 1 or 0 in a
               numeric column, "true" or "false" in a categorical one
    number     a JSON number or numeric text; infinite ones (inf, -inf, 1e400) are refused,
               naming the column
    category   text as written, except that a decimal number loses its trailing zeros
               ("2007.0" and the JSON number 2007.0 are both the category "2007", "1.50" is
               "1.5") and booleans are "true"/"false"
    date       ISO 8601 text (2024-01-31, 2024-01-31T13:45:00; an offset such as +02:00 or Z
               converted to UTC) or a date/timestamp type, as days since 1970-01-01 (fractions
               for times); at predict also a number of days; engine.calendar derives features

Pure functions: no I/O; errors are ApiError 422 naming the column.
"""

from __future__ import annotations

import datetime
import math
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from service.errors import invalid

MISSING_WORDS = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "?")
"""Text that means a missing value (pyarrow's CSV null_values, and predict's)."""
_MISSING = frozenset(MISSING_WORDS)
TRUE_WORDS = ("true", "True", "TRUE")
FALSE_WORDS = ("false", "False", "FALSE")
BOOLEANS = {**dict.fromkeys(TRUE_WORDS, True), **dict.fromkeys(FALSE_WORDS, False)}
DECIMAL = re.compile(r"([+-]?\d+)\.(\d*?)0*")
WHOLE = re.compile(r"[+-]?\d+")
FRACTION = re.compile(r"[+-]?\d+\.\d*[1-9]")
"""Categories that are numbers as canonical_text writes them: whole, or with a fraction that
ends in a non-zero digit."""
SPELLED_ZEROS = 6
"""Most trailing zeros after a decimal point that spellings() lists ("2007.000000", as
printf's %f writes 2007); predict's paths read any number of them."""
WHOLE_LIMIT = 2.0 ** 53
"""Floats below this magnitude that are whole print as their digits (exact in float64)."""


def infinite(column: str) -> Exception:
    return invalid(column, "holds an infinite number (inf, -inf, or beyond ±1.8e308 such as "
                           "1e400); send a finite number, or null for a missing value")


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and value in _MISSING)


# -- categories ------------------------------------------------------------------------------
def canonical_text(text: str) -> str:
    """The category a piece of text stands for (see the module's rules)."""
    if text in BOOLEANS:
        return "true" if BOOLEANS[text] else "false"
    decimal = DECIMAL.fullmatch(text)
    if decimal:
        return decimal[1] + (f".{decimal[2]}" if decimal[2] else "")
    return text


def spellings(category: str, zeros: int = SPELLED_ZEROS) -> list[str]:
    """The texts canonical_text reads as `category`, itself first: every case of a boolean,
    and a number with a decimal point and up to `zeros` trailing zeros ("2007.", "2007.0",
    "1.50"). For lookups that cannot apply the rules, such as the ONNX graph's."""
    if category in ("true", "false"):
        return [w for w, truth in BOOLEANS.items() if truth == (category == "true")]
    if WHOLE.fullmatch(category):
        return [category] + [f"{category}.{'0' * n}" for n in range(zeros + 1)]
    if FRACTION.fullmatch(category):
        return [category + "0" * n for n in range(zeros + 1)]
    return [category]


def category_text(value, column: str = "value") -> str | None:
    """A raw value (JSON, or a NumPy scalar's item()) as the category it stands for; None for
    a missing one."""
    if is_missing(value) or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            raise infinite(column)
        if value.is_integer() and abs(value) < WHOLE_LIMIT:
            return str(int(value))
        return repr(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value)
    return None if text in _MISSING else canonical_text(text)


def category_array(values: pa.Array, column: str) -> pa.Array:
    """An arrow column of any type as canonical category text (null where missing): the rules
    are applied once per distinct value, not once per row."""
    if pa.types.is_floating(values.type):
        numbers = values.to_numpy(zero_copy_only=False)
        if np.isinf(numbers).any():
            raise infinite(column)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
            or pa.types.is_dictionary(values.type)):
        try:
            values = values.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise invalid(column, f"cannot be read as text ({exc})") from None
    encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
    words = [None if w is None or w in _MISSING else canonical_text(w)
             for w in encoded.dictionary.to_pylist()]
    return pa.DictionaryArray.from_arrays(encoded.indices, pa.array(words, pa.string()))


# -- numbers ---------------------------------------------------------------------------------
def number(value, column: str) -> float:
    """A raw value in a numeric column (NaN: missing); booleans are 1 and 0, numeric text is
    read."""
    if is_missing(value):
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip() in BOOLEANS:
        return float(BOOLEANS[value.strip()])
    if not isinstance(value, (int, float, str)):
        raise invalid(column, f"must be a number or null, not {type(value).__name__}")
    try:
        result = float(value)
    except (ValueError, OverflowError):
        raise invalid(column, f"must be a number or null, not {value!r}") from None
    if math.isinf(result):
        raise infinite(column)
    return result


def number_array(values: pa.Array, column: str) -> np.ndarray:
    """An arrow column as float64 numbers, NaN where missing: numbers as they are, booleans
    as 1 and 0, text read as numbers (booleans and missing words included), dates as days
    since 1970-01-01, times of day and durations as seconds; an infinite value, or text that is
    no number, is refused."""
    kind = values.type
    if is_date_type(kind):
        return days_since_epoch(values)
    if pa.types.is_time(kind) or pa.types.is_duration(kind):
        micros = values.cast(pa.time64("us") if pa.types.is_time(kind) else pa.duration("us"))
        return micros.cast(pa.int64()).cast(pa.float64()).to_numpy(zero_copy_only=False) / 1e6
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or \
            pa.types.is_dictionary(kind):
        text = values.cast(pa.string())
        words = pa.array(MISSING_WORDS + TRUE_WORDS + FALSE_WORDS)
        if pc.any(pc.is_in(text, words)).as_py():
            return np.array([number(v, column) for v in text.to_pylist()], dtype=np.float64)
        try:
            values = pc.utf8_trim_whitespace(text).cast(pa.float64())
        except pa.ArrowInvalid:
            for v in text.to_pylist():
                number(v, column)  # names the first value that is not a number
            raise invalid(column, "holds text that is not a number") from None
    try:
        numbers = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise invalid(column, f"holds values that are not numbers ({exc}); declare it "
                              f"categorical or clean it") from None
    if np.isinf(numbers).any():
        raise infinite(column)
    return numbers


def finite_numbers(numbers: np.ndarray, column: str) -> np.ndarray:
    """numbers (NaN allowed: missing) with no infinity, else a 422 naming the column."""
    if numbers.dtype.kind == "f" and np.isinf(numbers).any():
        raise infinite(column)
    return numbers


# -- dates -----------------------------------------------------------------------------------
SECONDS_PER_DAY = 86400.0
EPOCH = datetime.date(1970, 1, 1).toordinal()
ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
                      r"(Z|[+-]\d{2}:?\d{2})?)?")
"""ISO 8601 dates, with an optional time (minutes, seconds, fractions) and UTC offset."""
DAYS_RANGE = (datetime.date.min.toordinal() - EPOCH, datetime.date.max.toordinal() - EPOCH + 1)
"""Days since 1970 that are dates (years 1 to 9999): what a number in a date column may be."""
DATE_HELP = ("must be an ISO 8601 date such as 2024-01-31 or 2024-01-31T12:00:00 (a UTC offset "
             "such as +02:00 or Z is converted to UTC), days since 1970-01-01, or null")


def is_date_type(kind: pa.DataType) -> bool:
    """Arrow types that hold dates: date32/64 and timestamps (not times of day, durations)."""
    return pa.types.is_date(kind) or pa.types.is_timestamp(kind)


def iso_days(text: str) -> tuple[float, bool] | None:
    """(days since 1970-01-01 in UTC, whether a time was written) of ISO 8601 text, or None
    when it is no date. A time with an offset (Z, +02:00) is converted to UTC; one without
    is taken as it is."""
    parts = ISO_DATE.fullmatch(text.strip())
    if parts is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = parts.groups()
    try:
        days = datetime.date(int(year), int(month), int(day)).toordinal() - EPOCH
    except ValueError:                  # 2024-02-30, month 13
        return None
    if hour is None:
        return float(days), False
    seconds = int(hour) * 3600 + int(minute) * 60 + int(second or 0) + float(fraction or 0)
    if int(hour) > 23 or int(minute) > 59 or int(second or 0) > 59:
        return None
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = int(zone[1:3]) * 3600 + int(zone[-2:]) * 60
        if int(zone[1:3]) > 23 or int(zone[-2:]) > 59:
            return None
        seconds -= sign * offset
    return days + seconds / SECONDS_PER_DAY, True


def days_since_epoch(values: pa.Array) -> np.ndarray:
    """A date or timestamp column as float64 days since 1970-01-01 (fractions of a day for
    times; timestamps with a time zone in UTC), NaN where missing."""
    kind = values.type
    if pa.types.is_timestamp(kind):
        micros = values.cast(pa.timestamp("us", tz=kind.tz)).cast(pa.int64())
        return micros.cast(pa.float64()).to_numpy(zero_copy_only=False) / (
            SECONDS_PER_DAY * 1e6)
    if pa.types.is_date(kind):
        return values.cast(pa.date32()).cast(pa.int32()).cast(pa.float64()).to_numpy(
            zero_copy_only=False)
    raise ValueError(f"{kind} is not a date or timestamp type")


def text_days(values: pa.Array) -> tuple[np.ndarray, bool] | None:
    """(float64 days since 1970, NaN where missing; whether any value has a time) of a text
    column whose every present value is an ISO 8601 date, else None. Each distinct value is
    read once."""
    encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(
        values.cast(pa.string()))
    read, timed = [], False
    for word in encoded.dictionary.to_pylist():
        parsed = None if is_missing(word) else iso_days(word)
        if parsed is None and not is_missing(word):
            return None
        read.append(math.nan if parsed is None else parsed[0])
        timed = timed or (parsed is not None and parsed[1])
    lookup = np.array(read + [math.nan], dtype=np.float64)
    positions = pc.fill_null(encoded.indices, len(read)).to_numpy(zero_copy_only=False)
    return lookup[positions], timed


def date_text_array(values: pa.Array) -> pa.Array | None:
    """Text that is all ISO 8601 dates (or missing) as a date32 column, or a UTC timestamp one
    when any value has a time; None when some value is not a date (or none is present)."""
    read = text_days(values)
    if read is None or np.isnan(read[0]).all():
        return None
    days, timed = read
    missing = np.isnan(days)
    if not timed:
        return pa.array(np.where(missing, 0, days).astype(np.int32), pa.int32(),
                        mask=missing).cast(pa.date32())
    micros = np.round(np.where(missing, 0, days) * SECONDS_PER_DAY * 1e6).astype(np.int64)
    return pa.array(micros, pa.int64(), mask=missing).cast(pa.timestamp("us", tz="UTC"))


def date_array(values: pa.Array, column: str) -> np.ndarray:
    """A column of any type as float64 days since 1970 (NaN where missing): dates and
    timestamps as they are, text read as ISO 8601, numbers as days; anything else refused,
    naming the column and the first value that is no date."""
    if is_date_type(values.type):
        return days_since_epoch(values)
    if pa.types.is_null(values.type):
        return np.full(len(values), np.nan)
    if is_text_type(values.type):
        read = text_days(values)
        if read is not None:
            return read[0]
    return np.array([date_days(v, column) for v in values.to_pylist()], dtype=np.float64)


def is_text_type(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or \
        pa.types.is_dictionary(kind)


def cell_value(value, column: str, kind: str):
    """A raw predict value for a column of `kind`: float for numeric, text for categorical,
    days since 1970 for date."""
    if kind == "categorical":
        return category_text(value, column)
    if kind == "date":
        return date_days(value, column)
    return number(value, column)


def date_days(value, column: str) -> float:
    """One raw date value (ISO 8601 text, a date or datetime object, or a number of days since
    1970) as days since 1970, NaN when missing."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if is_missing(value):
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        days = number(value, column)
        if not DAYS_RANGE[0] <= days < DAYS_RANGE[1]:
            raise invalid(column, f"{DATE_HELP}; {value!r} days is beyond the years 1 to 9999")
        return days
    if isinstance(value, datetime.date):
        value = value.isoformat()
    parsed = iso_days(value) if isinstance(value, str) else None
    if parsed is None:
        raise invalid(column, f"{DATE_HELP}, not {value!r}")
    return parsed[0]
