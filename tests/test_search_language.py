"""Search that fits the language: Han segmentation, pinyin, spelling correction, lexical coverage."""
from __future__ import annotations

import csv
import json
import sqlite3

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merch_app.cli.main import cli
from merch_app.data import text_tokens
from merch_app.data.importer import import_file
from merch_app.data.workspace import MIGRATIONS, get_setting, migrate, open_workspace
from merch_app.model.hashing_encoder import HashingEncoder
from merch_app.ranking.fusion import lexical_score
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.spelling import Speller
from merch_app.ranking.types import RankRequest, Weights
from merch_app.services.search_index import set_search_tokens
from ranking_fixtures import insert_items, make_bundle

ZH_ITEMS = [
    ("Z01", "红色心形烛台", "家居装饰", "29.9"),
    ("Z02", "白色陶瓷马克杯", "厨房用品", "19.9"),
    ("Z03", "不锈钢保温杯500ml", "厨房用品", "59"),
    ("Z04", "蓝牙无线耳机", "数码配件", "199"),
    ("Z05", "玻璃茶杯套装", "厨房用品", "39"),
    ("Z06", "毛绒小狗玩具", "玩具", "49"),
    ("Z07", "女士真丝连衣裙", "服装", "299"),
    ("Z08", "iPhone 15 手机壳", "数码配件", "39"),
    ("Z09", "香薰蜡烛礼盒", "家居装饰", "89"),
    ("Z10", "儿童保温水杯", "厨房用品", "45"),
    ("Z11", "头戴式降噪耳机", "数码配件", "599"),
    ("Z12", "北欧风陶瓷花瓶", "家居装饰", "79"),
]
CUPS = {"Z02", "Z03", "Z05", "Z10"}
LEX_ONLY = Weights(lex=1, text=0, cf=0, pop=0)


# ----------------------------------------------------------------- tokenizers
def test_han_run_indexed_as_words_and_characters():
    assert text_tokens.index_text("红色心形烛台").split() == ["红色", "心形", "烛台", "红", "色", "心", "形", "烛", "台"]
    # long words also give their dictionary sub-words (search mode)
    assert {"马克", "马克杯"} <= set(text_tokens.index_text("白色陶瓷马克杯").split())


def test_latin_text_is_left_alone():
    text = "WHITE HANGING HEART T-LIGHT HOLDER"
    assert text_tokens.index_text(text) is text
    assert text_tokens.token_row(text, None, "home", "Decor") is None


def test_mixed_script_keeps_latin_and_digits():
    tokens = text_tokens.index_text("iPhone 15 手机壳").split()
    assert tokens[:2] == ["iPhone", "15"]
    assert {"手机", "壳", "手", "机"} <= set(tokens)
    assert text_tokens.query_words("iPhone 15 手机壳") == ["iPhone 15 ", "手机", "壳"]


def test_backoff_drops_noun_suffix_and_keeps_subwords():
    assert text_tokens.backoff_words("杯子") == ["杯"]
    assert text_tokens.backoff_words("无线耳机")[:2] == ["无线", "耳机"]


def test_pinyin_full_and_initials():
    assert text_tokens.pinyin_text("红色心形烛台") == "hongse hs xinxing xx zhutai zt hongsexinxingzhutai hsxxzt"
    assert "cdb" in text_tokens.pinyin_text("充电宝").split()  # jieba cuts 充电 + 宝; the whole run counts too
    assert text_tokens.pinyin_text("plain english") is None
    assert text_tokens.pinyin_text("重庆") == "chongqing cq"  # the phrase reading, not zhong


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from(list("红色烛台杯子 \"*'-()ORNEAR;a1_\u3000\U00020000\x00\ufffd")) | st.characters(),
               max_size=40))
def test_hostile_text_through_tokenizers(text):
    out = text_tokens.index_text(text)
    assert out is None or isinstance(out, str)
    words = text_tokens.query_words(text)
    def visible(t):
        return "".join(c for c in t if not c.isspace())

    assert visible("".join(words)) == visible(text)  # segmenting never loses or invents a character
    text_tokens.pinyin_text(text)


# ------------------------------------------------------------ Chinese search
@pytest.fixture
def zh_csv(tmp_path):
    path = tmp_path / "商品.csv"
    with open(path, "w", encoding="gbk", newline="") as fh:
        csv.writer(fh).writerows([("商品编号", "商品名称", "类别", "价格"), *ZH_ITEMS])
    return path


@pytest.fixture
def zh_ranker(ws, zh_csv):
    import_file(ws, zh_csv)
    return Ranker(ws, make_bundle(ws, HashingEncoder(32)))


@pytest.mark.parametrize("query, item", [("烛台", "Z01"), ("马克杯", "Z02"), ("保温杯", "Z03"), ("蓝牙耳机", "Z04"),
                                         ("陶瓷马克杯", "Z02"), ("降噪耳机", "Z11"), ("花瓶", "Z12")])
def test_chinese_words_find_their_item_first(zh_ranker, query, item):
    rl = zh_ranker.rank(RankRequest(query=query, k=3))
    assert rl.item_ids[0] == item
    assert rl.item_terms[0]


def test_two_earphones_share_the_top(zh_ranker):
    assert set(zh_ranker.rank(RankRequest(query="耳机", k=2, weights=LEX_ONLY)).item_ids) == {"Z04", "Z11"}


def test_unknown_word_backs_off_to_characters(zh_ranker):
    rl = zh_ranker.rank(RankRequest(query="杯子", k=3, weights=LEX_ONLY))
    assert set(rl.item_ids) <= CUPS
    assert any("杯子" in n and "杯" in n for n in rl.notes)


@pytest.mark.parametrize("query", ["zhutai", "hongse", "hongse zhutai"])
def test_pinyin_finds_the_item(zh_ranker, query):
    assert zh_ranker.rank(RankRequest(query=query, k=1, weights=LEX_ONLY)).item_ids == ["Z01"]


def test_explanation_and_json_name_the_chinese_terms(ws, ws_path, zh_csv):
    import_file(ws, zh_csv)
    res = CliRunner().invoke(cli, ["query", "烛台", "-w", str(ws_path), "--encoder", "hashing", "--json", "--k", "3"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows[0]["item_id"] == "Z01" and rows[0]["matched_terms"] == ["烛台"]
    res = CliRunner().invoke(cli, ["explain", "烛台", "--item", "Z01", "-w", str(ws_path), "--encoder", "hashing",
                                   "--json"])
    exp = json.loads(res.output)
    assert [t["term"] for t in exp["lexical"]["terms"]] == ["烛台"]
    assert exp["lexical"]["terms"][0]["fields"] == ["title"]


def test_plain_mode_is_unicode61_alone_and_switching_back_rebuilds(ws, zh_csv):
    import_file(ws, zh_csv)
    set_search_tokens(ws, "plain")
    assert ws.execute("SELECT count(*) FROM items_tokens").fetchone()[0] == 0
    rl = Ranker(ws, make_bundle(ws, HashingEncoder(32))).rank(RankRequest(query="烛台", weights=LEX_ONLY))
    assert rl.raw_components["lexical"].max() == 0  # a Han run is one token: 烛台 is not inside 红色心形烛台
    info = set_search_tokens(ws, "auto")
    assert info == {"mode": "auto", "previous": "plain", "segmented_items": 12}
    rl = Ranker(ws, make_bundle(ws, HashingEncoder(32))).rank(RankRequest(query="烛台", weights=LEX_ONLY))
    assert rl.item_ids[0] == "Z01"


def test_cancelled_reindex_leaves_previous_index(ws, zh_csv):
    import_file(ws, zh_csv)
    set_search_tokens(ws, "plain")
    before = ws.execute("SELECT rowid, * FROM items_fts WHERE items_fts MATCH 'zhutai'").fetchall()

    def boom():
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        set_search_tokens(ws, "auto", cancel=boom)
    assert get_setting(ws, text_tokens.SETTING, "auto") == "plain"
    assert ws.execute("SELECT count(*) FROM items_tokens").fetchone()[0] == 0
    assert before == [] == ws.execute("SELECT rowid FROM items_fts WHERE items_fts MATCH 'zhutai'").fetchall()


def test_old_workspace_migrates_to_segmented_index(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    from merch_app.data.workspace import Workspace

    old = Workspace(conn, path)
    with conn:
        for m in MIGRATIONS[:3]:
            m(old)
        conn.execute("PRAGMA user_version = 3")
        conn.execute("INSERT INTO items(item_id, title) VALUES ('Z01', '红色心形烛台'), ('A1', 'red candle')")
        conn.execute("INSERT INTO items_fts(items_fts) VALUES ('rebuild')")
    conn.close()
    db = open_workspace(path)
    assert migrate(db) == len(MIGRATIONS)
    hits = db.execute("SELECT rowid FROM items_fts WHERE items_fts MATCH '烛台'").fetchall()
    assert len(hits) == 1
    assert db.execute("SELECT rowid FROM items_fts WHERE items_fts MATCH 'candle'").fetchall()
    db.close()


# --------------------------------------------------------- spelling + coverage
LATIN = [
    {"item_id": "L1", "title": "CHRISTMAS LIGHTS 10 REINDEER"},
    {"item_id": "L2", "title": "CHILLI LIGHTS"},
    {"item_id": "L3", "title": "CHRISTMAS TREE DECORATION"},
    {"item_id": "L4", "title": "FAIRY LIGHTS GARDEN"},
    {"item_id": "L5", "title": "PAPER CHRISTMAS CRACKERS"},
]


@pytest.fixture
def latin_ranker(ws):
    insert_items(ws, LATIN)
    return Ranker(ws, make_bundle(ws, HashingEncoder(32)))


def test_misspelt_word_is_corrected_and_said_so(latin_ranker):
    rl = latin_ranker.rank(RankRequest(query="chrismas lights", weights=LEX_ONLY, prefix=False))
    assert rl.item_ids[0] == "L1"
    assert rl.corrected_query == "christmas lights"
    assert rl.corrections == [{"original": "chrismas", "corrected": "christmas", "distance": 1, "items": 3,
                               "alternatives": [{"word": "christmas", "weight": 1.0, "distance": 1, "items": 3,
                                                 "sessions": 0}]}]
    assert any("christmas lights" in n for n in rl.notes)


def test_real_word_is_never_corrected(latin_ranker):
    rl = latin_ranker.rank(RankRequest(query="chilli lights", weights=LEX_ONLY, prefix=False))
    assert rl.corrected_query is None and rl.corrections == []
    assert rl.item_ids[0] == "L2"


def test_literal_query_is_not_corrected(latin_ranker):
    rl = latin_ranker.rank(RankRequest(query="chrismas lights", weights=LEX_ONLY, prefix=False, literal=True))
    assert rl.corrected_query is None
    # the one matching word does not get the full keyword weight
    assert rl.raw_components["lexical"].max() < 0.6


def test_speller_limits_and_ties(ws):
    insert_items(ws, [{"item_id": "a", "title": "mug mugs"}, {"item_id": "b", "title": "mud"},
                      {"item_id": "c", "title": "mug"}])
    sp = Speller(ws)
    assert sp.correct("mog").corrected == "mug"  # 1 edit; mug is in two items, mud in one
    assert sp.correct("mxgx") is None  # 2 edits on a 4-letter word is too far
    assert sp.correct("12") is None and sp.correct("ab") is None


def test_coverage_caps_partial_matches():
    bm25 = np.array([4.0, 4.0, 2.0, 0.0])
    cover = np.array([1.0, 0.4, 1.0, 0.0])
    assert lexical_score(bm25, cover).tolist() == [1.0, 0.4, 0.5, 0.0]


def test_explanation_terms_add_up_to_capped_lexical(latin_ranker):
    from merch_app.explain.explanation import explain_item

    req = RankRequest(query="chilli garden", weights=Weights(lex=0.5, text=0.5, cf=0, pop=0), prefix=False)
    rl = latin_ranker.rank(req)
    for item in rl.item_ids[:3]:
        exp = explain_item(latin_ranker, req, item)
        lex = next(c for c in exp.components if c["component"] == "lexical")
        assert sum(t["contribution"] for t in exp.lexical["terms"]) == pytest.approx(lex["contribution"], abs=1e-9)
        assert exp.lexical["coverage"] < 1.0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_hostile_queries_rank_without_error(latin_ranker, text):
    rl = latin_ranker.rank(RankRequest(query=text, k=3))
    assert len(rl.item_ids) <= 3


def test_chrismas_lights_on_the_demo_data(ws):
    from conftest import DEMO_RETAIL

    import_file(ws, DEMO_RETAIL)
    ranker = Ranker(ws, make_bundle(ws, HashingEncoder(32)))
    rl = ranker.rank(RankRequest(query="chrismas lights", k=3, prefix=False))
    assert rl.corrected_query == "christmas lights"
    assert all("CHRISTMAS" in t and "LIGHT" in t for t in rl.titles), rl.titles


def test_workspace_remembers_its_own_encoder_folder(ws, ws_path, zh_csv, tmp_path):
    """A Chinese/multilingual model folder set once is the encoder of every later command."""
    from finetune_support import tiny_bert

    from merch_app.model.bundle import load_bundle
    from merch_app.model.encoder import workspace_encoder

    import_file(ws, zh_csv)
    folder = tiny_bert(tmp_path / "zh-bert")
    res = CliRunner().invoke(cli, ["settings", "set", "encoder", str(folder), "-w", str(ws_path)])
    assert res.exit_code == 0, res.output
    assert workspace_encoder(ws).model_dir == folder.resolve()
    assert load_bundle(ws).encoder.model_dir == folder.resolve()
    res = CliRunner().invoke(cli, ["query", "烛台", "-w", str(ws_path), "--json"])
    assert json.loads(res.stdout)[0]["item_id"] == "Z01"  # notes, if any, go to stderr
    bad = CliRunner().invoke(cli, ["settings", "set", "encoder", str(tmp_path / "nothing"), "-w", str(ws_path)])
    assert bad.exit_code != 0 and "does not exist" in bad.output
    assert workspace_encoder(ws).model_dir == folder.resolve()  # the earlier choice stays
    CliRunner().invoke(cli, ["settings", "reset", "encoder", "-w", str(ws_path)])
    assert workspace_encoder(ws).encoder_id.startswith("all-MiniLM-L6-v2")


def test_two_edits_only_for_long_words(ws):
    insert_items(ws, [{"item_id": "y", "title": "YELLOW CUSHION"}, {"item_id": "c", "title": "CHRISTMAS"}])
    sp = Speller(ws)
    assert sp.correct("pillow") is None  # 2 edits from yellow: too far for 6 letters
    assert sp.correct("chrstmss").corrected == "christmas"  # 2 edits allowed from 7 letters on
