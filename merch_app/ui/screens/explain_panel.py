"""Explanation panel: why one result scored what it did (charts, matched words, CF, rules, why-not)."""
from __future__ import annotations

import html
import re
from typing import Any, Optional

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGridLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QListWidget, QVBoxLayout, QWidget,
)

from merch_app.data.text_tokens import has_han, is_han
from merch_app.explain.model_parts import model_parts_text
from merch_app.ranking.rule_hook import describe_effect
from merch_app.ranking.types import COMPONENT_NAMES
from merch_app.ui.charts import COMPONENT_COLOURS, Heatmap, Waterfall
from merch_app.ui.screens.common import entry_row, fill_table, header_label, make_table

MAX_HEATMAP_COLUMNS = 14
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def highlight_title(title: str, lexical_terms: list[dict], semantic_matches: list[dict]) -> str:
    """Rich text of ``title``: keyword matches on yellow, meaning matches underlined orange."""
    lex = []
    for t in lexical_terms or []:
        if t.get("bm25", 0) > 0 and (not t.get("fields") or "title" in t.get("fields", [])):
            lex.append((str(t.get("term", "")).casefold(), bool(t.get("prefix"))))
    sem = {str(m.get("item_word", "")).casefold() for m in semantic_matches or []
           if m.get("field") == "title" and float(m.get("similarity", 0)) >= 0.5}
    han_terms = sorted({t for t, _ in lex if is_han(t)}, key=len, reverse=True)
    out, last = [], 0
    for m in _WORD.finditer(title or ""):
        out.append(html.escape(title[last:m.start()]))
        word = m.group(0)
        w = word.casefold()
        is_lex = any(w == term or (prefix and w.startswith(term)) for term, prefix in lex if term)
        text = html.escape(word)
        if not is_lex and han_terms and has_han(word):
            text = _highlight_han(word, han_terms)
        elif is_lex:
            text = f"<span style='background:#ffe066'><b>{text}</b></span>"
        elif w in sem:
            text = f"<span style='text-decoration:underline; color:#c25400'><b>{text}</b></span>"
        out.append(text)
        last = m.end()
    out.append(html.escape((title or "")[last:]))
    return "".join(out)


def _highlight_han(word: str, terms: list[str]) -> str:
    """Rich text of a run of Han (and other) characters with every matched Han term marked.

    Chinese has no spaces, so a matched word (烛台) sits inside a longer run
    (红色心形烛台); the longest term starting at each position wins.
    """
    out, i = [], 0
    while i < len(word):
        hit = next((t for t in terms if word.startswith(t, i)), None)
        if hit:
            out.append(f"<span style='background:#ffe066'><b>{html.escape(hit)}</b></span>")
            i += len(hit)
        else:
            out.append(html.escape(word[i]))
            i += 1
    return "".join(out)

WORDS_EMPTY = "Select a result to see\nhow its words match the query"


class ExplainPanel(QWidget):
    """Draws an :class:`~merch_app.explain.explanation.Explanation` (as given by ``explain_item``)."""

    why_not_requested = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.explanation: Optional[Any] = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.header = header_label("Select a result to see why it is there.")
        lay.addWidget(self.header)
        self.legend = QLabel("  ".join(f"<span style='color:{c}'>■</span> {COMPONENT_NAMES[n]}" for n, c in COMPONENT_COLOURS.items())
                             + "  · <span style='background:#ffe066'>keyword match</span>"
                             + "  · <span style='text-decoration:underline; color:#c25400'>meaning match</span>")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)  # wraps in a narrow panel (1280 px window) instead of widening it
        lay.addWidget(self.legend)

        charts = QHBoxLayout()
        self.waterfall = Waterfall("Score build-up")
        # short title: a title wider than the plot widens it past the panel (cut off at 1280 px)
        self.heatmap = Heatmap("Query × item words (cosine)", stagger=True)
        self.waterfall.widget.setMinimumHeight(240)
        self.heatmap.widget.setMinimumHeight(240)
        charts.addWidget(self.waterfall.widget, 1)
        charts.addWidget(self.heatmap.widget, 1)
        lay.addLayout(charts, 3)

        grid = QGridLayout()
        terms_box = QGroupBox("Keyword matches (BM25)")
        tl = QVBoxLayout(terms_box)
        self.terms_table = make_table()
        tl.addWidget(self.terms_table)
        because_box = QGroupBox("Because you bought…")
        bl = QVBoxLayout(because_box)
        self.model_parts_label = QLabel()  # the behaviour model's own parts of its score, above what it learned from
        self.model_parts_label.setWordWrap(True)
        self.model_parts_label.setStyleSheet("color: #555;")
        bl.addWidget(self.model_parts_label)
        self.because_list = QListWidget()
        self.because_list.setWordWrap(True)
        bl.addWidget(self.because_list)
        for box in (terms_box, because_box):
            box.setMinimumHeight(150)
        self.semantic_label = QLabel()
        self.semantic_label.setWordWrap(True)
        self.rules_label = QLabel("Rules applied: none")
        self.rules_label.setWordWrap(True)
        grid.addWidget(terms_box, 0, 0)
        grid.addWidget(because_box, 0, 1)
        grid.addWidget(self.semantic_label, 1, 0, 1, 2)
        grid.addWidget(self.rules_label, 2, 0, 1, 2)
        lay.addLayout(grid, 2)

        why_box = QGroupBox("Why not…? (item id or title)")
        wl = QVBoxLayout(why_box)
        row, self.why_not_box, self.why_not_button = entry_row("e.g. 22423 or 'cake stand'", "Explain rank",
                                                               self._ask_why_not)
        wl.addLayout(row)
        self.why_not_label = QLabel()
        self.why_not_label.setWordWrap(True)
        self.why_not_label.setTextFormat(Qt.TextFormat.RichText)
        self.why_not_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        wl.addWidget(self.why_not_label)
        self.why_not_group = why_box  # placed by the screen (under the results table)
        self.why_not_result: Optional[Any] = None

    # --------------------------------------------------------------- drawing
    def clear(self, text: str = "Select a result to see why it is there.") -> None:
        if self.explanation is None and getattr(self, "_blank", None) == text:
            return  # already blank: re-emptying its charts after every keystroke's results cost the GUI thread
        self._blank = text
        self.explanation = None
        self.header.setText(text)
        self.waterfall.set_components({})
        self.heatmap.set_matrix(np.zeros((0, 0)), [], [], empty=WORDS_EMPTY)
        fill_table(self.terms_table, [], [])
        self.because_list.clear()
        self.model_parts_label.setText("")
        self.semantic_label.setText("")
        self.rules_label.setText("Rules applied: none")

    def show_explanation(self, exp: Any) -> None:
        """Fill every part of the panel from ``exp``."""
        self.explanation, self._blank = exp, None
        lexical = exp.lexical or {}
        semantic = exp.semantic or {}
        title = highlight_title(exp.title, lexical.get("terms", []), semantic.get("best_matches", []))
        rank = f"#{exp.rank}" if exp.rank else "not ranked"
        status = "" if exp.status == "shown" else f" <span style='color:#b42318'>({html.escape(exp.reason or exp.status)})</span>"
        self.header.setText(f"<b>{rank}</b> · <code>{html.escape(exp.item_id)}</code> · {title}{status}"
                            f"<br><span style='color:#555'>score {exp.score:.4f} = "
                            + " + ".join(f"{COMPONENT_NAMES[c['component']]} {c['contribution']:.3f}" for c in exp.components
                                         if c["contribution"]) + "</span>")
        self.waterfall.set_components({c["component"]: float(c["contribution"]) for c in exp.components})

        qwords = list(semantic.get("query_words") or [])
        iwords = [w["word"] for w in semantic.get("item_words") or []][:MAX_HEATMAP_COLUMNS]
        matrix = np.asarray(semantic.get("matrix") or [], float)
        if matrix.size and qwords and iwords:
            self.heatmap.set_matrix(matrix[:, : len(iwords)], qwords, iwords)
        else:
            self.heatmap.set_matrix(np.zeros((0, 0)), [], [], empty="No word-by-word match\nfor this result")

        terms = lexical.get("terms") or []
        matched = {m["original"]: m["matched"] for m in lexical.get("alternatives") or []}
        rewritten = [[f"{c['original']} → " + (" | ".join(a["word"] for a in c.get("alternatives") or [])
                                                 or c["corrected"]),
                      f"spelling corrected; this item matched {matched.get(c['original']) or 'none'}", "", ""]
                     for c in lexical.get("corrections") or []]
        rewritten += [[f"{b['word']} → {' + '.join(b['searched_as'])}", "not an indexed word", "", ""]
                      for b in lexical.get("backoffs") or []]
        fill_table(self.terms_table, ["term", "fields", "BM25", "score"],
                   rewritten + [[t.get("label") or t.get("term"), ", ".join(t.get("fields") or []) or "—",
                                 round(float(t.get("bm25", 0)), 3), round(float(t.get("contribution", 0)), 4)]
                                for t in terms])
        header = self.terms_table.horizontalHeader()
        header.setStretchLastSection(False)  # the numbers keep their width; the words share the rest
        for c, mode in ((0, QHeaderView.ResizeMode.Stretch), (1, QHeaderView.ResizeMode.Stretch),
                        (2, QHeaderView.ResizeMode.ResizeToContents), (3, QHeaderView.ResizeMode.ResizeToContents)):
            header.setSectionResizeMode(c, mode)
        for r in range(self.terms_table.rowCount()):
            for c in (0, 1):
                it = self.terms_table.item(r, c)
                if it is not None:
                    it.setToolTip(it.text())  # a cut word or correction note is readable in full

        self.because_list.clear()
        self.model_parts_label.setText(model_parts_text(exp.cf or {}))
        because = (exp.cf or {}).get("because") or []
        for b in because:
            self.because_list.addItem(f"{b['title'] or b['item_id']}  ({b['item_id']}, {b['contribution']:+.3f})")
        if not because:
            self.because_list.addItem("— anonymous request or no model behaviour for this user —"
                                      if not exp.cf else "— no single purchase stands out —")

        if semantic.get("drops"):
            drops = sorted(semantic["drops"], key=lambda d: -d["drop"])
            self.semantic_label.setText(
                f"Meaning match: cosine {semantic.get('cosine', 0):.3f}; words that pull it up: "
                + ", ".join(f"<b>{html.escape(d['word'])}</b> ({d['drop']:+.3f})" for d in drops[:5]))
        else:
            self.semantic_label.setText("")
        rules = exp.rules or []
        self.rules_label.setText("Rules applied: " + ("; ".join(
            f"{html.escape(str(r.get('rule')))} ({html.escape(describe_effect(r))})" for r in rules) or "none"))

    def _ask_why_not(self) -> None:
        ref = self.why_not_box.text().strip()
        if ref:
            self.why_not_label.setText("looking…")
            self.why_not_requested.emit(ref)

    def show_why_not(self, result: Any) -> None:
        """Show a :class:`~merch_app.explain.why_not.WhyNot`."""
        self.why_not_result = result
        rank = f"rank <b>{result.rank}</b>" if result.rank else "<b>not ranked</b>"
        text = f"{html.escape(result.item_id)} · {html.escape(result.title)} — {rank} ({html.escape(result.status)})"
        if result.loses_most_on and result.last_shown:
            colour = COMPONENT_COLOURS.get(result.loses_most_on, "#333")
            text += (f"<br>Against #{result.last_shown['rank']} it trails by {result.gap:.4f}; loses most on "
                     f"<b style='color:{colour}'>{COMPONENT_NAMES.get(result.loses_most_on, result.loses_most_on)}</b> "
                     f"({result.deltas[result.loses_most_on]:+.4f}).")
        elif result.reason and result.status != "shown":
            text += f"<br>{html.escape(result.reason)}"
        self.why_not_label.setText(text)

    def show_why_not_error(self, text: str) -> None:
        self.why_not_result = None
        self.why_not_label.setText(f"<span style='color:#b42318'>{html.escape(text)}</span>")
