"""Rule lifecycle (issue 21): status, validity window as of a day, match types, conflicts and precedence,
activity log, the migration of older workspaces."""
from __future__ import annotations

import json
import sqlite3

import pytest

from merch_app.data.workspace import MIGRATIONS, Workspace, open_workspace
from merch_app.explain.explanation import explain_item
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.rule_hook import describe_effect
from merch_app.ranking.rules import (
    MerchRule, RuleError, get_rule, load_rules, pattern_matches, rule_log, save_rule, set_rule_status, validate_rule,
)
from merch_app.ranking.types import RankRequest, Weights
from merch_app.services.bundles import BundleCache
from merch_app.services.ranking import open_ranker
from merch_app.services.rule_edits import RuleConflictError, save_checked, set_status_checked, workspace_conflicts
from ranking_fixtures import WordVectorEncoder, insert_items, make_bundle

LEX = Weights(lex=1, text=0, cf=0, pop=0)
ITEMS = [
    {"item_id": "L1", "title": "christmas lights warm white", "category": "Lights", "price": 9.0},
    {"item_id": "L2", "title": "christmas lights multicolour", "category": "Lights", "price": 12.0},
    {"item_id": "T1", "title": "christmas tree star", "category": "Decor", "price": 4.0},
    {"item_id": "T2", "title": "christmas tree bauble", "category": "Decor", "price": 3.0},
    {"item_id": "F1", "title": "fairy lights garden", "category": "Lights", "price": 7.0},
    {"item_id": "M1", "title": "blue mug", "category": "Kitchen", "price": 3.0},
]


@pytest.fixture
def bundle(ws):
    insert_items(ws, ITEMS)
    return make_bundle(ws, WordVectorEncoder())


def ranked(ws, bundle, rules, query, as_of=None, prefix=False, k=6):
    return Ranker(ws, bundle, rules=[validate_rule(r) for r in rules]).rank(
        RankRequest(query=query, k=k, weights=LEX, prefix=prefix, as_of=as_of))


def pin(item, position=1, pattern="christmas", **kw):
    return MerchRule("pin", pattern, {"item_id": item, "position": position}, **kw)


# ------------------------------------------------------------------ window and status
def test_a_rule_outside_its_window_does_nothing_and_inside_it_applies(ws, bundle):
    base = ranked(ws, bundle, [], "christmas", as_of="2026-11-20").item_ids
    assert base[0] != "M1"
    black_friday = pin("M1", start="2026-11-27", end="2026-11-30")
    assert ranked(ws, bundle, [black_friday], "christmas", as_of="2026-11-26").item_ids == base
    assert ranked(ws, bundle, [black_friday], "christmas", as_of="2026-11-27").item_ids[0] == "M1"
    assert ranked(ws, bundle, [black_friday], "christmas", as_of="2026-11-30").item_ids[0] == "M1"  # inclusive
    assert ranked(ws, bundle, [black_friday], "christmas", as_of="2026-12-01").item_ids == base
    rule = validate_rule(black_friday)
    assert [rule.state(d) for d in ("2026-11-26", "2026-11-28", "2026-12-01")] == ["scheduled", "live", "expired"]


def test_draft_and_hand_expired_rules_do_nothing(ws, bundle):
    base = ranked(ws, bundle, [], "christmas").item_ids
    assert ranked(ws, bundle, [pin("M1", status="draft")], "christmas").item_ids == base
    assert ranked(ws, bundle, [pin("M1", status="expired")], "christmas").item_ids == base
    assert ranked(ws, bundle, [pin("M1", status="live")], "christmas").item_ids[0] == "M1"
    assert MerchRule("hide", "*", {"item_id": "x"}, enabled=False).status == "draft"  # the old switch


def test_bad_window_and_status_are_refused():
    with pytest.raises(RuleError, match="start date 2026-12-01 is after the end date 2026-11-01"):
        validate_rule(pin("M1", start="2026-12-01", end="2026-11-01"))
    with pytest.raises(RuleError, match="'next friday' is not a date"):
        validate_rule(pin("M1", start="next friday"))
    with pytest.raises(RuleError, match="unknown status 'on'"):
        validate_rule(pin("M1", status="on"))
    with pytest.raises(RuleError, match="unknown match type 'fuzzy'"):
        validate_rule(pin("M1", match="fuzzy"))


def test_rule_cache_key_follows_the_as_of_day(ws, bundle):
    r = Ranker(ws, bundle, rules=[validate_rule(pin("M1", start="2026-11-27"))])
    req = RankRequest(query="christmas", k=3, weights=LEX, prefix=False, as_of="2026-11-26")
    assert r.rank(req).item_ids[0] != "M1"
    req.as_of = "2026-11-27"
    assert r.rank(req).item_ids[0] == "M1"


# ------------------------------------------------------------------ match types
@pytest.mark.parametrize("match, hits", [
    # queries: christmas, christmas lights, lights for christmas, christm (as you type), xmas
    ("exact", [True, False, False, False, False]),
    ("phrase", [True, True, True, False, False]),  # one word: phrase and all agree (see the two-word test)
    ("all", [True, True, True, False, False]),
])
def test_match_types_on_christmas(match, hits):
    queries = ["christmas", "Christmas  Lights", "lights for christmas", "christm", "xmas"]
    assert [pattern_matches("christmas", q, match) for q in queries] == hits


def test_phrase_and_all_with_two_words():
    assert pattern_matches("christmas lights", "red christmas lights", "phrase")
    assert not pattern_matches("christmas lights", "lights christmas", "phrase")
    assert pattern_matches("christmas lights", "lights for christmas", "all")
    assert not pattern_matches("christmas lights", "christmas", "all")
    assert pattern_matches("^christ", "christm", "regex")  # only a regex can fire on part of a word
    assert not pattern_matches("^christmas$", "christmas lights", "regex")


def test_as_you_type_prefix_does_not_fire_a_word_rule(ws, bundle):
    base = ranked(ws, bundle, [], "christm", prefix=True).item_ids
    for match in ("exact", "phrase", "all"):
        assert ranked(ws, bundle, [pin("M1", match=match)], "christm", prefix=True).item_ids == base
    assert ranked(ws, bundle, [pin("M1", match="phrase")], "christmas lights").item_ids[0] == "M1"
    assert ranked(ws, bundle, [pin("M1", match="exact")], "christmas lights").item_ids[0] != "M1"


def test_old_patterns_read_as_match_types():
    cases = {"re:^mug$": ("regex", "^mug$"), "exact:Red Mug": ("exact", "Red Mug"), "red mug": ("phrase", "red mug"),
             "*": ("phrase", "*")}
    for old, expected in cases.items():
        r = MerchRule("hide", old, {"item_id": "x"})
        assert (r.match, r.pattern) == expected
    glob = MerchRule("hide", "mug*", {"item_id": "x"})
    assert glob.match == "regex"
    assert [glob.pattern_hits(q) for q in ("mugs", "mug", "red mug")] == [True, True, False]


# ------------------------------------------------------------------ conflicts and precedence
def test_conflicting_pin_is_refused_on_save_unless_forced(ws):
    first = save_rule(ws, pin("L1", pattern="christmas"))
    save_checked(ws, pin("T1", pattern="mug"))  # no query fires both
    with pytest.raises(RuleConflictError) as err:
        save_checked(ws, pin("T1", pattern="christmas lights"))
    msg = str(err.value)
    assert "refused" in msg and f"pin #{first.rule_id}" in msg and "position 1" in msg
    assert "'christmas lights'" in msg and "--force" in msg
    assert len(load_rules(ws)) == 2  # nothing stored
    stored, conflicts = save_checked(ws, pin("T1", pattern="christmas lights"), force=True)
    assert [c.kind for c in conflicts] == ["pin position"]
    assert [(c.kind, c.winner.label()) for c in workspace_conflicts(ws)] == [
        ("pin position", f"pin #{stored.rule_id}")]  # newer wins; 'mug' and 'christmas lights' share no query
    # a draft is not refused; making it live is
    draft, none = save_checked(ws, pin("F1", pattern="christmas", status="draft"))
    assert none == []
    with pytest.raises(RuleConflictError, match=f"Making rule {draft.rule_id} live refused"):
        set_status_checked(ws, draft.rule_id, "live")
    assert get_rule(ws, draft.rule_id).status == "draft"


def test_conflicts_need_overlapping_windows_and_queries(ws):
    save_rule(ws, pin("L1", pattern="christmas", start="2026-11-01", end="2026-11-10"))
    save_checked(ws, pin("T1", pattern="christmas", start="2026-11-11", end="2026-11-20"), as_of="2026-10-01")
    save_checked(ws, pin("T2", pattern="mug"), as_of="2026-10-01")  # no query fires both
    save_checked(ws, MerchRule("boost", "christmas", {"attribute": "category", "value": "decor", "weight": 1}),
                 as_of="2026-10-01")
    with pytest.raises(RuleConflictError, match="boost and bury the same items"):
        save_checked(ws, MerchRule("bury", "*", {"attribute": "category", "value": "Decor", "weight": 1}),
                     as_of="2026-10-01")
    with pytest.raises(RuleConflictError, match="hide and pin item L1"):
        save_checked(ws, MerchRule("hide", "christmas lights", {"item_id": "L1"}), as_of="2026-10-01")
    assert workspace_conflicts(ws, as_of="2026-10-01") == []


def test_pin_beats_pin_by_priority_then_newer(ws, bundle):
    a = save_rule(ws, pin("L1", pattern="christmas"))
    b = save_rule(ws, pin("T1", pattern="lights"))
    r = Ranker.for_workspace(ws, bundle)
    rl = r.rank(RankRequest(query="christmas lights", k=6, weights=LEX, prefix=False))
    assert rl.item_ids[0] == "T1"  # newer wins at equal priority
    lost = rl.rule_effects["L1"][-1]
    assert lost["overruled"] and lost["precedence"] == [f"pin #{b.rule_id} beat pin #{a.rule_id}"]
    assert describe_effect(lost).startswith(f"not applied (wanted position 1); pin #{b.rule_id} beat pin #{a.rule_id}")
    save_rule(ws, pin("L1", pattern="christmas", rule_id=a.rule_id, priority=5))
    r = Ranker.for_workspace(ws, bundle)
    assert r.rank(RankRequest(query="christmas lights", k=6, weights=LEX, prefix=False)).item_ids[0] == "L1"


def test_pin_beat_boost_in_the_explanation(ws, bundle):
    boost = save_rule(ws, MerchRule("boost", "christmas", {"attribute": "item", "value": "T2", "weight": 5}))
    pinned = save_rule(ws, pin("M1", pattern="christmas"))
    r = Ranker.for_workspace(ws, bundle)
    req = RankRequest(query="christmas", k=6, weights=LEX, prefix=False)
    rl = r.rank(req)
    assert rl.item_ids[:2] == ["M1", "T2"]
    text = f"pin #{pinned.rule_id} beat boost #{boost.rule_id}"
    exp = explain_item(r, req, "M1")
    assert text in describe_effect(exp.rules[0]) and "precedence: hide > pin > slot > bury > boost" in \
        describe_effect(exp.rules[0])
    assert any(text in describe_effect(e) for e in explain_item(r, req, "T2").rules)


def test_bury_beats_boost_and_hide_beats_pin(ws, bundle):
    boost = MerchRule("boost", "*", {"attribute": "item", "value": "T2", "weight": 3}, rule_id=7)
    bury = MerchRule("bury", "*", {"attribute": "category", "value": "decor", "weight": 1}, rule_id=8)
    rl = ranked(ws, bundle, [boost, bury], "christmas tree")
    t2 = {e["kind"]: e for e in rl.rule_effects["T2"]}
    assert t2["boost"]["effect"] == 0.0 and t2["boost"]["overruled"]
    assert t2["bury"]["effect"] == -1.0 and t2["bury"]["precedence"] == ["bury #8 beat boost #7"]
    assert rl.components["rules"][rl.item_ids.index("T2")] == pytest.approx(-1.0)
    hide = MerchRule("hide", "*", {"item_id": "M1"}, rule_id=4)
    r = Ranker(ws, bundle, rules=[validate_rule(hide), validate_rule(pin("M1", rule_id=12))])
    req = RankRequest(query="christmas", k=6, weights=LEX, prefix=False)
    assert "M1" not in r.rank(req).item_ids
    exp = explain_item(r, req, "M1")
    assert exp.status == "hidden"
    assert [describe_effect(e).split(" (precedence")[0] for e in exp.rules] == [
        "hidden; hide #4 beat pin #12", "not applied (wanted position 1); hide #4 beat pin #12"]


# ------------------------------------------------------------------ storage, log, migration
def test_activity_log_records_every_change(ws):
    rule = save_rule(ws, pin("L1", owner="ana", comment="BF campaign", tags="black friday, lights"), actor="ana")
    assert rule.owner == "ana" and rule.tags == ["black friday", "lights"] and rule.created and rule.updated
    save_rule(ws, pin("L1", position=2, rule_id=rule.rule_id, owner="ana", tags=["black friday", "lights"]),
              actor="ben")
    set_rule_status(ws, rule.rule_id, "expired", actor="ben")
    log = rule_log(ws, rule.rule_id)
    assert [(e["action"], e["actor"]) for e in log] == [("status", "ben"), ("changed", "ben"), ("created", "ana")]
    assert log[0]["changes"] == {"status": ["live", "expired"]}
    assert log[1]["changes"]["params"] == [{"item_id": "L1", "position": 1}, {"item_id": "L1", "position": 2}]
    assert log[1]["changes"]["comment"] == ["BF campaign", ""]
    assert log[2]["changes"]["status"] == [None, "live"]


def test_migration_of_an_old_workspace_keeps_what_rules_did(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    old = Workspace(conn, path)
    version = [m.__name__ for m in MIGRATIONS].index("_migration_rule_lifecycle")  # the schema just before it
    with conn:
        for m in MIGRATIONS[:version]:
            m(old)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.executemany("INSERT INTO rules(name, kind, pattern, params, enabled, priority) VALUES (?, ?, ?, ?, ?, 0)",
                         [("", "pin", "christmas", json.dumps({"item_id": "L1", "position": 1}), 1),
                          ("", "hide", "exact:blue mug", json.dumps({"item_id": "M1"}), 1),
                          ("", "hide", "re:^x+$", json.dumps({"item_id": "M1"}), 0),
                          ("", "hide", "mug*", json.dumps({"item_id": "M1"}), 1)])
    conn.close()
    db = open_workspace(path)
    rules = load_rules(db)
    assert [(r.status, r.match, r.pattern, r.start, r.end) for r in rules] == [
        ("live", "phrase", "christmas", None, None), ("live", "exact", "blue mug", None, None),
        ("draft", "regex", "^x+$", None, None), ("live", "regex", rules[3].pattern, None, None)]
    assert rules[3].pattern_hits("mugs") and not rules[3].pattern_hits("red mug")
    assert [r.rule_id for r in load_rules(db, enabled_only=True)] == [1, 2, 4]
    db.close()


def test_rule_changes_take_effect_through_the_shared_bundle_cache(ws):
    """Rules are not part of a bundle: a cached bundle ranks with the rules stored when the ranker is made."""
    insert_items(ws, ITEMS)
    cache = BundleCache()
    req = RankRequest(query="christmas", k=3, weights=LEX, prefix=False)
    before = open_ranker(ws, encoder="hashing:64", cache=cache).rank(req).item_ids
    rule = save_rule(ws, pin("M1"))
    assert open_ranker(ws, encoder="hashing:64", cache=cache).rank(req).item_ids[0] == "M1"
    set_rule_status(ws, rule.rule_id, "draft")
    assert open_ranker(ws, encoder="hashing:64", cache=cache).rank(req).item_ids == before
    assert cache.loads == 1
