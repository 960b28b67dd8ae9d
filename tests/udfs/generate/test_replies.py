"""Replies to pairs (the parsers), the checks a reply must pass, and the sample or reject each
query ends as (``udfs.generate.outcomes``), on replies written here."""
from __future__ import annotations

import json

import pytest

from tests.support.samples import video
from udfs.generate.checks import pairs_problem, reply_problem, translation_problem
from udfs.generate.loaders import Query
from udfs.generate.outcomes import Request, outcome, record_index
from udfs.generate.parsers import ParseError, get_parser
from udfs.generate.parsers.json_pairs import pairs_json
from udfs.generate.parsers.syphus import syphus_text
from udfs.generate.recipe import parse_recipes
from udfs.generate.scripts import LANGUAGES, script_problem
from udfs.sample import make_media

REQUEST = Request("key", "prompt", "model", json.dumps({"temperature": 0}), "127.0.0.1:8080")


def test_the_syphus_parser_reads_labels_as_models_write_them():
    reply = ("Sure! Here are the pairs.\n\n**Question 1:** What moves?\n**Answer 1:** A cube,\nthen a ball.\n\n"
             "- Question: Where?\n  Answer: Left.\nQuestion: dangling")
    assert get_parser("syphus").parse(reply) == [("What moves?", "A cube,\nthen a ball."), ("Where?", "Left.")]
    assert get_parser("syphus").parse(syphus_text([("a?", "b"), ("c?", "d")])) == [("a?", "b"), ("c?", "d")]
    with pytest.raises(ParseError, match="no 'Question: ... Answer: ...' pair"):
        get_parser("syphus").parse("The video shows a cube.")


def test_the_json_parser_finds_the_pairs_and_asks_for_their_schema():
    parser = get_parser("json")
    pairs = [("<media>\nWhat?", "This."), ("Why?", "Because.")]
    assert parser.parse("```json\n" + pairs_json(pairs) + "\n```") == pairs
    assert parser.parse('[{"question": "q", "answer": "a"}]') == [("q", "a")]
    for reply, reason in (("no json here", "no JSON object"), ('{"pairs": []}', "no list of pairs"),
                          ('{"pairs": [{"question": 1}]}', r"pairs\[0\] is not")):
        with pytest.raises(ParseError, match=reason):
            parser.parse(reply)
    schema = parser.response_format(2, 3)["json_schema"]["schema"]["properties"]["pairs"]
    assert (schema["minItems"], schema["maxItems"]) == (2, 3)
    assert get_parser("syphus").response_format(1, 3) is None


@pytest.mark.parametrize(("code", "text", "problem"), [
    ("zh", "视频里有一个红色的立方体。", None),
    ("zh", "The video shows a red cube.", "wrong script: 0% of the letters are Han"),
    ("ja", "ビデオには赤い立方体があります。", None),
    ("ja", "视频里有一个红色的立方体。", "no Hiragana/Katakana letters"),
    ("ko", "영상에 빨간 정육면체가 있습니다.", None),
    ("ar", "يظهر في الفيديو مكعب أحمر.", None),
    ("ar", "123 !!", "no letters"),
    ("fr", "La vidéo montre un cube rouge (CLEVRER).", None),
    ("de", "Не по-немецки.", "mostly Cyrillic"),
])
def test_scripts_of_the_target_languages(code, text, problem):
    found = script_problem(text, LANGUAGES[code], 0.5)
    assert found is None if problem is None else problem in found


def test_translation_checks_placeholders_script_and_that_it_translated():
    original = [("<media>\nWhat is red?", "The cube.")]
    chinese = LANGUAGES["zh"]
    assert translation_problem(original, [("<media>\n什么是红色的？", "立方体。")], chinese, 0.5) is None
    assert "media placeholder lost" in translation_problem(original, [("什么是红色的？", "立方体。")], chinese, 0.5)
    assert "not translated" in translation_problem(original, original, LANGUAGES["fr"], 0.5)


def test_replies_that_cannot_become_pairs():
    assert reply_problem("  ", "stop", 10) == "empty reply"
    assert reply_problem("Question: a", "length", 10).startswith("over length: the reply reached max_tokens (10)")
    assert reply_problem("I'm sorry, I cannot help with that.", "stop", 10).startswith("refusal")
    assert pairs_problem([("What?", " ")]) == "empty answer in pair 0"
    assert pairs_problem([("<media>", "x")]) == "empty question in pair 0"
    assert pairs_problem([("What?", "As an AI, I cannot see videos.")]).startswith("refusal")


def recipe(kind="generate", **changes):
    raw = {"name": "r", "kind": kind, "system": "s", "template": "t", "pairs": 2,
           "queries": {"loader": "samples"} if kind != "generate" else {"loader": "file", "path": "q.jsonl"},
           **changes}
    return parse_recipes(raw, "r")[0]


def generation(reply: str, finish_reason: str = "stop") -> dict:
    return {"reply": reply, "finish_reason": finish_reason, "prompt_tokens": 30, "completion_tokens": 12}


def test_a_generated_sample_has_the_query_media_and_its_lineage():
    media = [make_media("video", "/v/a.mp4")]
    query = Query("q1", media, {"captions": ["x"]})
    row = outcome(recipe(), query, REQUEST, generation("Question: A?\nAnswer: B.\nQuestion: C?\nAnswer: D.\n"
                                                       "Question: E?\nAnswer: F."))
    assert row["outcome"] == "sample" and row["source"] == "r" and row["format"] == "generate:r"
    assert row["conversations"] == [{"role": "user", "content": "<media>\nA?"}, {"role": "assistant", "content": "B."},
                                    {"role": "user", "content": "C?"}, {"role": "assistant", "content": "D."}]
    assert row["media"] == media and row["record_index"] == record_index("q1")
    assert (row["recipe"], row["kind"], row["query_id"], row["prompt_tokens"], row["endpoint_host"]) == (
        "r", "generate", "q1", 30, "127.0.0.1:8080")
    again = outcome(recipe(), query, REQUEST, generation("Question: A?\nAnswer: B."))
    assert again["sample_id"] == row["sample_id"]  # the id is the query's, whatever the reply


def test_every_query_ends_as_one_outcome():
    query = Query("q1", [], None)
    reject = outcome(recipe(), query, REQUEST, generation("Nothing to parse."))
    assert (reject["outcome"], reject["reason"], reject["raw"]) == (
        "reject", "unparseable reply: no 'Question: ... Answer: ...' pair", "Nothing to parse.")
    assert reject["stage"] == "generate" and reject["source_file"] == "recipe:r"
    assert outcome(recipe(), query, REQUEST, None)["outcome"] == "pending"
    assert outcome(recipe(), query, REQUEST, None, "HTTP 400: bad")["reason"] == "request failed: HTTP 400: bad"
    assert outcome(recipe(), Query("q2", problem="bad record"), REQUEST, None)["reason"] == "bad record"
    with_placeholder = outcome(recipe(), query, REQUEST, generation("Question: <media> A?\nAnswer: B."))
    assert with_placeholder["reason"] == "1 media placeholders for 0 media items"
    assert outcome(recipe(min_pairs=2), query, REQUEST, generation("Question: A?\nAnswer: B."))["reason"] == \
        "1 pairs in the reply, 2 expected"


def test_a_rewrite_is_a_new_version_of_the_sample():
    original = video("s1", answers=("Sorry, I can't see the video.",))
    query = Query(original["sample_id"], original["media"], None, original)
    row = outcome(recipe("rewrite"), query, REQUEST, generation("Question: ignored\nAnswer: A red cube moves."))
    assert row["source"] == original["source"] and row["sample_id"] != original["sample_id"]
    assert row["original_sample_id"] == original["sample_id"] and row["kind"] == "rewrite"
    assert [t["content"] for t in row["conversations"]] == [original["conversations"][0]["content"],
                                                            "A red cube moves."]
    instructions = outcome(recipe("rewrite", rewrite="instructions"), query, REQUEST,
                           generation("Question: <media>What moves?\nAnswer: ignored"))
    assert [t["content"] for t in instructions["conversations"]] == [
        "<media>\nWhat moves?", original["conversations"][1]["content"]]


def test_a_translation_keeps_its_link_and_language():
    original = video("s1", answers=("A red cube.",))
    query = Query(f"{original['sample_id']}:zh", original["media"], None, original, "zh")
    translate = recipe("translate", languages=["zh"], parser="json")
    question = original["conversations"][0]["content"].replace("What", "什么")
    row = outcome(translate, query, REQUEST, generation(pairs_json([(question + "是什么颜色", "红色的立方体。")])))
    assert (row["outcome"], row["language"], row["lang"], row["original_sample_id"]) == (
        "sample", "zh", "zh", original["sample_id"])
    lost = outcome(translate, query, REQUEST, generation(pairs_json([("什么颜色", "红色的立方体。")])))
    assert lost["outcome"] == "reject" and "media placeholder lost" in lost["reason"]
    english = outcome(translate, query, REQUEST, generation(pairs_json([(question, "A blue cube.")])))
    assert "wrong script" in english["reason"]
