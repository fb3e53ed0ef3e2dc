"""Fixtures for the provider clients: every HTTP call mocked, nothing reaches the network."""

from __future__ import annotations

import pytest
import responses


@pytest.fixture
def rsps():
    """Every HTTP call mocked; an unregistered URL fails as a connection error, so nothing reaches the network."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
