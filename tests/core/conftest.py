"""A Store of each test's own (key prefix and queues from the module's `settings` fixture),
emptied after the test."""

import pytest

from tests.service.helpers import clear, private_store


@pytest.fixture()
def store(settings):
    store = private_store(settings)
    yield store
    clear(store, settings)
