"""Importing this registers the built-in reply parsers."""
from udfs.generate.parsers import json_pairs, syphus  # noqa: F401
