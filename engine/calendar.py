"""Calendar features of dates held as days since 1970-01-01 (fractions of a day for times, NaN
for a missing date): the year, month, day of the week and of the year, and the hour.

One formula serves every path: `calendar_features` uses only + - * /, floor and round, so the
same lines compute NumPy arrays here (at upload and at predict) and ONNX nodes in
service/onnx_export.py (which passes symbols that record the operations). The civil date comes
from Howard Hinnant's days-to-civil algorithm ("chrono-compatible low-level date algorithms"),
written with floor division so that dates before 1970 work too. In float64 every quotient below
is of whole numbers far below 2**53, so each floor is exact.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

DATE_FEATURES = {
    "year": "the year, such as 2012",
    "month": "1 (January) to 12",
    "weekday": "0 (Monday) to 6 (Sunday)",
    "yearday": "1 (1 January) to 366",
    "hour": "0 to 23 (UTC), for dates with a time",
}
"""The features a date column becomes, in this order; `hour` only for dates with a time."""

MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000
EPOCH_SHIFT = 719_468
"""Days from 0000-03-01 to 1970-01-01: the algorithm counts from a 1 March."""
DAYS_PER_ERA = 146_097
"""Days in 400 Gregorian years."""


def feature_names(with_time: bool) -> list[str]:
    """The features of a date column: every one, or all but the hour for plain dates."""
    return [f for f in DATE_FEATURES if with_time or f != "hour"]


def calendar_features(days, floor: Callable, round_: Callable) -> dict:
    """{feature: value} for `days` (days since 1970-01-01): arrays for arrays, or whatever
    the operations make of symbols. Times are first rounded to the millisecond, so a time
    written 13:00:00 is 13:00 whatever float rounding did to its fraction of a day."""
    ms = round_(days * MS_PER_DAY)
    day = floor(ms / MS_PER_DAY)
    z = day + EPOCH_SHIFT
    era = floor(z / DAYS_PER_ERA)
    doe = z - era * DAYS_PER_ERA                                   # day of the era, 0..146096
    yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
    doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))   # from 1 March, 0..365
    mp = floor((5 * doy + 2) / 153)                                # month from March, 0..11
    jan_feb = floor(mp / 10)                                       # 1 in January and February
    year = yoe + era * 400 + jan_feb
    # 1 January of `year`, by the inverse algorithm (it falls in the March year before)
    before = year - 1
    era0 = floor(before / 400)
    yoe0 = before - era0 * 400
    january_1 = era0 * DAYS_PER_ERA + 365 * yoe0 + floor(yoe0 / 4) - floor(yoe0 / 100) \
        + 306 - EPOCH_SHIFT
    shifted = day + 3                                              # 1970-01-01 was a Thursday
    return {"year": year,
            "month": mp + 3 - 12 * jan_feb,
            "weekday": shifted - 7 * floor(shifted / 7),
            "yearday": day - january_1 + 1,
            "hour": floor((ms - day * MS_PER_DAY) / MS_PER_HOUR)}


def date_features(days: np.ndarray, names: list[str]) -> np.ndarray:
    """(n,) days since 1970-01-01, NaN where missing -> (n, len(names)) float64 features, NaN
    in every feature of a missing date."""
    with np.errstate(invalid="ignore"):
        values = calendar_features(np.asarray(days, dtype=np.float64), np.floor, np.round)
    return np.stack([values[name] for name in names], axis=1)
