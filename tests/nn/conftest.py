"""Helpers shared by the tests of sklearn_gmnm.nn."""

import pytest


@pytest.fixture
def count_calls(monkeypatch):
    """``count_calls(node)``: a list that grows by one at each ``node.apply`` call
    (``node`` an autograd Function), restored after the test."""

    def patch(node):
        calls = []
        original = node.apply
        monkeypatch.setattr(node, "apply", lambda *a: calls.append(1) or original(*a))
        return calls

    return patch
