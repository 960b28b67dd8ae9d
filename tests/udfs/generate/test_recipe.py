"""Recipes and the ``generate:`` section: typed, every problem at once, each naming its key;
the endpoint from the config and the Syphus variables, its key from the environment only."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from framelake.config import ConfigError, default_stages
from tests.support.config import demo_config
from tests.support.paths import PROFILE_DIR, REPO
from udfs.generate.problems import RecipeError
from udfs.generate.recipe import TRANSLATE_SYSTEM, parse_recipes
from udfs.generate.scripts import SYPHUS_LANGUAGES
from udfs.generate.settings import Endpoint, load_recipe, parse_generate, resolve

DC = REPO / "conf" / "recipes" / "mimicit_dc.yaml"


def read(path: str) -> str:
    return Path(path).read_text()


def test_the_conf_recipes_load_with_their_profile():
    [dc] = load_recipe(str(DC), "r", read, [PROFILE_DIR])
    assert (dc.kind, dc.parser, dc.pairs) == ("generate", "syphus", 3)
    assert (dc.sampling.temperature, dc.sampling.seed) == (0.0, 7)
    assert dc.profile.tokenizer == "llama3" and len(dc.in_context) == 2
    [translate] = load_recipe(str(REPO / "conf/recipes/mimicit_dc_translate.yaml"), "r", read)
    assert [code for code, _ in translate.languages] == list(SYPHUS_LANGUAGES)
    assert translate.queries.options["sources"] == ["mimicit_dc"] and translate.system == TRANSLATE_SYSTEM
    [rewrite] = load_recipe(str(REPO / "conf/recipes/rewrite_refusals.yaml"), "r", read)
    assert (rewrite.kind, rewrite.rewrite, rewrite.queries.options["flagged_by"]) == ("rewrite", "answers", ["refusal"])


def test_every_problem_of_a_recipe_is_reported_with_its_key():
    raw = {"name": "bad name", "kind": "generat", "queries": {"loader": "nope"}, "template": "{{ unclosed",
           "sampling": {"temperature": "hot", "max_tokens": 0, "topp": 1}, "pairs": 2, "min_pairs": 3,
           "in_context": [{"role": "robot", "content": "x"}], "languages": ["zh"], "colour": "red"}
    with pytest.raises(RecipeError) as err:
        parse_recipes(raw, "r", [PROFILE_DIR])
    problems = "\n".join(err.value.problems)
    for expected in ("r.colour: unknown key", "r.name: letters, digits", "r.kind: must be one of generate",
                     "r.queries.loader: unknown query loader 'nope'", "r.template: line 1",
                     "r.system: required", "r.sampling.temperature: must be a float",
                     "r.sampling.max_tokens: must be > 0", "r.sampling.topp: unknown key",
                     "r.in_context[0]: role must be user or assistant", "r.min_pairs: more than pairs",
                     "r.languages: only for kind translate"):
        assert expected in problems, expected
    assert len(err.value.problems) >= 12


def test_a_translate_block_is_a_translation_of_the_recipes_samples():
    raw = yaml.safe_load(DC.read_text())
    raw["translate"] = {"languages": ["fr", {"code": "ru", "name": "Russian", "scripts": ["Cyrillic"]}]}
    dc, translate = parse_recipes(raw, "r", [PROFILE_DIR])
    assert (translate.name, translate.kind, translate.version) == ("mimicit_dc.translate", "translate", dc.version)
    assert translate.queries.loader == "samples" and translate.queries.options == {"sources": ["mimicit_dc"]}
    assert [(code, lang.scripts) for code, lang in translate.languages] == [("fr", ("Latin",)), ("ru", ("Cyrillic",))]
    raw["translate"] = {"languages": ["xx"], "queries": {}}
    with pytest.raises(RecipeError, match=r"r.translate.queries: unknown key[\s\S]*r.translate.languages\[0\]"):
        parse_recipes(raw, "r", [PROFILE_DIR])


def test_rewrites_and_translations_read_samples():
    base = {"name": "r", "system": "s", "template": "t", "queries": {"loader": "file", "path": "x.jsonl"}}
    for kind in ("rewrite", "translate"):
        with pytest.raises(RecipeError, match=f"a {kind} recipe reads samples"):
            parse_recipes({**base, "kind": kind}, "r")
    with pytest.raises(RecipeError, match=r"flagged_by: must be a list of refusal, empty_answer"):
        parse_recipes({**base, "kind": "rewrite", "queries": {"loader": "samples", "flagged_by": ["x"]}}, "r")


def test_the_generate_section_refuses_a_key_and_names_every_problem():
    with pytest.raises(RecipeError) as err:
        parse_generate({"endpoint": {"api_key": "sk-secret", "timeout_s": -1}, "limits": {"tasks": 0, "rpm": 3},
                        "recipes": ["missing.yaml", {"name": "x"}]}, read)
    problems = "\n".join(err.value.problems)
    assert "generate.endpoint.api_key: not allowed in a file; the key comes from OPENAI_API_KEY only" in problems
    assert "sk-secret" not in problems
    for expected in ("generate.endpoint.timeout_s: must be > 0", "generate.limits.tasks: must be > 0",
                     "generate.limits.rpm: unknown key", "generate.recipes[0]: cannot read missing.yaml",
                     "generate.recipes[1].queries.loader: required"):
        assert expected in problems, expected


def test_generate_is_a_default_stage_only_with_recipes(tmp_path):
    assert "generate" not in default_stages(demo_config(str(tmp_path / "lake")))
    config = demo_config(str(tmp_path / "lake"), generate={"recipes": [str(DC)]})
    assert default_stages(config) == ["normalize", "generate", "frames", "tokens", "shards"]
    with pytest.raises(ConfigError, match=r"^generate.recipes: recipe name 'mimicit_dc' used twice$"):
        demo_config(str(tmp_path / "lake"), generate={"recipes": [str(DC), str(DC)]})


def test_the_endpoint_takes_what_the_config_leaves_out_from_the_syphus_variables():
    env = {"OPENAI_API_TYPE": "azure", "OPENAI_API_BASE": "https://x.openai.azure.com",
           "OPENAI_API_VERSION": "2024-06-01", "OPENAI_API_ENGINE": "gpt4-deployment", "OPENAI_API_KEY": "sk-from-env"}
    endpoint = resolve(Endpoint(), env)
    assert (endpoint.api_type, endpoint.base_url, endpoint.model, endpoint.api_version) == (
        "azure", "https://x.openai.azure.com", "gpt4-deployment", "2024-06-01")
    assert endpoint.key.reveal() == "sk-from-env" and "sk-from-env" not in repr(endpoint)
    mine = resolve(Endpoint(base_url="http://u:pw@127.0.0.1:8080/v1?x=1", model="m", api_type="openai"), env)
    assert (mine.base_url, mine.model, mine.api_type, mine.host) == ("http://u:pw@127.0.0.1:8080/v1?x=1", "m",
                                                                     "openai", "127.0.0.1:8080")
    with pytest.raises(RecipeError) as err:
        resolve(Endpoint(api_type="azure"), {})
    assert [p.split(":")[0] for p in err.value.problems] == [
        "generate.endpoint.base_url", "generate.endpoint.model", "generate.endpoint.api_version"]
