"""Golden-data comparison: a produced ``output/`` against an expected folder (DESIGN §15).

Same file names (the ``_stdout.txt``/``_stderr.txt`` copies of the logs are ignored; any
other missing or extra file is a mismatch), byte-equal unless ``compare.yml`` gives a rule
for the file. ``compare.yml``::

    ignore: ["*.log"]                  # not compared, neither missing nor extra
    files:                             # first matching pattern (fnmatch on the path) wins
      "stats/*.csv": {tolerance: 1.0e-6, relative_tolerance: 1.0e-9}
      "report.txt": {ignore_lines: "^generated at "}
      "*.tif": {raster: true, tolerance: 0.01}

- ``tolerance`` / ``relative_tolerance``: text compared token by token; numbers may differ
  by ``max(tolerance, relative_tolerance * |expected|)``, everything else must be equal.
- ``ignore_lines``: a regular expression; matching lines are dropped on both sides.
- ``raster``: same band count, shape and values within ``tolerance`` (rasterio, else GDAL;
  when neither is importable the file is compared byte for byte and the report says so).
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from opendps.errors import InvalidSpec

LOG_COPIES = {"_stdout.txt", "_stderr.txt"}  # the job's logs, copied into output/ by staging
COMPARE_FILE = "compare.yml"
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)\b", re.I)
_SNIPPET = 60  # characters of a differing line shown in the report


@dataclass(frozen=True)
class FileRule:
    tolerance: float = 0.0
    relative_tolerance: float = 0.0
    ignore_lines: re.Pattern[str] | None = None
    raster: bool = False

    @property
    def numeric(self) -> bool:
        return self.tolerance > 0 or self.relative_tolerance > 0


@dataclass(frozen=True)
class Rules:
    ignore: tuple[str, ...] = ()
    files: tuple[tuple[str, FileRule], ...] = ()

    def rule_for(self, path: str) -> FileRule | None:
        return next((rule for pattern, rule in self.files if _matches(path, pattern)), None)

    def ignored(self, path: str) -> bool:
        return path in LOG_COPIES or any(_matches(path, p) for p in self.ignore)


@dataclass(frozen=True)
class FileReport:
    path: str
    status: str  # "match" | "missing" | "extra" | "differs"
    detail: str = ""


@dataclass
class ComparisonReport:
    files: list[FileReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.status == "match" for f in self.files)

    @property
    def problems(self) -> list[FileReport]:
        return [f for f in self.files if f.status != "match"]

    def summary(self) -> str:
        """One line per file: ``differs report.txt: line 2: expected …, got …``."""
        lines = []
        for item in self.files:
            detail = f": {item.detail}" if item.detail else ""
            lines.append(f"{item.status:8} {item.path}{detail}")
        matched = sum(1 for f in self.files if f.status == "match")
        lines.append(f"{matched} of {len(self.files)} file(s) match")
        return "\n".join(lines)


def load_rules(path: Path | None) -> Rules:
    """Rules from a ``compare.yml`` (none: everything byte-equal)."""
    if path is None or not path.exists():
        return Rules()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidSpec(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidSpec(f"{path}: expected a mapping with 'files' and/or 'ignore'")
    unknown = set(data) - {"files", "ignore"}
    if unknown:
        raise InvalidSpec(f"{path}: unknown key(s) {sorted(unknown)}; use 'files' and 'ignore'")
    ignore = data.get("ignore") or []
    if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
        raise InvalidSpec(f"{path}: 'ignore' must be a list of file patterns")
    files = data.get("files") or {}
    if not isinstance(files, dict):
        raise InvalidSpec(f"{path}: 'files' must map file patterns to rules")
    return Rules(tuple(ignore), tuple((str(k), _rule(path, str(k), v)) for k, v in files.items()))


def _rule(path: Path, pattern: str, value: Any) -> FileRule:
    where = f"{path}: files[{pattern!r}]"
    if not isinstance(value, dict):
        raise InvalidSpec(f"{where} must be a mapping (tolerance, ignore_lines, raster)")
    unknown = set(value) - {"tolerance", "relative_tolerance", "ignore_lines", "raster"}
    if unknown:
        raise InvalidSpec(f"{where}: unknown rule(s) {sorted(unknown)}")
    try:
        tolerance = float(value.get("tolerance") or 0.0)
        relative = float(value.get("relative_tolerance") or 0.0)
    except (TypeError, ValueError):
        raise InvalidSpec(f"{where}: tolerances must be numbers") from None
    pattern_text = value.get("ignore_lines")
    try:
        ignore_lines = re.compile(str(pattern_text)) if pattern_text else None
    except re.error as exc:
        raise InvalidSpec(f"{where}: ignore_lines is not a regular expression: {exc}") from None
    return FileRule(tolerance, relative, ignore_lines, bool(value.get("raster")))


def compare_outputs(produced: Path, expected: Path, rules: Rules | None = None) -> ComparisonReport:
    """Compare every file under ``produced`` with the one of the same path under ``expected``."""
    rules = rules or Rules()
    got = {p for p in _files(produced) if not rules.ignored(p)}
    want = {p for p in _files(expected) if not rules.ignored(p)}
    report = ComparisonReport()
    for path in sorted(got | want):
        if path not in got:
            report.files.append(FileReport(path, "missing", "expected but not produced"))
        elif path not in want:
            report.files.append(FileReport(path, "extra", "produced but not expected"))
        else:
            difference = compare_file(produced / path, expected / path, rules.rule_for(path))
            report.files.append(FileReport(path, "differs" if difference else "match", difference))
    return report


def compare_file(produced: Path, expected: Path, rule: FileRule | None = None) -> str:
    """The first difference between two files in words, or "" when they match."""
    if rule is not None and rule.raster:
        return _compare_raster(produced, expected, rule)
    if rule is not None and (rule.numeric or rule.ignore_lines is not None):
        return _compare_text(produced, expected, rule)
    return _compare_bytes(produced.read_bytes(), expected.read_bytes())


def _files(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]


def _matches(path: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(Path(path).name, pattern)


def _compare_bytes(got: bytes, want: bytes) -> str:
    if got == want:
        return ""
    offset = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    if offset is None:
        offset = min(len(got), len(want))
        return f"{len(got)} bytes, expected {len(want)} (equal up to byte {offset})"
    line = want[:offset].count(b"\n") + 1
    return (
        f"first difference at byte {offset} (line {line}): expected "
        f"{_show(_line_at(want, offset))}, got {_show(_line_at(got, offset))}"
    )


def _line_at(data: bytes, offset: int) -> str:
    start = data.rfind(b"\n", 0, offset) + 1
    end = data.find(b"\n", offset)
    return data[start : end if end >= 0 else len(data)].decode(errors="replace")


def _show(text: str) -> str:
    return repr(text if len(text) <= _SNIPPET else text[:_SNIPPET] + "…")


def _compare_text(produced: Path, expected: Path, rule: FileRule) -> str:
    got = _kept_lines(produced, rule)
    want = _kept_lines(expected, rule)
    for (line_no, got_line), (want_no, want_line) in zip(got, want, strict=False):
        difference = _compare_line(got_line, want_line, rule)
        if difference:
            moved = f" (produced line {line_no})" if line_no != want_no else ""
            where = f"line {want_no}{moved}"
            return f"{where}: {difference}"
    if len(got) != len(want):
        return f"{len(got)} line(s) compared, expected {len(want)}"
    return ""


def _kept_lines(path: Path, rule: FileRule) -> list[tuple[int, str]]:
    lines = path.read_text(errors="replace").splitlines()
    pattern = rule.ignore_lines
    return [(n, line) for n, line in enumerate(lines, 1) if not (pattern and pattern.search(line))]


def _compare_line(got: str, want: str, rule: FileRule) -> str:
    if got == want:
        return ""
    if not rule.numeric:
        return f"expected {_show(want)}, got {_show(got)}"
    got_parts, want_parts = _tokens(got), _tokens(want)
    if len(got_parts) != len(want_parts):
        return f"expected {_show(want)}, got {_show(got)}"
    for got_part, want_part in zip(got_parts, want_parts, strict=True):
        if isinstance(want_part, float) and isinstance(got_part, float):
            allowed = max(rule.tolerance, rule.relative_tolerance * abs(want_part))
            if not _close(got_part, want_part, allowed):
                return (
                    f"expected {want_part:g}, got {got_part:g} (difference "
                    f"{abs(got_part - want_part):.3g} > tolerance {allowed:.3g})"
                )
        elif got_part != want_part:
            return f"expected {_show(want)}, got {_show(got)}"
    return ""


def _tokens(line: str) -> list[str | float]:
    """Numbers as floats, the text between them (whitespace collapsed) as strings."""
    parts: list[str | float] = []
    position = 0
    for match in _NUMBER.finditer(line):
        text = " ".join(line[position : match.start()].split())
        if text:
            parts.append(text)
        parts.append(float(match.group()))
        position = match.end()
    rest = " ".join(line[position:].split())
    if rest:
        parts.append(rest)
    return parts


def _close(got: float, want: float, allowed: float) -> bool:
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    if math.isinf(want) or math.isinf(got):
        return got == want
    return abs(got - want) <= allowed


# -- rasters --------------------------------------------------------------------------------


def _compare_raster(produced: Path, expected: Path, rule: FileRule) -> str:
    reader = _raster_reader()
    if reader is None:
        difference = _compare_bytes(produced.read_bytes(), expected.read_bytes())
        note = "neither rasterio nor GDAL is importable, so the raster was compared byte for byte"
        return f"{difference} ({note})" if difference else ""
    import numpy

    try:
        got, want = reader(produced), reader(expected)
    except Exception as exc:  # the library's own error for an unreadable raster
        return f"cannot be read as a raster: {exc}"
    if got.shape != want.shape:
        return f"shape (bands, rows, columns) {got.shape}, expected {want.shape}"
    delta = numpy.abs(got.astype("float64") - want.astype("float64"))
    both_nan = numpy.isnan(got.astype("float64")) & numpy.isnan(want.astype("float64"))
    bad = (delta > rule.tolerance) & ~both_nan
    if not bad.any():
        return ""
    band, row, column = (int(i) for i in numpy.argwhere(bad)[0])
    return (
        f"{int(bad.sum())} value(s) beyond tolerance {rule.tolerance:g}; first at band "
        f"{band + 1}, row {row}, column {column}: expected {want[band, row, column]!r}, "
        f"got {got[band, row, column]!r}"
    )


def _raster_reader() -> Any:
    """A function path -> array (bands, rows, columns), or None without a raster library."""
    try:
        import rasterio

        def read_rasterio(path: Path) -> Any:
            with rasterio.open(path) as dataset:
                return dataset.read()

        return read_rasterio
    except ImportError:
        pass
    try:
        from osgeo import gdal

        def read_gdal(path: Path) -> Any:
            dataset = gdal.Open(str(path))
            if dataset is None:
                raise ValueError(gdal.GetLastErrorMsg() or "GDAL cannot open it")
            array = dataset.ReadAsArray()
            return array if array.ndim == 3 else array[None, ...]

        return read_gdal
    except ImportError:
        return None
