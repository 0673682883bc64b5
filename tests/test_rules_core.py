"""Merchandising rules: patterns, validation, effects in the ranker and explanations, storage."""
from __future__ import annotations

import numpy as np
import pytest

from merch_app.ranking.ranker import Ranker
from merch_app.ranking.rules import (
    MerchRule,
    RuleError,
    delete_rule,
    get_rule,
    load_rules,
    pattern_matches,
    rewrite_query,
    save_rule,
    set_rule_status,
    validate_rule,
)
from ranking_fixtures import SAMPLE_ITEMS, SAMPLE_SYNONYMS, WordVectorEncoder, insert_items, make_bundle
from merch_app.ranking.types import COMPONENTS, Filters, RankRequest, Weights

LEX = Weights(lex=1, text=0, cf=0, pop=0)


@pytest.fixture
def bundle(ws):
    items = [dict(it) for it in SAMPLE_ITEMS]
    items[3]["tags"] = "candle, gift"
    insert_items(ws, items)
    return make_bundle(ws, WordVectorEncoder(synonyms=SAMPLE_SYNONYMS))


def rank(ws, bundle, rules, query, k=8, **kw):
    return Ranker(ws, bundle, rules=[validate_rule(r) for r in rules]).rank(
        RankRequest(query=query, k=k, weights=kw.pop("weights", LEX), prefix=False, **kw))


@pytest.mark.parametrize("pattern, query, hit", [
    ("*", "anything", True), ("", "", True),
    ("mug", "Red  MUG", True), ("mug", "mugs", False), ("red mug", "big red mug set", True),
    ("exact:red mug", "red mug", True), ("exact:red mug", "red mug set", False),
    ("mug*", "mugs", True), ("*mug", "red mug", True), ("mug?", "mug", False),
    ("re:^(mug|cup)s?$", "Cups", True), ("re:^(mug|cup)s?$", "tea cups", False),
])
def test_pattern_matches(pattern, query, hit):
    assert pattern_matches(pattern, query) is hit


def test_pin_puts_item_at_its_position_even_if_not_a_candidate(ws, bundle):
    base = rank(ws, bundle, [], "candle", candidates=2)
    assert "22004" not in base.item_ids  # the mug is no candidate for "candle"
    for position in (1, 2, 3):
        rule = MerchRule("pin", "candle", {"item_id": "22004", "position": position})
        rl = rank(ws, bundle, [rule], "candle", candidates=2)
        assert rl.item_ids[position - 1] == "22004"
        assert rl.n_candidates == base.n_candidates + 1
        assert list(rl.scores) == sorted(rl.scores, reverse=True)
        np.testing.assert_allclose(sum(rl.components[c] for c in COMPONENTS), rl.scores, atol=1e-6)
        eff = rl.rule_effects["22004"][0]
        assert eff["pinned_to"] == position and eff["to_rank"] == position
        assert eff["rule"] == f"pin 22004 at {position} for 'candle'"
    # another query is untouched
    assert rank(ws, bundle, [MerchRule("pin", "candle", {"item_id": "22004", "position": 1})],
                "heart").item_ids == rank(ws, bundle, [], "heart").item_ids


def test_pin_respects_filters(ws, bundle):
    rule = MerchRule("pin", "*", {"item_id": "22004", "position": 1})
    rl = rank(ws, bundle, [rule], "candle", filters=Filters(category="Home"))
    assert "22004" not in rl.item_ids


def test_boost_and_bury_by_category_tag_price_item(ws, bundle):
    base = rank(ws, bundle, [], "candle holder")
    assert base.item_ids[:2] == ["22002", "22001"]
    rl = rank(ws, bundle, [MerchRule("bury", "*", {"attribute": "item", "value": "22002", "weight": 5})],
              "candle holder")
    assert rl.item_ids[-1] == "22002" and rl.components["rules"][-1] == pytest.approx(-5)
    eff = rl.rule_effects["22002"][0]
    assert eff["kind"] == "bury" and eff["effect"] == -5 and eff["from_rank"] == 1
    assert eff["to_rank"] == len(rl.item_ids)
    assert rank(ws, bundle, [], "heart").item_ids[:2] == ["22003", "85123A"]
    rl = rank(ws, bundle, [MerchRule("boost", "*", {"attribute": "category", "value": "home",
                                                    "weight": 3})], "heart")
    assert rl.item_ids[0] == "85123A"
    rl = rank(ws, bundle, [MerchRule("boost", "*", {"attribute": "tag", "value": "GIFT", "weight": 3})],
              "candle")
    assert rl.item_ids[0] == "22002"
    assert rank(ws, bundle, [], "white").item_ids[:2] == ["71053", "85123A"]
    rl = rank(ws, bundle, [MerchRule("boost", "*", {"attribute": "price", "min": 2.5, "max": 2.6,
                                                    "weight": 2})], "white")
    assert rl.item_ids[0] == "85123A"  # 2.55
    assert rl.components["rules"][0] == pytest.approx(2.0)


def test_hide_and_disabled(ws, bundle):
    hide = MerchRule("hide", "white*", {"item_id": "85123A"})
    assert "85123A" not in rank(ws, bundle, [hide], "white heart").item_ids
    assert "85123A" in rank(ws, bundle, [hide], "heart").item_ids  # pattern does not match
    off = MerchRule("hide", "*", {"item_id": "85123A"}, enabled=False)
    assert "85123A" in rank(ws, bundle, [off], "white heart").item_ids


def test_synonyms_and_rewrites(ws, bundle):
    syn = MerchRule("synonym", "*", {"terms": "mug, cup"})
    assert validate_rule(syn).params["terms"] == ["mug", "cup"]
    base = rank(ws, bundle, [], "cup", k=3)
    assert "22004" not in base.item_ids
    rl = rank(ws, bundle, [syn], "cup")
    assert rl.item_ids[0] == "22004"
    assert any("searched as 'cup mug'" in n for n in rl.notes)
    rw = MerchRule("rewrite", "exact:tlight", {"to": "tealight"})
    assert rank(ws, bundle, [rw], "tlight").item_ids[0] == "22005"
    q, notes = rewrite_query([validate_rule(rw), validate_rule(syn)], "tlight")
    assert q == "tealight" and len(notes) == 1
    regex = validate_rule(MerchRule("rewrite", "re:^napkin$", {"to": "napkins"}))
    assert rewrite_query([regex], "Napkin")[0] == "napkins"


def test_explanation_names_the_rule_and_the_move(ws, bundle):
    from merch_app.explain.explanation import explain_item

    r = Ranker(ws, bundle, rules=[validate_rule(MerchRule("boost", "heart", {"attribute": "item",
                                                                             "value": "85123A", "weight": 2},
                                                          name="push holder"))])
    exp = explain_item(r, RankRequest(query="heart", weights=LEX, prefix=False), "85123A")
    assert exp.rules[0]["rule"] == "push holder" and exp.rules[0]["effect"] == 2.0
    assert exp.rules[0]["to_rank"] == 1 and exp.rules[0]["from_rank"] == 2


@pytest.mark.parametrize("rule, problem", [
    (MerchRule("star", "*", {}), "unknown rule kind"),
    (MerchRule("pin", "*", {"item_id": "A", "position": 0}), "position must be 1 or more"),
    (MerchRule("pin", "*", {"position": 1}), "needs an item_id"),
    (MerchRule("boost", "*", {"attribute": "colour", "value": "x", "weight": 1}), "attribute must be"),
    (MerchRule("boost", "*", {"attribute": "tag", "value": "x", "weight": -1}), "use 'bury'"),
    (MerchRule("boost", "*", {"attribute": "tag", "value": "x", "weight": "lots"}), "numeric weight"),
    (MerchRule("bury", "*", {"attribute": "price", "weight": 1}), "min and/or max"),
    (MerchRule("bury", "*", {"attribute": "price", "min": 5, "max": 1, "weight": 1}), "min is above"),
    (MerchRule("boost", "*", {"attribute": "category", "value": " ", "weight": 1}), "needs a value"),
    (MerchRule("synonym", "*", {"terms": ["mug"]}), "at least two terms"),
    (MerchRule("rewrite", "*", {"to": "x"}), "needs a query pattern"),
    (MerchRule("hide", "re:([", {"item_id": "A"}), "not a valid regular expression"),
])
def test_validation_messages(rule, problem):
    with pytest.raises(RuleError, match=problem.replace("(", r"\(")):
        validate_rule(rule)


def test_rules_persist_and_survive_restart(ws_path):
    from merch_app.data.workspace import open_workspace

    db = open_workspace(ws_path)
    pin = save_rule(db, MerchRule("pin", "mug", {"item_id": "22004", "position": "2"}))
    boost = save_rule(db, MerchRule("boost", "*", {"attribute": "category", "value": "Home", "weight": 0.3},
                                    name="home first"))
    assert pin.params["position"] == 2 and pin.rule_id is not None
    set_rule_status(db, pin.rule_id, "draft")
    db.close()
    db = open_workspace(ws_path)
    rules = load_rules(db)
    assert [(r.rule_id, r.enabled, r.name) for r in rules] == [
        (pin.rule_id, False, "pin 22004 at 2 for 'mug'"), (boost.rule_id, True, "home first")]
    assert [r.rule_id for r in load_rules(db, enabled_only=True)] == [boost.rule_id]
    edited = save_rule(db, MerchRule("pin", "mug", {"item_id": "22004", "position": 3}, rule_id=pin.rule_id))
    assert edited.name == "pin 22004 at 3 for 'mug'"  # auto name follows the edit
    delete_rule(db, boost.rule_id)
    with pytest.raises(RuleError, match="no rule with id"):
        get_rule(db, boost.rule_id)
    with pytest.raises(RuleError):
        save_rule(db, MerchRule("pin", "*", {"item_id": "A", "position": -1}))
    assert len(load_rules(db)) == 1  # the failed save changed nothing
    db.close()


def test_describe_effect():
    from merch_app.ranking.rule_hook import describe_effect

    assert describe_effect({"rule": "x", "effect": 0.2, "from_rank": 7, "to_rank": 2}) == "score +0.200, moved 7 → 2"
    assert describe_effect({"rule": "p", "effect": 0.05, "pinned_to": 1, "from_rank": None, "to_rank": 1}) == \
        "score +0.050, moved - → 1 (pinned to 1)"
    assert describe_effect({"rule": "legacy", "effect": -1.0}) == "score -1.000"


SLOW_QUERY = "aaaaaaaaaaaaaaaaaaaaaaaaaaaa!"  # 26 s and growing exponentially with `re` and ^(a+)+$


@pytest.mark.parametrize("pattern", ["re:^(a+)+$", "re:^(\\w+\\s?)+$", "re:((a+)b)*", "re:(.*a){20}",
                                     "re:(a|aa)+$", "re:^(a|a)*$"])
def test_pathological_regex_is_refused_on_save(ws_path, pattern):
    from merch_app.data.workspace import open_workspace

    with pytest.raises(RuleError, match="repeats a group that itself repeats|takes too long on a query"):
        validate_rule(MerchRule("boost", pattern, {"attribute": "tag", "value": "x", "weight": 1}))
    db = open_workspace(ws_path)
    with pytest.raises(RuleError):
        save_rule(db, MerchRule("hide", pattern, {"item_id": "A"}))
    assert load_rules(db) == []
    db.close()


@pytest.mark.parametrize("pattern", ["re:^(red|blue) (mug|cup)s?$", "re:colou?r", "re:(ab{1,3})+", "re:\\d{3,}",
                                     "re:[(+]+x", "re:\\(a+\\)+", "re:^mug(s)?$"])
def test_ordinary_regexes_still_save(pattern):
    rule = validate_rule(MerchRule("hide", pattern, {"item_id": "A"}))
    assert (rule.match, rule.pattern) == ("regex", pattern[3:])  # the old prefix is now the match type


@pytest.mark.parametrize("pattern", ["re:^(a+)+$", "re:^(a|a)*$"])
def test_a_slow_stored_regex_cannot_hang_ranking(ws, bundle, pattern):
    """A rule stored before the check (or edited in the file): bounded, no match, and the results say so."""
    with ws.conn:
        ws.execute("INSERT INTO rules(name, kind, pattern, params, enabled, priority) VALUES (?, ?, ?, ?, 1, 0)",
                   ["slow", "hide", pattern, '{"item_id": "85123A"}'])
    rules = load_rules(ws, enabled_only=True)
    notes: list[str] = []
    assert not rules[0].matches(SLOW_QUERY, notes)  # (before the fix: 26 s for (a+)+, far longer for (a|a)*)
    assert len(notes) == (1 if "(a|a)" in pattern else 0) and not pattern_matches(pattern, SLOW_QUERY)
    hit = Ranker.for_workspace(ws, bundle).rank(RankRequest(query=SLOW_QUERY + " heart", k=8, weights=LEX,
                                                            prefix=False))
    assert "85123A" in hit.item_ids  # the hide rule did not apply
    slow = [n for n in hit.notes if "treated as no match" in n]
    assert len(slow) == (1 if "(a|a)" in pattern else 0)  # (a+)+ the regex engine answers at once
    assert MerchRule("rewrite", pattern, {"to": "mug"}).rewrite(SLOW_QUERY) is None


def test_a_broken_stored_regex_is_no_match_with_a_note(ws, bundle):
    with ws.conn:
        ws.execute("INSERT INTO rules(name, kind, pattern, params, enabled, priority) VALUES (?, ?, ?, ?, 1, 0)",
                   ["broken", "hide", "re:([", '{"item_id": "85123A"}'])
    hit = Ranker.for_workspace(ws, bundle).rank(RankRequest(query="heart", k=8, weights=LEX, prefix=False))
    assert "85123A" in hit.item_ids
    assert any("is not a valid regular expression" in n for n in hit.notes)


def test_slot_puts_the_best_item_of_a_category_at_its_position(ws, bundle):
    """"heart": the cushion (Textiles) ranks above the Home holder; a Home slot at 1 brings the holder up,
    a Textiles slot at 1 changes nothing; "white" (two Home items first): a Textiles slot at 2 brings the
    cushion to 2."""
    base = rank(ws, bundle, [], "heart")
    assert base.item_ids[:2] == ["22003", "85123A"]
    home = MerchRule("slot", "heart", {"attribute": "category", "value": "Home", "position": 1})
    rl = rank(ws, bundle, [home], "heart")
    assert rl.item_ids[:2] == ["85123A", "22003"]
    np.testing.assert_allclose(sum(rl.components[c] for c in COMPONENTS), rl.scores, atol=1e-6)
    assert rl.rule_effects["85123A"][0]["pinned_to"] == 1
    textiles = MerchRule("slot", "heart", {"attribute": "category", "value": "Textiles", "position": 1})
    assert rank(ws, bundle, [textiles], "heart").item_ids[:2] == base.item_ids[:2]  # already there
    assert rank(ws, bundle, [], "white").item_ids[:2] == ["71053", "85123A"]
    second = MerchRule("slot", "white", {"attribute": "category", "value": "Textiles", "position": 2})
    assert rank(ws, bundle, [second], "white").item_ids[:3] == ["71053", "22003", "85123A"]
    pin = MerchRule("pin", "heart", {"item_id": "22004", "position": 1}, rule_id=1)
    slot = MerchRule("slot", "heart", {"attribute": "category", "value": "Home", "position": 1}, rule_id=2)
    assert rank(ws, bundle, [pin, slot], "heart").item_ids[0] == "22004"  # pin beats slot on one position
    with pytest.raises(RuleError, match="slot position must be 1 or more"):
        validate_rule(MerchRule("slot", "x", {"attribute": "category", "value": "Home", "position": 0}))


def test_redirect_is_said_with_the_results_even_when_nothing_matches(ws, bundle):
    rule = MerchRule("redirect", "gift card", {"url": "https://shop.example/gift-cards"}, match="phrase", rule_id=3)
    rl = rank(ws, bundle, [rule], "gift card for mum")
    assert any(n.startswith("redirect to https://shop.example/gift-cards (redirect #3") for n in rl.notes), rl.notes
    assert not any("redirect" in n for n in rank(ws, bundle, [rule], "mug").notes)
    with pytest.raises(RuleError, match="needs a query pattern"):
        validate_rule(MerchRule("redirect", "*", {"url": "https://x"}))
    with pytest.raises(RuleError, match="address"):
        validate_rule(MerchRule("redirect", "gift", {"url": "not a url with spaces"}))
    from merch_app.ranking.rule_conflicts import conflict_kind

    other = MerchRule("redirect", "gift", {"url": "https://shop.example/gifts"})
    assert conflict_kind(rule, other) == "redirect"
