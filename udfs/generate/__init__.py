"""The pure part of the generate stage (``jobs/generate.py``): LLM-written instruction pairs,
rewrites and translations, as MIMIC-IT's Syphus makes them.

- ``recipe``: a recipe's YAML as typed settings (every problem at once, each naming its key);
  ``settings``: the config's ``generate:`` section (endpoint, limits, recipes).
- ``loaders/``: where queries come from, a registry (``samples``, ``file``, custom ones).
- ``prompt``: a query to chat messages; ``keys``: the request key and the prompt hash.
- ``parsers/``: a reply to pairs, a registry (``syphus``, ``json``).
- ``checks`` and ``scripts``: what a parsed reply must pass (refusal, empty, over length,
  target script, media placeholders); ``outcomes``: a reply to a sample or a reject row.
- ``client``: one request to an OpenAI-compatible endpoint, retried with backoff and jitter,
  honouring ``Retry-After``, within a rate limit (``ratelimit``); ``secrets``: where the key
  comes from (the environment only) and how it is kept out of every text framelake writes.
"""
