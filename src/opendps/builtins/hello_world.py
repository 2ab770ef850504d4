"""The ``hello-world`` process: ``name`` -> ``"Hello <name>!"``."""

from __future__ import annotations

import sys

from opendps.builtins import read_inputs, write_results


def main() -> int:
    name = read_inputs().get("name")
    if isinstance(name, dict):  # a qualified value
        name = name.get("value")
    greeting = f"Hello {name}!"
    print(greeting)
    write_results({"greeting": greeting})
    return 0


if __name__ == "__main__":
    sys.exit(main())
