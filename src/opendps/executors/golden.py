"""``dps test``: run an algorithm as a job on golden input data and compare its outputs.

``DIR/input/``   the file inputs: all of them, as a list, when the algorithm has one
                 file input; with several, ``DIR/inputs.yml`` says which file is which
``DIR/inputs.yml``  optional: input name -> value (file names are relative to input/)
``DIR/output/``  what the run must produce (see :mod:`opendps.testing.compare`)
``DIR/compare.yml`` optional per-file rules

The run is :func:`opendps.executors.local_run.run_local` on the working tree of the
algorithm's repository (uncommitted edits included), so it is the job's code path.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from opendps.errors import InvalidInput, InvalidSpec
from opendps.executors.local_run import LocalRunResult, Progress, read_package, run_local
from opendps.registry.spec import AlgorithmSpec
from opendps.registry.worktree import repository_top
from opendps.testing.compare import COMPARE_FILE, ComparisonReport, compare_outputs, load_rules

INPUTS_FILE = "inputs.yml"
OUTPUT_FOLDER = "test-output"  # DIR/test-output: what the run produced (Cumulus' layout)


@dataclass(frozen=True)
class GoldenResult:
    run: LocalRunResult
    report: ComparisonReport

    @property
    def ok(self) -> bool:
        return self.run.ok and self.report.ok

    def summary(self) -> str:
        job = self.run.job
        head = f"job {job.id} {job.status.value}"
        if not self.run.ok:
            head += f" ({job.reason.value if job.reason else '?'}): {job.message or ''}"
        return f"{head}\n{self.report.summary()}"


def run_golden_test(
    algorithm_file: Path | str,
    data: Path | str,
    *,
    output_dir: Path | str | None = None,
    working_tree: Path | str | None = None,
    on_progress: Progress | None = None,
    **run_options: Any,
) -> GoldenResult:
    """Run ``algorithm_file`` on ``data``/input and compare with ``data``/output.

    ``working_tree`` defaults to the git working tree that holds ``algorithm_file``.
    ``run_options`` go to :func:`run_local` (``data_dir``, ``config``, ``queue``, ``rebuild``,
    ``on_log``...). Raises ``InvalidSpec``/``InvalidInput`` for a bad data folder.
    """
    algorithm_file, data = Path(algorithm_file), Path(data).resolve()
    if not (data / "input").is_dir() or not (data / "output").is_dir():
        raise InvalidSpec(f"{data} needs an input/ and an output/ folder (the golden pair)")
    rules = load_rules(data / COMPARE_FILE)
    spec = read_package(algorithm_file).spec
    tree = Path(working_tree) if working_tree else _tree_of(algorithm_file, spec)
    inputs = golden_inputs(spec, data)
    produced = Path(output_dir) if output_dir else data / OUTPUT_FOLDER
    if produced.exists():
        shutil.rmtree(produced)  # only what this run produced is compared
    run = run_local(
        algorithm_file,
        inputs,
        output_dir=produced,
        working_tree=tree,
        on_progress=on_progress,
        **run_options,
    )
    return GoldenResult(run, compare_outputs(run.output_dir, data / "output", rules))


def _tree_of(algorithm_file: Path, spec: AlgorithmSpec) -> Path | None:
    top = repository_top(algorithm_file.resolve())
    if top is not None:
        return top
    local = Path(spec.repository_url or "")
    if spec.repository_url and local.is_dir() and repository_top(local) is not None:
        return local
    if spec.cwl is not None or not spec.repository_url:
        return None  # nothing to build: a CWL package or a built-in
    raise InvalidSpec(
        f"{algorithm_file} is not inside a git working tree and its repository_url is not a "
        "local one: dps test runs the files on disk of the algorithm's repository"
    )


def golden_inputs(spec: AlgorithmSpec, data: Path) -> dict[str, Any]:
    """The job's inputs for a golden data folder (see the module docstring)."""
    values = _inputs_file(data / INPUTS_FILE)
    folder = data / "input"
    for item in spec.inputs_of("file"):
        if item.name in values:
            values[item.name] = _resolve_files(values[item.name], data, item.name)
    file_inputs = spec.inputs_of("file")
    unnamed = [i for i in file_inputs if i.name not in values]
    files = sorted(str(p) for p in folder.iterdir() if p.is_file())
    if len(file_inputs) == 1 and unnamed:
        if not files and unnamed[0].mandatory:
            raise InvalidInput(f"{folder} is empty; {unnamed[0].name} needs at least one file")
        if files:
            values[unnamed[0].name] = files
    elif any(i.mandatory for i in unnamed):
        names = ", ".join(i.name for i in unnamed if i.mandatory)
        raise InvalidInput(
            f"{spec.process_id} has {len(file_inputs)} file inputs: say in {data / INPUTS_FILE} "
            f"which files of input/ are {names} (e.g. {unnamed[0].name}: my_file.tif)"
        )
    return values


def _inputs_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise InvalidInput(f"{path}: expected a mapping of input names to values")
    return {str(k): v for k, v in values.items()}


def _resolve_files(value: Any, data: Path, name: str) -> Any:
    if isinstance(value, list):
        return [_resolve_files(v, data, name) for v in value]
    if not isinstance(value, str) or "://" in value:
        return value
    for base in (data / "input", data):
        if (base / value).is_file():
            return str((base / value).resolve())
    raise InvalidInput(f"{name}: {value!r} is not a file in {data / 'input'}")
