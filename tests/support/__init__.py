"""Reusable fixtures: each module is a pytest plugin listed in tests/conftest.py."""
