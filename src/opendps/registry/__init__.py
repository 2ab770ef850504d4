"""Algorithm registry: registration formats, builds and the catalog."""
