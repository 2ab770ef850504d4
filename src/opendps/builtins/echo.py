"""The ``echo`` process: each input comes back as the output of the same name.

Values keep the encoding they were given in (a qualified value stays qualified, a link
stays a link). A plain JSON object is wrapped in a qualified value, as the OGC results
schema wants. ``pause`` (seconds) delays the answer.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from opendps.builtins import ECHOED, read_inputs, write_results


def echoed(value: Any) -> Any:
    if isinstance(value, dict) and not ({"value", "href", "bbox"} & set(value)):
        return {"value": value, "mediaType": "application/json"}
    return value


def main() -> int:
    inputs = read_inputs()
    pause = inputs.get("pause")
    if pause:
        print(f"echo: pausing {float(pause):g} s", flush=True)
        time.sleep(float(pause))
    results = {name: echoed(inputs[name]) for name in ECHOED if inputs.get(name) is not None}
    for name, value in results.items():
        print(f"echo: {name} = {str(value)[:200]}")
    write_results(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
