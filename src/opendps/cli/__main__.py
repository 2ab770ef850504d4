"""``python -m opendps.cli``: the same as ``dps``."""

from opendps.cli import main

main()
