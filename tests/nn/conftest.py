"""Helpers shared by the tests of sklearn_gmnm.nn."""

import os
import subprocess
import sys

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


@pytest.fixture
def setting_at_import():
    """``setting_at_import(variable, value, attribute)``: ``str(functional.<attribute>)``
    in a fresh interpreter whose environment sets ``variable`` to ``value`` (None: leaves
    it unset), and that interpreter's stderr."""

    def read(variable, value, attribute):
        env = {k: v for k, v in os.environ.items() if k != variable}
        if value is not None:
            env[variable] = value
        code = f"from sklearn_gmnm.nn import functional as F; print(F.{attribute})"
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True
        )
        return result.stdout.strip(), result.stderr

    return read
