"""Helpers for testing algorithms: the golden-data comparison of ``dps test``, for pytest.

In an algorithm's repository::

    from opendps.testing import assert_outputs_match, run_golden

    def test_golden(tmp_path):
        result = run_golden("algorithm.yml", "data", data_dir=tmp_path / "dps")
        assert result.ok, result.summary()

    def test_my_own_run(tmp_path):
        my_process("data/input", tmp_path)          # however the code is called directly
        assert_outputs_match(tmp_path, "data/output", rules="data/compare.yml")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opendps.testing.compare import (
    ComparisonReport,
    FileReport,
    Rules,
    compare_file,
    compare_outputs,
    load_rules,
)

__all__ = [
    "ComparisonReport",
    "FileReport",
    "Rules",
    "assert_outputs_match",
    "compare_file",
    "compare_outputs",
    "load_rules",
    "run_golden",
]


def assert_outputs_match(
    produced: Path | str, expected: Path | str, rules: Path | str | Rules | None = None
) -> ComparisonReport:
    """Fail (``AssertionError`` with the per-file report) unless ``produced`` matches
    ``expected`` as ``dps test`` compares them; ``rules`` is a compare.yml or its Rules."""
    loaded = rules if isinstance(rules, Rules) else load_rules(Path(rules) if rules else None)
    report = compare_outputs(Path(produced), Path(expected), loaded)
    if not report.ok:
        raise AssertionError("outputs differ from the golden data:\n" + report.summary())
    return report


def run_golden(algorithm_file: Path | str, data: Path | str, **options: Any) -> Any:
    """``dps test ALGORITHM_FILE --data DATA`` as a function (see
    :func:`opendps.executors.golden.run_golden_test` for the options)."""
    from opendps.executors.golden import run_golden_test

    return run_golden_test(algorithm_file, data, **options)
