"""With RECUR_CI=1 (set by .ci/run) a skipped test fails: CI runs every test."""

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("RECUR_CI") == "1" and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (RECUR_CI=1 allows no skips): {report.longrepr}"
