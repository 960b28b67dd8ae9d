"""Which samples a model trains on: T2Vid's filters, frame fitting, quality checks, mixtures.

Pure Python. ``settings`` parses a model's ``filters:``; ``assess`` turns a batch of samples
into ``TOKEN_LENGTHS`` rows, running the per-sample checks, one module each, registered by
name (``base``). The filters that compare samples with each other (exact duplicates,
video-disjoint sources, mixtures) need the whole table: the tokens stage runs them in Spark
(``jobs.cross_filters``) with these settings.
"""
from udfs.filters.assess import assess
from udfs.filters.settings import FilterError, FilterSettings, Mixture, mixture_quotas

__all__ = ["FilterError", "FilterSettings", "Mixture", "assess", "mixture_quotas"]
