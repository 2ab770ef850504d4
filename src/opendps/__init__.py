"""opendps: an open-source Data Processing System."""

__version__ = "0.1.0"
