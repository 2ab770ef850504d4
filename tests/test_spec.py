"""Registration formats (DESIGN §5): MAAP YAML and legacy ADE YAML into one AlgorithmSpec."""

from __future__ import annotations

import pytest

from opendps.errors import InvalidSpec
from opendps.registry.spec import parse_registration

MAAP_YAML = """
algorithm_name: gdal_wrapper
algorithm_version: main
algorithm_description: clip a raster
repository_url: https://example.org/org/dps_tutorial.git
run_command: dps_tutorial/gdal_wrapper/run_gdal.sh
build_command: dps_tutorial/gdal_wrapper/build-env.sh
queue: maap-dps-worker-8gb
disk_space: 10GB
inputs:
  file:
    - {name: input_file, description: a GeoTIFF, required: true}
  positional:
    - {name: output_name, default: out.tif}
    - {name: scale, data_type: number}
    - {name: note, required: false}
  config:
    - {name: bbox, default: ""}
"""


def test_maap_yaml_becomes_one_spec_with_inputs_in_registration_order() -> None:
    spec = parse_registration(MAAP_YAML)
    assert (spec.name, spec.version, spec.source_format) == ("gdal_wrapper", "main", "maap")
    assert spec.repo_dir_name == "dps_tutorial"
    assert [(i.name, i.kind) for i in spec.inputs] == [
        ("input_file", "file"),
        ("output_name", "positional"),
        ("scale", "positional"),
        ("note", "positional"),
        ("bbox", "config"),
    ]
    mandatory = {i.name for i in spec.inputs if i.mandatory}
    # no default -> mandatory; required: false -> optional; "" is a default
    assert mandatory == {"input_file", "scale"}
    assert spec.input("scale").is_number


def test_legacy_ade_yaml_maps_download_to_file_inputs() -> None:
    spec = parse_registration(
        "algo_name: old\nversion: '1.0'\nenvironment: ubuntu\n"
        "repository_url: /srv/repos/old\nrun_command: old/run.sh\ndocker_url: img\n"
        "inputs:\n  - {name: granule, download: true}\n  - {name: level, download: false}\n"
    )
    assert (spec.name, spec.version, spec.source_format) == ("old", "1.0", "ade")
    assert [(i.name, i.kind) for i in spec.inputs] == [("granule", "file"), ("level", "positional")]
    assert spec.docker_container_url == "img"


@pytest.mark.parametrize(
    ("yaml_text", "names"),
    [
        ("algorithm_version: main\nrepository_url: x\nrun_command: x/r.sh\n", "algorithm_name"),
        ("algorithm_name: a\nrepository_url: x\nrun_command: x/r.sh\n", "algorithm_version"),
        ("algorithm_name: a\nalgorithm_version: main\nrun_command: x/r.sh\n", "repository_url"),
        ("algorithm_name: a\nalgorithm_version: main\nrepository_url: x\n", "run_command"),
        (
            "algorithm_name: a b\nalgorithm_version: main\nrepository_url: x\nrun_command: r\n",
            "algorithm_name",
        ),
        (
            "algorithm_name: a\nalgorithm_version: f/x\nrepository_url: x\nrun_command: r\n",
            "cannot contain '/'",
        ),
        (
            "algorithm_name: a\nalgorithm_version: main\nrepository_url: x\n"
            "run_command: ../../etc/run.sh\n",
            "escapes the repository",
        ),
        (
            "algorithm_name: a\nalgorithm_version: main\nrepository_url: x\nrun_command: r\n"
            "inputs:\n  positional:\n    - {name: n}\n    - {name: n}\n",
            "duplicate input",
        ),
        (
            "algorithm_name: a\nalgorithm_version: main\nrepository_url: x\nrun_command: r\n"
            "inputs:\n  secret: []\n",
            "unknown group",
        ),
        ("- just\n- a list\n", "mapping"),
        ("algorithm_name: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_registrations_name_what_to_fix(yaml_text: str, names: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_registration(yaml_text)
    assert names in caught.value.message
