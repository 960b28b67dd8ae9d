"""Importing this registers the built-in query loaders."""
from udfs.generate.loaders import file, samples  # noqa: F401
