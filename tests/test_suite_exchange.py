"""Suite exchange: Quepid ratings CSV and RRE ratings JSON in and out, TREC run files out (issue #21)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.evaluation.suite_data import Suite, SuiteError
from merch_app.evaluation.suite_exchange import (
    export_format, read_any_suite_file, read_quepid_csv, read_rre_json, suite_format, write_quepid_csv,
    write_rre_json, write_suite_as, write_trec_run,
)
from merch_app.evaluation.suite_files import write_qrels, write_suite_csv
from merch_app.evaluation.suite_run import run_suite
from ranking_fixtures import SAMPLE_ITEMS, insert_items


def _suite() -> Suite:
    s = Suite("hand")
    s.set_grade("red mug", "A1", 3)
    s.set_grade("red mug", "A2", 1)
    s.set_grade("red mug", "B9", 0)
    s.set_grade("=cmd()", "C1", 2)  # formula-looking query must survive a round trip
    s.add_query("lamp")  # not rated yet
    return s


# ------------------------------------------------------------------ round trips
def test_quepid_round_trip(tmp_path):
    s = _suite()
    p = write_quepid_csv(s, tmp_path / "q.csv")
    # Quepid's basic export: header query,docid,rating; "query,," for an unrated query; a space (not an
    # apostrophe) before a formula lead, as Quepid's make_csv_safe writes it.
    assert p.read_text(encoding="utf-8") == ("query,docid,rating\nred mug,A1,3\nred mug,A2,1\nred mug,B9,0\n"
                                             " =cmd(),C1,2\nlamp,,\n")
    back = read_quepid_csv(p, name="hand")
    assert back.queries == s.queries == ["red mug", "=cmd()", "lamp"]
    assert back.judgments == s.judgments
    assert back.source == "quepid:q.csv" and back.pairs_merged == 0
    assert read_any_suite_file(p).judgments == s.judgments  # detected by its header


def test_rre_round_trip(tmp_path):
    s = _suite()
    p = write_rre_json(s, tmp_path / "ratings.json")
    data = json.loads(p.read_text(encoding="utf-8"))
    assert data["index"] == "hand" and data["id_field"] == "id"
    groups = data["topics"][0]["query_groups"]
    assert [g["name"] for g in groups] == ["red mug", "=cmd()", "lamp"]
    assert groups[0]["queries"] == [{"template": "only_q.json", "placeholders": {"$query": "red mug"}}]
    assert groups[0]["relevant_documents"] == {"A1": {"gain": 3}, "A2": {"gain": 1}, "B9": {"gain": 0}}
    assert groups[2]["relevant_documents"] == {}
    back = read_rre_json(p, name="hand")
    assert back.queries == s.queries
    assert back.judgments == s.judgments
    assert back.source == "rre:ratings.json"
    assert read_any_suite_file(p).judgments == s.judgments


def test_write_suite_as_chooses_by_extension(tmp_path):
    s = _suite()
    assert [export_format(tmp_path / n) for n in ("a.qrels", "a.txt", "a.json", "a.csv")] == \
        ["qrels", "qrels", "rre", "csv"]
    assert [p.name for p in write_suite_as(s, tmp_path / "a.qrels")] == ["a.qrels", "a.qrels.topics.tsv"]
    assert write_suite_as(s, tmp_path / "q.csv", "quepid")[0].read_text().startswith("query,docid,rating\n")
    assert write_suite_as(s, tmp_path / "a.csv")[0].read_text().startswith("query,item_id,grade\n")
    with pytest.raises(SuiteError, match="unknown suite format 'xml'"):
        write_suite_as(s, tmp_path / "a.xml", "xml")


def test_format_detection(tmp_path):
    s = _suite()
    files = {"own.csv": write_suite_csv(s, tmp_path / "own.csv"),
             "quepid.csv": write_quepid_csv(s, tmp_path / "quepid.csv"),
             "ratings.json": write_rre_json(s, tmp_path / "ratings.json"),
             "run.qrels": write_qrels(s, tmp_path / "run.qrels")[0]}
    assert {n: suite_format(p) for n, p in files.items()} == \
        {"own.csv": "csv", "quepid.csv": "quepid", "ratings.json": "rre", "run.qrels": "qrels"}
    rre_txt = tmp_path / "ratings.txt"  # content wins over the .txt (qrels) extension
    rre_txt.write_text(files["ratings.json"].read_text())
    assert suite_format(rre_txt) == "rre"
    rated = {q: j for q, j in s.judgments.items() if j}
    for p in files.values():  # qrels hold no unrated query
        assert {q: j for q, j in read_any_suite_file(p).judgments.items() if j} == rated


# ------------------------------------------------------------------ the tools' own files
def test_reads_quepid_basic_export(tmp_path):
    # Quepid's basic ratings export as o19s/quepid writes it (app/controllers/api/v1/export/ratings_controller.rb:
    # header query,docid,rating, "query,," for a query without ratings, ratings are floats so 3.0, a space in
    # front of "=cmd"; the import dialog's example in import_ratings/_modal.html has "star wars,3557771," for a
    # document not rated yet).
    p = tmp_path / "case_1_judgements.csv"
    p.write_text("query,docid,rating\n"
                 "star wars,3574597,3.0\n"
                 "star wars,3557771,\n"
                 "star wars,1895,1.0\n"
                 "\"I like, commas!\",42,0.0\n"
                 " =cmd,,\n"
                 "star trek,,\n", encoding="utf-8")
    s = read_any_suite_file(p)
    assert s.name == "case_1_judgements" and s.source == "quepid:case_1_judgements.csv"
    assert s.queries == ["star wars", "I like, commas!", "=cmd", "star trek"]
    assert s.judgments == {"star wars": {"3574597": 3, "1895": 1}, "I like, commas!": {"42": 0},
                           "=cmd": {}, "star trek": {}}
    assert len(s.raw) == 6  # every row kept, the unrated ones as queries only


def test_reads_quepid_detailed_export(tmp_path):
    # Quepid's detailed export (app/assets/javascripts/services/caseCSVSvc.js, detailedQueriesHeaderToCSV and
    # stringifyQueriesDetailed): team names joined by commas, one column per document field after Rating,
    # a query without documents as its first four cells only, unrated documents with an empty Rating.
    p = tmp_path / "Movies_detailed.csv"
    p.write_text("Team Name,Case Name,Case ID,Query Text,Doc ID,Doc Position,Title,Rating,release_date\n"
                 "\"Team A,Team B\",Movies,7,star wars,11,1,Star Wars,3,1977-05-25\n"
                 "\"Team A,Team B\",Movies,7,star wars,1891,2,The Empire Strikes Back,,1980-05-20\n"
                 "\"Team A,Team B\",Movies,7,star wars,12180,3,\"Star Wars: The Clone Wars\",1,2008-08-05\n"
                 "\"Team A,Team B\",Movies,7,lego\n", encoding="utf-8")
    assert suite_format(p) == "quepid"
    s = read_any_suite_file(p, name="movies")
    assert s.queries == ["star wars", "lego"]
    assert s.judgments == {"star wars": {"11": 3, "12180": 1}, "lego": {}}


RRE_ARCHETYPE = """{
  "index": "core1",
  "corpora_file": "electric_basses.json",
  "id_field": "id",
  "topics": [
    {
      "description": "Fender basses",
      "query_groups": [
        {
          "name": "Brand search",
          "description": "The group tests several searches on the Fender brand",
          "queries": [
            {"template": "only_q.json", "placeholders": {"$query": "fender"}},
            {"template": "only_q.json", "placeholders": {"$query": "fender Bass"}},
            {"template": "filter_by_number_of_strings.json", "placeholders": {"$query": "Fender", "$strings": 4}}
          ],
          "relevant_documents": {
            "1": {"gain": 3},
            "2": {"gain": 3}
          }
        },
        {
          "name": "Jazz bass search",
          "description": "Several searches on a given model (Jazz bass)",
          "queries": [
            {"template": "only_q.json", "placeholders": {"$query": "jazz"}},
            {"template": "only_q.json", "placeholders": {"$query": "Jazz bass"},
             "relevant_documents": {"1": {"rating": 2}, "7": {}}}
          ],
          "relevant_documents": {
            "1": {"gain": 3}
          }
        }
      ]
    }
  ]
}
"""


def test_reads_rre_ratings_file(tmp_path):
    # The ratings_example.json of RRE's Solr archetype (SeaseLtd/rated-ranking-evaluator,
    # rre-maven-archetype/rre-maven-solr-archetype/.../src/etc/ratings/ratings_example.json), plus a query with its
    # own relevant_documents (Engine.evaluateRatings prefers them to the group's), "rating" in place of "gain"
    # (Func.gainOrRatingNode) and a document without either (RRE's defaultMissingGrade, 2).
    p = tmp_path / "ratings_example.json"
    p.write_text(RRE_ARCHETYPE, encoding="utf-8")
    s = read_any_suite_file(p)
    assert s.source == "rre:ratings_example.json"
    # "fender" and "Fender" are one query (first spelling kept); the group's judgments are theirs twice
    assert s.queries == ["fender", "fender Bass", "jazz", "Jazz bass"]
    assert s.judgments == {"fender": {"1": 3, "2": 3}, "fender Bass": {"1": 3, "2": 3}, "jazz": {"1": 3},
                           "Jazz bass": {"1": 2, "7": 2}}
    assert s.pairs_merged == 2
    assert {r.line for r in s.raw if r.query == "Fender"} == {18, 19}  # the lines of the group's documents


def test_reads_quepid_rre_export(tmp_path):
    # Quepid's RRE files: no topics or query groups, the queries at the top level.  The import test file
    # (o19s/quepid test/controllers/api/v1/import/mock_rre_json.json) maps gains to lists of documents; the
    # export (app/views/api/v1/export/ratings/_rre_query.json.jbuilder) writes {"doc": {"gain": N}}.
    p = tmp_path / "mock_rre_json.json"
    p.write_text(json.dumps({
        "id_field": "id", "index": "Movies Search", "template": "template.json",
        "queries": [
            {"placeholders": {"$query": "star trek"}, "relevant_documents": {"1": ["193"], "2": ["157", "152"]}},
            {"placeholders": {"$query": "star wars"}, "relevant_documents": {"12180": {"gain": 1},
                                                                             "13532": {"gain": 3}}},
            {"placeholders": {"$query": "=cmd"}},
        ]}, indent=2), encoding="utf-8")
    s = read_any_suite_file(p, name="movies")
    assert s.queries == ["star trek", "star wars", "=cmd"]
    assert s.judgments == {"star trek": {"193": 1, "157": 2, "152": 2}, "star wars": {"12180": 1, "13532": 3},
                           "=cmd": {}}


def test_rre_contradicting_pairs_name_both_lines(tmp_path):
    p = tmp_path / "r.json"
    p.write_text('{"index": "x", "id_field": "id", "query_groups": [\n'
                 ' {"queries": [{"placeholders": {"$query": "mug"}}],\n'
                 '  "relevant_documents": {"A": {"gain": 3}}},\n'
                 ' {"queries": [{"placeholders": {"$query": "Mug"}}],\n'
                 '  "relevant_documents": {"A": {"gain": 1}}}\n'
                 ']}\n', encoding="utf-8")
    assert read_rre_json(p).judgments == {"mug": {"A": 2}}  # mean of 3 and 1
    with pytest.raises(SuiteError) as err:
        read_rre_json(p, merge="error")
    assert str(err.value).startswith(f"{p}, line 5: grade 1 for ('mug', 'A') contradicts grade 3 at line 3")


# ------------------------------------------------------------------ malformed files
@pytest.mark.parametrize("body, problem", [
    ("query,docid,rating\nq,A,3\nmug,tea,B,2\n", "line 3: 4 columns, expected 3 (query,docid,rating)"),
    ("query,docid,rating\nq,A,2.5\n", "line 2: rating '2.5' is not a whole number 0-3"),
    ("query,docid,rating\nq,A,10\n", "line 2: rating '10' is outside 0-3"),
    ("query,docid,rating\nq,A,good\n", "line 2: rating 'good' is not a number"),
    ("query,docid,rating\nq,A,1\nq,,2\n", "line 3: empty item_id"),
    ("query,docid,rating\n  ,A,2\n", "line 2: empty query"),
    ("query,docid,rating\n", "no ratings found"),
])
def test_bad_quepid_files_name_file_and_line(tmp_path, body, problem):
    p = tmp_path / "bad.csv"
    p.write_text(body, encoding="utf-8")
    with pytest.raises(SuiteError) as err:
        read_any_suite_file(p)
    assert str(err.value).startswith(str(p)) and problem in str(err.value)


@pytest.mark.parametrize("body, problem", [
    ('{"queries": [\n  {"placeholders": {"$query": "a"}},\n]}', "line 3: not valid JSON"),
    ("[1, 2]", "line 1: not an RRE ratings file"),
    ('{"index": "x", "id_field": "id"}', "line 1: not an RRE ratings file"),
    ('{"topics": {"a": 1}}', "line 1 (topics): expected a list, found an object"),
    ('{"queries": [\n  {"placeholders": {"$query": "a"}},\n  {"placeholders": {"q": "b"}}\n]}',
     "line 3 (queries[1]): the query has no '$query' placeholder text"),
    ('{"topics": [{"query_groups": [{"queries": [{"placeholders": {"$query": "a"}}],\n'
     '  "relevant_documents": {\n    "D1": {"gain": 7}}}]}]}',
     "line 3 (topics[0].query_groups[0].relevant_documents.D1): gain 7 is outside 0-3"),
    ('{"queries": [{"placeholders": {"$query": "a"},\n "relevant_documents": {"D1": {"gain": "3"}}}]}',
     "line 2 (queries[0].relevant_documents.D1): gain \"3\" is not a number"),
    ('{"queries": [{"placeholders": {"$query": "a"},\n "relevant_documents": {"D1": 3}}]}',
     "line 2 (queries[0].relevant_documents.D1): expected {\"gain\": N}"),
    ('{"queries": [{"placeholders": {"$query": "a"},\n "relevant_documents": {"high": ["D1"]}}]}',
     "line 2 (queries[0].relevant_documents): gain 'high' is not a number"),
    ('{"queries": []}', "no queries found"),
])
def test_bad_rre_files_name_file_line_and_path(tmp_path, body, problem):
    p = tmp_path / "bad.json"
    p.write_text(body, encoding="utf-8")
    with pytest.raises(SuiteError) as err:
        read_any_suite_file(p)
    assert str(err.value).startswith(str(p)) and problem in str(err.value)


# ------------------------------------------------------------------ TREC run
RANKED = {"red mug": ["A2", "A1", "X7", "A2"], "=cmd()": ["C1"], "lamp": []}


def _trec_eval_lines(text: str) -> dict[str, list[tuple[str, int, float]]]:
    """The run as trec_eval reads it (usnistgov/trec_eval get_trec_results.c): 6 whitespace-separated
    fields ``qid iter docno rank sim run_id``, sim a number; docs ranked by descending sim."""
    out: dict[str, list[tuple[str, int, float]]] = {}
    for line in text.splitlines():
        fields = line.split()
        assert len(fields) == 6, line
        qid, it, docno, rank, sim, _tag = fields
        assert it == "Q0"
        out.setdefault(qid, []).append((docno, int(rank), float(sim)))
    return out


def test_trec_run_matches_the_qrels_of_the_suite(tmp_path):
    s = _suite()
    run = run_suite(s, lambda q, n: RANKED[q][:n], label="test sys", n_boot=10)
    p = write_trec_run(run, s, tmp_path / "run.txt")
    assert p.read_text(encoding="utf-8") == ("1 Q0 A2 1 3 test_sys\n1 Q0 A1 2 2 test_sys\n1 Q0 X7 3 1 test_sys\n"
                                             "2 Q0 C1 1 1 test_sys\n")
    runs = _trec_eval_lines(p.read_text(encoding="utf-8"))
    for qid, docs in runs.items():
        assert [r for _, r, _ in docs] == list(range(1, len(docs) + 1))
        sims = [sim for _, _, sim in docs]
        assert sims == sorted(sims, reverse=True) and len(set(sims)) == len(sims)  # no ties for trec_eval to break
        assert len({d for d, _, _ in docs}) == len(docs)  # trec_eval refuses duplicate docs
    qrels, topics = write_qrels(s, tmp_path / "hand.qrels")
    topic_of = dict(line.split("\t") for line in topics.read_text(encoding="utf-8").splitlines())
    assert {topic_of[qid] for qid in runs} == {"red mug", "=cmd()"}
    assert [topic_of[qid] for qid in sorted(runs)] == [q.query for q in run.queries if q.items]
    judged = {(f[0], f[2]) for f in (line.split() for line in qrels.read_text().splitlines())}
    assert {(qid, d) for qid, docs in runs.items() for d, _, _ in docs} & judged == \
        {("1", "A2"), ("1", "A1"), ("2", "C1")}


def test_trec_run_refuses_what_it_cannot_hold(tmp_path):
    s = _suite()
    with pytest.raises(SuiteError, match="'A 1' contains whitespace"):
        write_trec_run(run_suite(s, lambda q, n: ["A 1"], n_boot=10), s, tmp_path / "r.txt")
    other = Suite("other", queries=["tea"], judgments={"tea": {}})
    with pytest.raises(SuiteError, match="query 'tea' is not in the suite 'hand'"):
        write_trec_run(run_suite(other, lambda q, n: ["A1"], n_boot=10), s, tmp_path / "r.txt")


# ------------------------------------------------------------------ CLI
@pytest.fixture
def shop(ws_path):
    from merch_app.data.workspace import open_workspace

    db = open_workspace(ws_path)
    insert_items(db, SAMPLE_ITEMS)
    db.close()
    return ws_path


def invoke(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def test_cli_import_export_and_trec_run(shop, tmp_path):
    quepid = tmp_path / "quepid.csv"
    quepid.write_text("query,docid,rating\nheart,22003,3.0\nheart,85123A,2.0\nmug,22004,3.0\ncandle,,\n",
                      encoding="utf-8")
    d = json.loads(invoke("suite", "import", quepid, "--name", "q", "-w", shop, "--json").output)
    assert (d["queries"], d["judgments"], d["source"]) == (3, 3, "quepid:quepid.csv")
    invoke("suite", "export", "q", tmp_path / "q.json", "-w", shop)  # .json: RRE by default
    d = json.loads(invoke("suite", "import", tmp_path / "q.json", "--name", "r", "-w", shop, "--json").output)
    assert (d["queries"], d["judgments"], d["source"]) == (3, 3, "rre:q.json")
    invoke("suite", "export", "r", tmp_path / "back.csv", "--format", "quepid", "-w", shop)
    assert (tmp_path / "back.csv").read_text() == "query,docid,rating\nheart,22003,3\nheart,85123A,2\n" \
                                                  "mug,22004,3\ncandle,,\n"
    bad = tmp_path / "bad.csv"
    bad.write_text("query,docid,rating\nheart,22003,5\n", encoding="utf-8")
    res = invoke("suite", "import", bad, "-w", shop, ok=False)
    assert res.exit_code == 1 and f"{bad}, line 2: rating '5' is outside 0-3" in res.output

    out = json.loads(invoke("suite", "run", "r", "--trec-run", tmp_path / "r.run", "--no-keep", "--json",
                            "--encoder", "hashing", "-w", shop).output)
    invoke("suite", "export", "r", tmp_path / "r.qrels", "-w", shop)
    topic_of = dict(line.split("\t") for line in (tmp_path / "r.qrels.topics.tsv").read_text().splitlines())
    runs = _trec_eval_lines((tmp_path / "r.run").read_text())
    assert runs  # the sample catalogue has hearts, mugs and candles
    items = {q["query"]: q["items"] for q in out["queries"]}
    assert {topic_of[qid]: [d for d, _, _ in docs] for qid, docs in runs.items()} == \
        {q: i for q, i in items.items() if i}
    res = invoke("suite", "run", "r", "q", "--trec-run", tmp_path / "x.run", "-w", shop, ok=False)
    assert res.exit_code == 2 and "--trec-run" in res.output
    invoke("suite", "export", "r", tmp_path / "e.run", "--format", "trec-run", "--encoder", "hashing", "-w", shop)
    assert (tmp_path / "e.run").read_text() == (tmp_path / "r.run").read_text()  # the same run, tag "active"
