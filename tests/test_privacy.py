"""Pseudonymised user ids at import (keyed HMAC, key in the workspace) and "forget user"."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.importer import ImportFailed, import_file
from merch_app.data.rejected import export_rejected_csv, rejected_rows
from merch_app.data.privacy import (
    KEY_SETTING, PrivacyError, is_pseudonym, is_pseudonymised, pseudonym, stored_user_id, workspace_key,
)
from merch_app.data.workspace import open_workspace
from merch_app.model.item_vectors import text_hash
from merch_app.services.forget import forget_user

RAW_IDS = ("cust-alice", "cust-bob", "cust-carol")
RAW_SHOP_ID = re.compile(r"\bU\d\d\b")  # user ids of ui_support.write_shop


def events_file(path: Path, extra: str = "") -> Path:
    lines = ["user_id,item_id,event_type,ts,query"]
    for n, user in enumerate(RAW_IDS):
        for i in range(3 + n):
            lines.append(f"{user},I{i},view,2011-01-0{1 + i} 10:00:00,")
    lines += ["cust-alice,,search,2011-01-05 10:00:00,alice secret hobby",
              "cust-bob,,search,2011-01-05 11:00:00,red mug",
              "cust-carol,,search,2011-01-05 12:00:00,red mug",
              "cust-alice,I1,teleport,2011-01-06 10:00:00,",  # rejected line holding alice's id
              "cust-bob,I2,view,not a date,"]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def test_pseudonym_known_answer():
    key = bytes(range(32))
    expected = "anon_" + hmac.new(key, b"cust-alice", hashlib.sha256).hexdigest()[:20]
    assert pseudonym(key, "cust-alice") == expected == "anon_" + expected[5:]
    assert is_pseudonym(expected) and not is_pseudonym("cust-alice")
    assert pseudonym(key, "cust-alice") != pseudonym(key, "cust-bob")
    assert pseudonym(bytes(32), "cust-alice") != expected  # another key, another pseudonym


def test_pseudonymised_import_stores_no_raw_id(ws, ws_path, tmp_path):
    result = import_file(ws, events_file(tmp_path / "ev.csv"), pseudonymise=True)
    assert result.rows_accepted == 15 and result.rejected_reasons == {"unknown_event_type": 1, "bad_date": 1}
    key = workspace_key(ws)
    assert key is not None and len(key) == 32 and is_pseudonymised(ws)
    users = {u for (u,) in ws.execute("SELECT DISTINCT user_id FROM events")}
    assert users == {pseudonym(key, u) for u in RAW_IDS}
    raws = [r["raw"] for r in rejected_rows(ws)]
    assert raws == [f"{pseudonym(key, 'cust-alice')},I1,teleport,2011-01-06 10:00:00,",
                    f"{pseudonym(key, 'cust-bob')},I2,view,not a date,"]
    ws.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    blob = ws_path.read_bytes()
    assert not any(u.encode() in blob for u in RAW_IDS)  # no raw id anywhere in the file


def test_workspace_keeps_pseudonymising_with_the_same_key(ws, tmp_path):
    import_file(ws, events_file(tmp_path / "a.csv"), pseudonymise=True)
    key = workspace_key(ws)
    second = tmp_path / "b.csv"
    second.write_text("user_id,item_id,event_type,ts\ncust-alice,I9,purchase,2011-02-01 10:00:00\n")
    import_file(ws, second)  # no flag: follows the workspace
    assert workspace_key(ws) == key
    rows = ws.execute("SELECT user_id FROM events WHERE item_id = 'I9'").fetchall()
    assert rows == [(pseudonym(key, "cust-alice"),)]
    assert stored_user_id(ws, "cust-alice") == pseudonym(key, "cust-alice")
    assert stored_user_id(ws, pseudonym(key, "cust-alice")) == pseudonym(key, "cust-alice")


def test_transactions_customer_ids_are_pseudonymised(ws, tmp_path):
    f = tmp_path / "tx.csv"
    f.write_text("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
                 "1,A1,MUG,2,2011-01-02 10:00:00,1.5,17850.0,UK\n2,A2,PLATE,1,2011-01-02 10:00:00,3,,UK\n")
    import_file(ws, f, pseudonymise=True)
    key = workspace_key(ws)
    assert ws.execute("SELECT user_id FROM events ORDER BY id").fetchall() == [(pseudonym(key, "17850"),), (None,)]


def test_failed_pseudonymised_import_leaves_no_key(ws, tmp_path):
    f = tmp_path / "ev.csv"
    f.write_text("user_id,item_id,event_type\nu1,I1,view\n")
    with pytest.raises(ImportFailed):
        import_file(ws, f, pseudonymise=True)
    assert workspace_key(ws) is None and not is_pseudonymised(ws)


def test_exports_and_insights_show_pseudonyms(ws, ws_path, tmp_path):
    import_file(ws, events_file(tmp_path / "ev.csv"), pseudonymise=True)
    key = workspace_key(ws)
    out = tmp_path / "rejected.csv"
    assert export_rejected_csv(ws, None, out) == 2
    text = out.read_text(encoding="utf-8")
    assert pseudonym(key, "cust-alice") in text and "cust-" not in text
    runner = CliRunner()
    res = runner.invoke(cli, ["users", "-w", str(ws_path), "--json"])
    assert res.exit_code == 0, res.output
    assert "cust-" not in res.output and pseudonym(key, "cust-carol") in res.output
    res = runner.invoke(cli, ["user", pseudonym(key, "cust-carol"), "--no-model", "-w", str(ws_path), "--json"])
    assert res.exit_code == 0, res.output
    assert "cust-" not in res.output and json.loads(res.stdout)


def test_cli_import_flag(ws_path, tmp_path):
    res = CliRunner().invoke(cli, ["import", str(events_file(tmp_path / "ev.csv")), "-w", str(ws_path),
                                   "--pseudonymise", "--json"])
    assert res.exit_code == 0, res.output
    db = open_workspace(ws_path)
    assert db.execute("SELECT count(*) FROM events WHERE user_id LIKE 'anon_%'").fetchone()[0] == 15
    assert db.execute("SELECT count(*) FROM settings WHERE key = ?", [KEY_SETTING]).fetchone()[0] == 1
    db.close()


# ------------------------------------------------------------------- forget
def _with_cached_queries(ws) -> None:
    for q in ("alice secret hobby", "red mug"):
        ws.execute("INSERT INTO embeddings VALUES (?, ?, ?, ?)", ["enc", text_hash(q), 2, b"\x00" * 8])
    ws.conn.commit()


@pytest.mark.parametrize("pseudonymised", [False, True])
def test_forget_user_removes_events_rejects_and_cached_queries(ws, tmp_path, pseudonymised):
    import_file(ws, events_file(tmp_path / "ev.csv"), pseudonymise=pseudonymised)
    _with_cached_queries(ws)
    before = {u: n for u, n in ws.execute("SELECT user_id, count(*) FROM events GROUP BY 1")}
    calls = []
    result = forget_user(ws, "cust-alice", retrainer=lambda db, **kw: calls.append(kw))
    stored = result.user_id
    assert is_pseudonym(stored) == pseudonymised
    assert result.events_removed == before[stored] == 4  # 3 views + 1 search
    assert result.rejected_rows_removed == 1 and result.cached_vectors_removed == 1
    assert ws.execute("SELECT count(*) FROM events WHERE user_id = ?", [stored]).fetchone()[0] == 0
    after = {u: n for u, n in ws.execute("SELECT user_id, count(*) FROM events GROUP BY 1")}
    assert after == {u: n for u, n in before.items() if u != stored}  # others untouched
    assert [r["line_no"] for r in rejected_rows(ws)] == [18]  # bob's bad line stays
    hashes = {h for (h,) in ws.execute("SELECT text_hash FROM embeddings")}
    assert hashes == {text_hash("red mug")}  # shared query kept, alice's own removed
    assert calls == []  # no trained model in this workspace: nothing to refresh
    assert "no trained model" in result.message
    with pytest.raises(PrivacyError, match="no events"):
        forget_user(ws, "cust-alice")


def test_forget_calls_the_model_refresh_when_a_model_is_active(ws, tmp_path):
    import_file(ws, events_file(tmp_path / "ev.csv"))
    ws.execute("INSERT INTO models(model_id, name, active) VALUES ('m1', 'm1', 1)")
    ws.conn.commit()
    calls = []

    def fake_refresh(db, progress=None, cancel=None):
        calls.append(db.execute("SELECT count(*) FROM events WHERE user_id = 'cust-bob'").fetchone()[0])
        return "m2"

    result = forget_user(ws, "cust-bob", retrainer=fake_refresh)
    assert calls == [0]  # the refresh saw the data without bob
    assert result.model_id == "m2" and "model refreshed as m2" in result.message


def test_forget_cli(ws_path, tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["import", str(events_file(tmp_path / "ev.csv")), "-w", str(ws_path)]).exit_code == 0
    res = runner.invoke(cli, ["forget", "cust-carol", "-w", str(ws_path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["user_id"] == "cust-carol" and doc["events_removed"] == 6
    res = runner.invoke(cli, ["forget", "cust-carol", "-w", str(ws_path), "--yes"])
    assert res.exit_code == 1 and "has no events in this workspace" in res.output


# ------------------------------------------------------- with a trained model
@pytest.fixture
def trained_shop(tmp_path, ws_path):
    from merch_app.model.encoder import load_encoder
    from merch_app.model.hybrid import HybridConfig
    from merch_app.services.training import train
    from ui_support import write_shop

    cat, ev = write_shop(tmp_path / "shop")
    db = open_workspace(ws_path)
    import_file(db, cat)
    import_file(db, ev, pseudonymise=True)
    version = train(db, HybridConfig(epochs=2, encoder="hashing"), encoder=load_encoder("hashing"))
    yield db, version
    db.close()


def test_explanations_and_recommendations_show_pseudonyms(trained_shop, ws_path):
    db, _ = trained_shop
    key = workspace_key(db)
    anon = pseudonym(key, "U03")
    runner = CliRunner()
    res = runner.invoke(cli, ["recommend", "--user", anon, "-w", str(ws_path), "--json", "--k", "5"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)) == 5
    res = runner.invoke(cli, ["explain", "red mug", "--item", "SKU000", "--user", anon, "-w", str(ws_path), "--json"])
    assert res.exit_code == 0, res.output
    assert anon in res.stdout and not RAW_SHOP_ID.search(res.stdout)
    res = runner.invoke(cli, ["user", anon, "-w", str(ws_path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert anon in res.stdout and not RAW_SHOP_ID.search(res.stdout)
    assert doc


def test_forget_scrubs_every_model_version_and_retrains(trained_shop):
    from merch_app.model.bundle import load_bundle
    from merch_app.model.registry import active_version, list_versions, load_model
    from merch_app.ranking.ranker import Ranker
    from merch_app.ranking.types import RankRequest

    db, first = trained_shop
    key = workspace_key(db)
    anon, other = pseudonym(key, "U05"), pseudonym(key, "U06")
    old = load_model(db, first.model_id)
    u = old.user_pos[anon]
    assert abs(old.arrays["P"][u]).sum() > 0 and len(old.state.user_items(u)[0]) > 0
    result = forget_user(db, "U05")  # the original id works in a pseudonymised workspace
    assert result.user_id == anon and result.models_scrubbed == 1 and result.events_removed > 0
    new = active_version(db)
    assert new.model_id == result.model_id != first.model_id
    assert new.data_snapshot["parent"] == first.model_id
    for version in list_versions(db):
        model = load_model(db, version.model_id)
        assert anon not in model.user_pos
        tomb = [i for i, x in enumerate(model.user_ids) if str(x).startswith("forgotten-")]
        assert tomb == [u]  # same position, shapes kept
        assert not model.arrays["P"][u].any() and not model.arrays["T_u"][u].any()
        assert len(model.state.user_items(u)[0]) == 0
        assert other in model.user_pos
    ranker = Ranker(db, load_bundle(db))
    assert len(ranker.rank(RankRequest(mode="recommend", user_id=other, k=5)).item_ids) == 5
    cold = ranker.rank(RankRequest(mode="recommend", user_id=anon, k=5))  # now an unknown user: still answers
    assert len(cold.item_ids) == 5
