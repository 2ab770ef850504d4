"""``dps init NAME``: a ready-to-register algorithm folder (DESIGN §15).

The folder is a git repository with one commit on ``main``::

    NAME/
      run.sh            reads input/, writes output/report.txt, logs to stdout
      build.sh          sets up what run.sh needs (nothing, here)
      algorithm.yml     the MAAP registration, commented; repository_url is this folder
      data/input/       a golden pair: dps test algorithm.yml --data data
      data/output/      (what run.sh writes for data/input)
      README.md         run-local -> test -> register -> submit

The scripts are POSIX ``sh`` so that they run on the host and in any base image.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from opendps.errors import InvalidSpec
from opendps.registry.spec import NAME_PATTERN

GREETING = "hello"
SAMPLE = "the quick brown fox\njumps over\nthe lazy dog\n"

RUN_SH = """\
#!/bin/sh
# The DPS runs this script in the job's work dir (DPS_WORK_DIR), exactly as `dps run-local`
# and `dps test` do:
#   input/    every file input, downloaded before the run
#   output/   everything written here is kept (staged to storage), also when the job fails
# Positional inputs arrive as arguments, in registration order. What the script prints is
# the job's log (stdout and stderr are kept apart).
set -eu
greeting="${1:-hello}"
in_dir="${DPS_INPUT_DIR:-input}"
out_dir="${DPS_OUTPUT_DIR:-output}"
mkdir -p "$out_dir"
echo "counting the lines and words of the files in $in_dir"
{
  echo "$greeting"
  for f in "$in_dir"/*; do
    [ -f "$f" ] || continue
    lines=$(wc -l < "$f" | tr -d ' ')
    words=$(wc -w < "$f" | tr -d ' ')
    echo "$(basename "$f") lines=$lines words=$words"
  done
} > "$out_dir/report.txt"
echo "wrote $out_dir/report.txt"
"""

BUILD_SH = """\
#!/bin/sh
# Runs once per registered version, in the algorithm's own environment: on the host its
# virtualenv is active (a plain `pip install` lands there); in a container build it runs
# inside the image, FROM docker_container_url. Install what run.sh needs here, e.g.
#   pip install -r "$(dirname "$0")/requirements.txt"
set -eu
echo "nothing to build for {name}"
"""

ALGORITHM_YML = """\
# The algorithm's registration (MAAP algorithm YAML). Try it, then register it:
#   dps run-local algorithm.yml -i input_file=data/input/sample.txt
#   dps test algorithm.yml --data data
#   dps algorithm register algorithm.yml
algorithm_name: {name}
# The git branch or tag that is built; jobs run exactly the commit it pointed at.
algorithm_version: main
algorithm_description: Counts the lines and words of its input files (made by dps init)
# Where the DPS clones the code from: this folder while you develop here; the URL of your
# remote (https://host/org/{name}.git) once you have pushed it where the DPS can reach it.
repository_url: {repository_url}
# Paths relative to the folder that holds the clone, which is named after the repository.
run_command: {name}/run.sh
build_command: {name}/build.sh
# A base image to build the algorithm's container FROM (e.g. a MAAP base image, or your
# site's own). Empty: no container; the job runs on the host, inside the job's box.
docker_container_url: ""
# The resource queue jobs run on by default (`dps queues` lists them).
queue: dps-worker-8gb
disk_space: 1GB
inputs:
  # Downloaded into input/ before the run (a URL, a list of URLs, or here a local path).
  file:
    - name: input_file
      description: Text file(s) to count
      required: true
  # Passed to run.sh as arguments, in this order.
  positional:
    - name: greeting
      description: The first line of the report
      default: {greeting}
  # Written to _context.json only.
  config: []
"""

README = """\
# {name}

An algorithm for opendps (made by `dps init`): `run.sh` counts the lines and words of the
files in `input/` and writes `output/report.txt`.

## 1. Run it here, as a job would run

    dps run-local algorithm.yml -i input_file=data/input/sample.txt -o /tmp/{name}-out

This clones the committed `main` branch, runs `build.sh` once (the build is cached), then
`run.sh` in a fresh work dir with `input/` and `output/`, exactly as the server would.

## 2. Test it against the golden data

    dps test algorithm.yml --data data

runs the files on disk (uncommitted edits included) with every file of `data/input/` as
`input_file`, and compares what lands in `output/` with `data/output/`. Exit 0 when all
files match; otherwise each missing, extra or differing file is listed with its first
difference. Rules for numbers and text that may change (dates) go in `data/compare.yml`.
Change `run.sh`, run `dps test` again; when the output changes on purpose, copy the new
files into `data/output/`.

## 3. Register it

Commit your changes (the server builds the committed `algorithm_version`), then

    dps algorithm register algorithm.yml          # --url http://your-dps:8000

`repository_url` is this folder, which only a server on this machine can clone: push the
repository somewhere the server can reach and put that URL there first.

## 4. Submit jobs

    dps job submit {name}:main -i input_file=https://example.org/some.txt --wait
    dps job outputs <job id>

## A container

Set `docker_container_url` to a base image your site has (its registry, or `podman
images`): the server then builds an image FROM it with this repository and `build.sh`
inside, and runs every job in it.
"""


def init_algorithm(path: Path | str) -> Path:
    """Write the algorithm folder ``path`` (named after the algorithm) and commit it."""
    folder = Path(path).expanduser().absolute()
    name = folder.name
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidSpec(
            f"{name!r} cannot be an algorithm name: use letters, digits, '_', '.' and '-'"
        )
    if folder.exists() and any(folder.iterdir()):
        raise InvalidSpec(f"{folder} exists and is not empty; pick a new folder")
    (folder / "data" / "input").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "output").mkdir(parents=True, exist_ok=True)
    files = {
        "run.sh": RUN_SH,
        "build.sh": BUILD_SH.replace("{name}", name),
        "algorithm.yml": ALGORITHM_YML.format(name=name, repository_url=folder, greeting=GREETING),
        "README.md": README.format(name=name),
        ".gitignore": "output-*/\ndata/test-output/\n",
        "data/input/sample.txt": SAMPLE,
        "data/output/report.txt": expected_report(GREETING, {"sample.txt": SAMPLE}),
    }
    for relative, text in files.items():
        (folder / relative).write_text(text)
    for script in ("run.sh", "build.sh"):
        (folder / script).chmod(0o755)
    _commit(folder)
    return folder


def expected_report(greeting: str, inputs: dict[str, str]) -> str:
    """What run.sh writes for these input files (the golden output)."""
    lines = [greeting]
    for file_name in sorted(inputs):
        text = inputs[file_name]
        lines.append(f"{file_name} lines={text.count(chr(10))} words={len(text.split())}")
    return "\n".join(lines) + "\n"


def _commit(folder: Path) -> None:
    identity: list[str] = []
    if not _git(["config", "user.email"], folder, check=False).strip():
        identity = ["-c", "user.name=opendps", "-c", "user.email=opendps@localhost"]
    _git(["init", "--quiet", "--initial-branch", "main"], folder)
    _git(["add", "-A"], folder)
    _git([*identity, "commit", "--quiet", "-m", "dps init: algorithm template"], folder)


def _git(args: list[str], cwd: Path, *, check: bool = True) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    if check and done.returncode != 0:
        raise InvalidSpec(f"git {args[-1]} failed in {cwd}: {done.stderr.strip()}")
    return done.stdout
