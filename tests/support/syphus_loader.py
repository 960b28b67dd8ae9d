"""A custom query loader written the way a Syphus dataset class is (``_load_query_inputs``
returning ``{id, sentences}``, ``_load_prefix`` returning the system message and in-context
examples), registered for recipes that name this module (``queries.module``)."""
from __future__ import annotations

import json

from udfs.adapters.options import Option, non_empty_string
from udfs.generate.loaders import Query, QueryLoader, register_loader

SYSTEM = "You are an AI assistant that writes questions about a scene from its sentences."
IN_CONTEXT = [{"role": "user", "content": "sentences: A dog runs."},
              {"role": "assistant", "content": "Question: What runs?\nAnswer: A dog."}]


@register_loader("syphus_sentences")
class SentencesLoader(QueryLoader):
    options = {"path": Option(None, non_empty_string)}

    def _load_query_inputs(self, path: str, open_binary) -> list[dict]:
        with open_binary(path) as stream:
            return [{"id": key, "sentences": value} for key, value in json.load(stream).items()]

    def load(self, options, open_binary):
        for item in self._load_query_inputs(options["path"], open_binary):
            yield Query(item["id"], [], {"sentences": item["sentences"]})

    def prefix(self, options):
        return SYSTEM, IN_CONTEXT
