"""The developer's loop (DESIGN §15): the golden-data comparison, ``dps init`` and
``dps test`` (a real build of a real git working tree, run as a job by run-local), and
``dps algorithm register`` of what ``dps init`` wrote, against a real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opendps.cli import app
from opendps.errors import InvalidInput, InvalidSpec
from opendps.executors.golden import golden_inputs
from opendps.registry.scaffold import init_algorithm
from opendps.registry.spec import parse_registration
from opendps.testing import assert_outputs_match, compare_file, compare_outputs, load_rules
from tests.support.live_server import LiveServer

runner = CliRunner()


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


# -- comparison -----------------------------------------------------------------------------


def test_identical_folders_match_and_log_copies_are_ignored(tmp_path: Path) -> None:
    got = write(tmp_path / "got", {"a.txt": "x\n", "sub/b.bin": "y", "_stdout.txt": "log"})
    want = write(tmp_path / "want", {"a.txt": "x\n", "sub/b.bin": "y"})
    report = compare_outputs(got, want)
    assert report.ok and [f.path for f in report.files] == ["a.txt", "sub/b.bin"]
    assert_outputs_match(got, want)


def test_missing_extra_and_differing_files_are_each_reported(tmp_path: Path) -> None:
    got = write(tmp_path / "got", {"same.txt": "1\n", "new.txt": "n", "diff.txt": "a\nb c\n"})
    want = write(tmp_path / "want", {"same.txt": "1\n", "gone.txt": "g", "diff.txt": "a\nb d\n"})
    report = compare_outputs(got, want)
    status = {f.path: f.status for f in report.files}
    assert status == {
        "same.txt": "match",
        "new.txt": "extra",
        "gone.txt": "missing",
        "diff.txt": "differs",
    }
    detail = next(f.detail for f in report.files if f.path == "diff.txt")
    assert detail == "first difference at byte 4 (line 2): expected 'b d', got 'b c'"
    with pytest.raises(AssertionError, match=r"missing  gone\.txt"):
        assert_outputs_match(got, want)


def test_a_shorter_file_says_how_long(tmp_path: Path) -> None:
    got = write(tmp_path / "got", {"a.txt": "abc"})
    want = write(tmp_path / "want", {"a.txt": "abcdef"})
    assert compare_outputs(got, want).files[0].detail == "3 bytes, expected 6 (equal up to byte 3)"


def test_numeric_tolerance(tmp_path: Path) -> None:
    rules_file = write(
        tmp_path,
        {
            "compare.yml": 'files:\n  "*.csv": {tolerance: 0.01}\n'
            '  "rel.txt": {relative_tolerance: 0.1}\n'
        },
    )
    rules = load_rules(rules_file / "compare.yml")
    want = write(tmp_path / "want", {"s.csv": "x,1.000,2e3\n", "rel.txt": "n=1000\n"})
    close = write(tmp_path / "close", {"s.csv": "x,1.004,2000.005\n", "rel.txt": "n=1090\n"})
    assert compare_outputs(close, want, rules).ok
    far = write(tmp_path / "far", {"s.csv": "x,1.02,2e3\n", "rel.txt": "n=1200\n"})
    details = {f.path: f.detail for f in compare_outputs(far, want, rules).files}
    assert details["s.csv"].startswith("line 1: expected 1, got 1.02 (difference 0.02 > tolerance")
    assert "expected 1000, got 1200" in details["rel.txt"]
    words = write(tmp_path / "words", {"s.csv": "y,1.000,2e3\n", "rel.txt": "n=1000\n"})
    assert (
        "expected 'x,1.000,2e3', got 'y,1.000,2e3'" in compare_outputs(words, want, rules).summary()
    )


def test_ignore_lines_and_ignored_files(tmp_path: Path) -> None:
    write(
        tmp_path, {"compare.yml": 'ignore: ["*.log"]\nfiles:\n  r.txt: {ignore_lines: "^date:"}\n'}
    )
    rules = load_rules(tmp_path / "compare.yml")
    want = write(tmp_path / "want", {"r.txt": "date: monday\nresult 7\n"})
    got = write(tmp_path / "got", {"r.txt": "date: friday\nresult 7\n", "run.log": "noise"})
    assert compare_outputs(got, want, rules).ok
    (got / "r.txt").write_text("date: friday\nresult 8\n")
    detail = compare_outputs(got, want, rules).files[0].detail
    assert detail == "line 2: expected 'result 7', got 'result 8'"


def write_raster(path: Path, values: list[list[float]]) -> Path:
    """A one-band float32 GeoTIFF with rasterio (a dev dependency)."""
    try:
        import numpy
        import rasterio
        import rasterio.transform
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"rasterio is a dev dependency: {exc}")
        pytest.skip(f"rasterio is not installed: {exc}")
    array = numpy.array(values, dtype="float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "height": array.shape[0],
        "width": array.shape[1],
        "count": 1,
        "transform": rasterio.transform.from_origin(0, array.shape[0], 1, 1),
    }
    with rasterio.open(path, "w", dtype="float32", **profile) as dataset:
        dataset.write(array, 1)
    return path


def test_raster_rule_compares_shape_and_values_within_tolerance(tmp_path: Path) -> None:
    write(tmp_path, {"compare.yml": 'files:\n  "*.tif": {raster: true, tolerance: 0.1}\n'})
    rules = load_rules(tmp_path / "compare.yml")
    write_raster(tmp_path / "want" / "a.tif", [[1.0, 2.0], [3.0, 4.0]])
    write_raster(tmp_path / "close" / "a.tif", [[1.05, 2.0], [3.0, 3.95]])
    assert compare_outputs(tmp_path / "close", tmp_path / "want", rules).ok
    assert compare_file(tmp_path / "close" / "a.tif", tmp_path / "want" / "a.tif")  # no rule
    write_raster(tmp_path / "far" / "a.tif", [[1.0, 2.0], [3.5, 4.0]])
    detail = compare_outputs(tmp_path / "far", tmp_path / "want", rules).files[0].detail
    assert detail.startswith("1 value(s) beyond tolerance 0.1; first at band 1, row 1, column 0")
    write_raster(tmp_path / "wide" / "a.tif", [[1.0, 2.0, 0.0], [3.0, 4.0, 0.0]])
    detail = compare_outputs(tmp_path / "wide", tmp_path / "want", rules).files[0].detail
    assert detail == "shape (bands, rows, columns) (1, 2, 3), expected (1, 2, 2)"


def test_raster_rule_without_a_raster_library_compares_bytes_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands in for a host with neither rasterio nor GDAL (the dev install has rasterio).
    monkeypatch.setattr("opendps.testing.compare._raster_reader", lambda: None)
    write(tmp_path, {"compare.yml": 'files:\n  "*.tif": {raster: true, tolerance: 1}\n'})
    rules = load_rules(tmp_path / "compare.yml")
    want = write(tmp_path / "want", {"a.tif": "raster-bytes"})
    got = write(tmp_path / "got", {"a.tif": "raster-bytez"})
    assert "neither rasterio nor GDAL is importable" in compare_outputs(got, want, rules).summary()


def test_bad_compare_files_name_what_to_fix(tmp_path: Path) -> None:
    cases = {
        "files: [1]\n": "'files' must map",
        "files:\n  a: {tolerance: lots}\n": "tolerances must be numbers",
        "files:\n  a: {ignore_lines: '('}\n": "not a regular expression",
        "files:\n  a: {exact: true}\n": "unknown rule(s) ['exact']",
        "rules: {}\n": "unknown key(s) ['rules']",
    }
    for text, message in cases.items():
        (tmp_path / "compare.yml").write_text(text)
        with pytest.raises(InvalidSpec, match=re.escape(message)):
            load_rules(tmp_path / "compare.yml")


def test_inputs_of_a_golden_folder(tmp_path: Path) -> None:
    data = write(tmp_path / "data", {"input/b.txt": "b", "input/a.txt": "a"})
    one = parse_registration(
        {
            "algorithm_name": "x",
            "algorithm_version": "1",
            "repository_url": "https://example.org/x.git",
            "run_command": "x/run.sh",
            "inputs": {"file": [{"name": "f"}], "positional": [{"name": "p", "default": "d"}]},
        }
    )
    inputs = golden_inputs(one, data)
    assert inputs == {"f": [str(data / "input/a.txt"), str(data / "input/b.txt")]}
    write(data, {"inputs.yml": "p: other\n"})
    assert golden_inputs(one, data)["p"] == "other"
    two = parse_registration(
        {
            "algorithm_name": "x",
            "algorithm_version": "1",
            "repository_url": "https://example.org/x.git",
            "run_command": "x/run.sh",
            "inputs": {"file": [{"name": "left"}, {"name": "right"}]},
        }
    )
    (data / "inputs.yml").unlink()
    with pytest.raises(InvalidInput, match=r"say in .*inputs\.yml which files of input/ are left"):
        golden_inputs(two, data)
    write(data, {"inputs.yml": "left: a.txt\nright: [b.txt]\n"})
    assert golden_inputs(two, data) == {
        "left": str(data / "input/a.txt"),
        "right": [str(data / "input/b.txt")],
    }
    write(data, {"inputs.yml": "left: nope.txt\nright: b.txt\n"})
    with pytest.raises(InvalidInput, match=r"'nope\.txt' is not a file"):
        golden_inputs(two, data)


# -- dps init -> dps test -> dps algorithm register ------------------------------------------


def dps_test(folder: Path, tmp_path: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        [
            "test",
            str(folder / "algorithm.yml"),
            "--data",
            str(folder / "data"),
            "--data-dir",
            str(tmp_path / "run-local"),
            *extra,
        ],
    )
    return result.exit_code, result.output


@pytest.mark.slow
def test_init_writes_a_repository_that_dps_test_passes(tmp_path: Path) -> None:
    made = runner.invoke(app, ["init", str(tmp_path / "wordcount")])
    assert made.exit_code == 0, made.output
    folder = tmp_path / "wordcount"
    assert {p.name for p in folder.iterdir()} >= {"run.sh", "build.sh", "algorithm.yml", "data"}
    log = subprocess.run(["git", "log", "--format=%s"], cwd=folder, capture_output=True, text=True)
    assert log.stdout.strip() == "dps init: algorithm template"
    spec = parse_registration((folder / "algorithm.yml").read_text())
    assert (spec.name, spec.version, spec.repository_url) == ("wordcount", "main", str(folder))
    assert (
        "# A base image to build the algorithm's container FROM"
        in (folder / "algorithm.yml").read_text()
    )

    code, output = dps_test(folder, tmp_path)
    assert code == 0, output
    assert "match    report.txt" in output and "PASS: 1 of 1" in output

    # The working tree is tested, uncommitted edits included: a change shows at once.
    run_sh = folder / "run.sh"
    run_sh.write_text(run_sh.read_text().replace("lines=$lines", "n=$lines"))
    code, output = dps_test(folder, tmp_path, "--json")
    assert code == 1
    report = json.loads(output)
    assert not report["ok"] and report["files"] == [
        {
            "path": "report.txt",
            "status": "differs",
            "detail": "first difference at byte 17 (line 2): expected "
            "'sample.txt lines=3 words=9', got 'sample.txt n=3 words=9'",
        }
    ]
    subprocess.run(["git", "checkout", "run.sh"], cwd=folder, check=True)
    (folder / "data" / "output" / "expected-too.txt").write_text("x")
    code, output = dps_test(folder, tmp_path)
    assert code == 1 and "missing  expected-too.txt" in output


def test_init_refuses_a_folder_in_use_and_bad_names(tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x")
    taken = runner.invoke(app, ["init", str(tmp_path / "used")])
    assert taken.exit_code == 2 and "is not empty" in taken.output
    bad = runner.invoke(app, ["init", str(tmp_path / "bad name")])
    assert bad.exit_code == 2 and "cannot be an algorithm name" in bad.output


@pytest.mark.slow
def test_what_init_writes_registers_and_builds_on_a_server(
    live_server: LiveServer, tmp_path: Path
) -> None:
    assert runner.invoke(app, ["init", str(tmp_path / "counter")]).exit_code == 0
    registered = runner.invoke(
        app,
        ["algorithm", "register", str(tmp_path / "counter" / "algorithm.yml"), "--wait", "--json"],
        env={"DPS_URL": live_server.url, "DPS_TOKEN": ""},
    )
    assert registered.exit_code == 0, registered.output
    summary = json.loads(registered.stdout)
    assert summary["id"] == "counter:main" and summary["build"]["status"] == "ready"


def dps_shell(
    folder: Path, tmp_path: Path, commands: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``dps shell`` in a subprocess, its stdin fed with ``commands`` (not a terminal)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "opendps.cli",
            "shell",
            str(folder / "algorithm.yml"),
            "-i",
            f"input_file={folder / 'data' / 'input' / 'sample.txt'}",
            "--data-dir",
            str(tmp_path / "run-local"),
            *extra,
        ],
        input=commands,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_shell_opens_in_the_jobs_work_dir_and_environment(tmp_path: Path) -> None:
    folder = init_algorithm(tmp_path / "shelly")
    done = dps_shell(
        folder,
        tmp_path,
        'echo "cwd=$(pwd)"; ls input; echo "job=$DPS_JOB_ID out=$DPS_OUTPUT_DIR"; exit 7\n',
    )
    assert done.returncode == 7, done.stderr
    cwd = done.stdout.split("cwd=")[1].split()[0]
    assert Path(cwd).parent == (tmp_path / "run-local" / "jobs").resolve()
    assert "\nsample.txt\n" in done.stdout
    job_id = Path(cwd).name
    assert f"job={job_id} out={cwd}/output" in done.stdout
    assert "exited 7; the work dir" in done.stderr and Path(cwd).is_dir()
