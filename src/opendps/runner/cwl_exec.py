"""How a CWL job runs: cwltool inside the runner, like any run command.

``prepare_cwl_run`` (called by the runner in the job's work dir, after localize) writes

    _cwl/package.cwl   the deployed document; when its images cannot be used here (no
                       podman, an image that cannot be found or pulled, and
                       ``container_fallback: host``) its DockerRequirements are moved from
                       ``requirements`` to ``hints`` and it runs with ``--no-container``
    _cwl/containers.conf  podman's settings for cwltool's ``podman run`` (runtime, ulimits)
    _cwl/job.json      the job order: File inputs point at the files localize downloaded
                       into input/, Directory inputs at their URL, other values as given

and answers the command ``python -m opendps.runner.cwl_exec <work dir>``, which the runner
executes with the job's limits, cancel and logs. That command runs cwltool with
``--outdir output`` (so CWL outputs are staged with the job's other outputs) and writes
the OGC results document to ``output/_results.json``: File outputs become links relative
to the job's staged outputs, other values stay inline.
"""

from __future__ import annotations

import json
import mimetypes
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from opendps.models import Job
from opendps.registry.spec import AlgorithmSpec
from opendps.runner.workdir import WorkDir

if TYPE_CHECKING:
    from opendps.settings import Settings

CWL_DIR = "_cwl"
RESULTS_FILE = "_results.json"
# Variables of the run contract that CWL tools may use (cwltool clears the environment).
PRESERVED = ("DPS_JOB_ID", "DPS_API_URL", "DPS_JOB_TOKEN", "MAAP_API_HOST", "MAAP_PGT")


# -- in the runner: files and the command -----------------------------------------------------


def docker_images(document: dict[str, Any]) -> list[str]:
    """Every ``dockerPull`` of the document's DockerRequirements (requirements only)."""
    found: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
        elif isinstance(node, dict):
            requirements = node.get("requirements")
            items = (
                [{"class": "DockerRequirement", **(requirements.get("DockerRequirement") or {})}]
                if isinstance(requirements, dict) and "DockerRequirement" in requirements
                else requirements
                if isinstance(requirements, list)
                else []
            )
            for item in items:
                if isinstance(item, dict) and item.get("class") == "DockerRequirement":
                    image = item.get("dockerPull") or item.get("dockerImageId")
                    if image and image not in found:
                        found.append(str(image))
            for key, value in node.items():
                if key not in ("requirements", "hints"):
                    visit(value)

    visit(document)
    return found


def container_engine(
    settings: Settings, images: list[str], log_path: Path
) -> tuple[str | None, str]:
    """("podman", "") when every image is here or pulled in time, else (None, why not).

    Pull output is appended to ``log_path`` (the job's stderr). Raises ``BuildError``
    naming the image when it cannot be used and ``container_fallback`` is ``refuse``.
    """
    from opendps.errors import BuildError
    from opendps.registry.images import ensure_image, find_podman

    if not images:
        return None, ""
    podman, why = find_podman(settings)
    if podman is not None:
        with log_path.open("ab") as log:
            for image in images:
                why = ensure_image(podman, image, settings.container_pull_timeout, log, "CWL image")
                if why:
                    break
        if not why:
            return "podman", ""
    if settings.container_fallback == "refuse":
        raise BuildError(f"cannot use the container image {', '.join(images)}: {why}")
    return None, why


def write_containers_conf(path: Path, settings: Settings) -> None:
    """podman's settings for cwltool's own ``podman run`` calls (engines.md §3.2)."""
    from opendps.registry.images import find_podman

    podman, _ = find_podman(settings)
    runtime = f'runtime = "{podman.runtime}"\n' if podman and podman.runtime else ""
    path.write_text(
        '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n'
        f"[engine]\n{runtime}"
    )


def move_docker_to_hints(document: dict[str, Any]) -> list[str]:
    """Move every ``DockerRequirement`` under ``requirements`` to ``hints`` (in place);
    answers the images that were moved."""
    moved: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        requirements = node.get("requirements")
        docker = None
        if isinstance(requirements, dict) and "DockerRequirement" in requirements:
            docker = {"class": "DockerRequirement", **(requirements.pop("DockerRequirement") or {})}
        elif isinstance(requirements, list):
            for item in list(requirements):
                if isinstance(item, dict) and item.get("class") == "DockerRequirement":
                    requirements.remove(item)
                    docker = item
        if docker is not None:
            moved.append(str(docker.get("dockerPull") or docker.get("dockerImageId") or "?"))
            hints = node.get("hints")
            if isinstance(hints, dict):
                hints["DockerRequirement"] = {k: v for k, v in docker.items() if k != "class"}
            else:
                node["hints"] = [*(hints if isinstance(hints, list) else []), docker]
        for key, value in node.items():
            if key not in ("requirements", "hints"):
                visit(value)

    visit(document)
    return moved


def _file_names(spec: AlgorithmSpec, inputs: dict[str, Any]) -> dict[str, list[str]]:
    """Input name -> the file names localize gave its URLs in input/ (same plan)."""
    from opendps.runner.localize import plan_downloads

    file_inputs = {i.name: inputs.get(i.name) for i in spec.inputs_of("file")}
    file_inputs = {k: v for k, v in file_inputs.items() if v not in (None, "", [])}
    names: dict[str, list[str]] = {}
    for input_name, _url, file_name in plan_downloads(file_inputs):
        names.setdefault(input_name, []).append(file_name)
    return names


def _cwl_types(spec: AlgorithmSpec) -> dict[str, str]:
    """Input name -> "File" / "Directory" / other, from the OGC description."""
    kinds = {}
    entry = _entry(spec.cwl or {})
    declared = entry.get("inputs") or {}
    items = (
        declared.items()
        if isinstance(declared, dict)
        else [(i.get("id"), i) for i in declared if isinstance(i, dict)]
    )
    for key, item in items:
        name = str(key).split("#")[-1].split("/")[-1]
        text = json.dumps(item.get("type") if isinstance(item, dict) else item)
        kinds[name] = "Directory" if "Directory" in text else ("File" if "File" in text else "")
    return kinds


def _entry(cwl: dict[str, Any]) -> dict[str, Any]:
    document = cwl.get("document") or {}
    if "$graph" not in document:
        return document
    wanted = cwl.get("entry")
    for process in document["$graph"]:
        if isinstance(process, dict) and str(process.get("id", "")).split("#")[-1] == wanted:
            return process
    return {}


def job_order(spec: AlgorithmSpec, inputs: dict[str, Any], work: WorkDir) -> dict[str, Any]:
    names = _file_names(spec, inputs)
    kinds = _cwl_types(spec)
    order: dict[str, Any] = {}
    for item in spec.inputs:
        value = inputs.get(item.name)
        if value is None:
            continue
        if item.kind == "file":
            files = [{"class": "File", "path": str(work.input / n)} for n in names[item.name]]
            order[item.name] = files if isinstance(value, list) else files[0]
        elif kinds.get(item.name) == "Directory":
            urls = value if isinstance(value, list) else [value]
            folders = [{"class": "Directory", "location": _location(str(u))} for u in urls]
            order[item.name] = folders if isinstance(value, list) else folders[0]
        else:
            order[item.name] = value
    return order


def _location(url: str) -> str:
    return Path(url).as_uri() if url.startswith("/") else url


PODMAN_WRAPPER = """\
#!/bin/sh
# cwltool --podman asks for --userns=keep-id, which only rootless podman supports.
for arg; do
  shift
  if [ "$arg" = "--userns=keep-id" ] && [ "$(id -u)" = 0 ]; then continue; fi
  set -- "$@" "$arg"
done
exec {podman} "$@"
"""


def write_podman_wrapper(path: Path, settings: Settings) -> None:
    """The ``podman`` cwltool finds first on its PATH (see PODMAN_WRAPPER)."""
    from opendps.registry.images import find_podman

    podman, _ = find_podman(settings)
    assert podman is not None
    path.parent.mkdir(exist_ok=True)
    path.write_text(PODMAN_WRAPPER.format(podman=podman.binary))
    path.chmod(0o755)


def prepare_cwl_run(
    spec: AlgorithmSpec, job: Job, work: WorkDir, python: str, settings: Settings
) -> tuple[list[str], list[str], str]:
    """Write the package and job order into the work dir; answers (argv, warnings, where
    the job runs in words: ``podman (cwltool)`` or ``host (<why>)``)."""
    assert spec.cwl is not None
    document = json.loads(json.dumps(spec.cwl["document"]))
    warnings: list[str] = []
    folder = work.root / CWL_DIR
    folder.mkdir(exist_ok=True)
    images = docker_images(document)
    engine, why = container_engine(settings, images, work.stderr)
    where = "podman (cwltool)" if engine else f"host ({why or 'no DockerRequirement'})"
    if engine is None:
        moved = move_docker_to_hints(document)
        if moved:
            warnings.append(
                f"{why}: DockerRequirement ({', '.join(moved)}) moved to hints and the "
                "package run with cwltool --no-container, using the host's programs"
            )
    else:
        write_containers_conf(folder / "containers.conf", settings)
        write_podman_wrapper(folder / "bin" / "podman", settings)
    (folder / "package.cwl").write_text(json.dumps(document, indent=2))
    (folder / "job.json").write_text(json.dumps(job_order(spec, job.inputs, work), indent=2))
    (folder / "engine").write_text(engine or "none")
    (folder / "entry").write_text(spec.cwl.get("entry") or "")
    return [python, "-m", "opendps.runner.cwl_exec", str(work.root)], warnings, where


# -- in the job: run cwltool, write the results document --------------------------------------


def cwltool_args(root: Path, entry: str | None, engine: str) -> list[str]:
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    args = [
        "--outdir",
        str(root / "output"),
        "--tmpdir-prefix",
        f"{tmp}/",
        "--tmp-outdir-prefix",
        f"{tmp}/",
        "--disable-color",
    ]
    if engine == "none":
        args.append("--no-container")
    elif engine == "podman":
        args.append("--podman")
    for name in PRESERVED:
        args += ["--preserve-environment", name]
    package = (root / CWL_DIR / "package.cwl").as_uri() + (f"#{entry}" if entry else "")
    return [*args, package, str(root / CWL_DIR / "job.json")]


def results_document(outputs: dict[str, Any], output_dir: Path) -> dict[str, Any]:
    """cwltool's output object -> OGC results (links relative to the staged outputs)."""
    results = {}
    for name, value in outputs.items():
        converted = _result_value(value, output_dir.resolve())
        if converted is not None:
            results[name] = converted
    return results


def _result_value(value: Any, output_dir: Path) -> Any:
    if isinstance(value, list):
        return [_result_value(v, output_dir) for v in value]
    if isinstance(value, dict) and value.get("class") == "File":
        return _link(value, output_dir)
    if isinstance(value, dict) and value.get("class") == "Directory":
        folder = _path_of(value)
        catalog = folder / "catalog.json" if folder else None
        if catalog is not None and catalog.exists():
            return _link({"location": catalog.as_uri(), "basename": "catalog.json"}, output_dir)
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder else []
        return [_link({"location": p.as_uri(), "basename": p.name}, output_dir) for p in files]
    if isinstance(value, dict):
        return {"value": value, "mediaType": "application/json"}
    return value


def _path_of(value: dict[str, Any]) -> Path | None:
    location = value.get("path") or value.get("location") or ""
    if location.startswith("file://"):
        location = unquote(urlsplit(location).path)
    return Path(location) if location.startswith("/") else None


def _link(value: dict[str, Any], output_dir: Path) -> dict[str, Any]:
    path = _path_of(value)
    name = value.get("basename") or (path.name if path else "output")
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    try:
        relative = path.resolve().relative_to(output_dir).as_posix() if path else None
    except ValueError:
        relative = None
    href = quote(relative) if relative else str(value.get("location"))
    return {"href": href, "type": media, "title": name}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0] if argv else os.getcwd()).resolve()
    from io import StringIO

    from cwltool.main import main as cwltool_main

    entry = (root / CWL_DIR / "entry").read_text().strip() or None
    engine = (root / CWL_DIR / "engine").read_text().strip()
    conf = root / CWL_DIR / "containers.conf"
    if engine == "podman" and conf.exists():
        os.environ["CONTAINERS_CONF"] = str(conf)  # read by the podman cwltool starts
        wrapper = root / CWL_DIR / "bin"
        os.environ["PATH"] = f"{wrapper}{os.pathsep}{os.environ.get('PATH', '')}"
    captured = StringIO()
    code = cwltool_main(cwltool_args(root, entry, engine), stdout=captured, stderr=sys.stderr)
    text = captured.getvalue()
    print(text, flush=True)
    if code != 0:
        print(f"cwltool ended with exit code {code}", file=sys.stderr)
        return code if isinstance(code, int) and code > 0 else 1
    outputs = json.loads(text or "{}")
    results = results_document(outputs, root / "output")
    (root / "output" / RESULTS_FILE).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
