"""The lab that the end-to-end run tests share: one per test module, up for the module's tests and
down afterwards (a module's tests depend on one another's clean-up, not on other modules')."""

from __future__ import annotations

import pytest

from tests.lab.run_checks import lab_down, lab_up


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory):
    lab = lab_up(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]) / ".lab")
    try:
        yield lab
    finally:
        lab_down(lab)
