"""engine/calendar.py against Python's own calendar (datetime), and the preparation of a date
column: features derived from days since 1970, imputed and standardized like numbers."""

from __future__ import annotations

import datetime

import numpy as np

from engine.calendar import date_features, feature_names
from engine.preparation import DateColumn, NumericColumn, Preparation

EPOCH = datetime.datetime(1970, 1, 1)


def expected(moment: datetime.datetime) -> list[int]:
    return [moment.year, moment.month, moment.weekday(), moment.timetuple().tm_yday,
            moment.hour]


def test_calendar_features_agree_with_datetime_from_year_1_to_9999():
    rng = np.random.default_rng(0)
    days = rng.integers(datetime.date(1, 1, 1).toordinal() - EPOCH.toordinal(),
                        datetime.date(9999, 12, 31).toordinal() - EPOCH.toordinal(), 20_000)
    seconds = rng.integers(0, 86_400, len(days))
    edges = [(datetime.date(y, m, d).toordinal() - EPOCH.toordinal()) for y, m, d in (
        (1970, 1, 1), (1969, 12, 31), (2000, 2, 29), (1900, 3, 1), (2024, 12, 31), (1600, 1, 1))]
    days = np.concatenate([days, edges, edges])
    seconds = np.concatenate([seconds, [0] * len(edges), [86_399] * len(edges)])
    features = date_features(days + seconds / 86_400.0, feature_names(True))
    truth = [expected(EPOCH + datetime.timedelta(days=int(d), seconds=int(s)))
             for d, s in zip(days, seconds)]
    assert features.tolist() == truth


def test_a_time_on_the_hour_keeps_its_hour_and_a_missing_date_is_nan():
    # 13:00 is 0.541666... of a day: float rounding must not make it 12:59:59.999
    days = np.array([15_000 + h / 24 for h in range(24)] + [np.nan])
    features = date_features(days, ["hour", "year"])
    assert features[:24, 0].tolist() == list(range(24))
    assert np.isnan(features[24]).all()
    assert feature_names(False) == ["year", "month", "weekday", "yearday"]


def test_a_preparation_derives_standardizes_and_imputes_a_date():
    date = DateColumn(name="when", features=["month", "hour"], mean=[6.0, 12.0],
                      scale=[2.0, 4.0])
    prep = Preparation(columns=[NumericColumn(name="x", mean=1.0, scale=2.0), date])
    assert prep.width == 3 and prep.per_column and prep.all_numeric
    # 1970-03-01 18:00, then a missing date (every feature at its mean)
    X = prep.transform(np.array([[3.0, 59.75], [1.0, np.nan]]), dtype="float64")
    np.testing.assert_allclose(X, [[1.0, -1.5, 1.5], [0.0, 0.0, 0.0]])
    assert Preparation.model_validate_json(prep.model_dump_json()) == prep
