"""Screenshots of language-aware search: a Chinese catalogue and a corrected misspelling.

Usage (from the repository root)::

    .venv/bin/python docs/screenshots/make_search_screenshots.py

Writes ``query_zh.png`` (a GBK catalogue with Chinese headers, query 烛台,
first result explained: matched word highlighted inside the title) and
``query_spelling.png`` (the demo catalogue, query "chrismas lights": the
"showing results for" bar), each at 1400x900 and 1280x720 (``*_720.png``).
Ranking is text only (no model), so the script runs in a minute.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shots import OUT, open_window, pump, save, temp_home, wait_idle  # noqa: E402

ZH = [("商品编号", "商品名称", "描述", "类别", "价格"),
      ("Z01", "红色心形烛台", "铁艺心形蜡烛台，节日装饰", "家居装饰", "29.9"),
      ("Z02", "白色陶瓷马克杯", "350毫升咖啡杯", "厨房用品", "19.9"),
      ("Z03", "不锈钢保温杯500ml", "真空保温保冷", "厨房用品", "59"),
      ("Z04", "蓝牙无线耳机", "降噪 长续航", "数码配件", "199"),
      ("Z05", "玻璃茶杯套装", "六只装", "厨房用品", "39"),
      ("Z06", "毛绒小狗玩具", "儿童礼物", "玩具", "49"),
      ("Z07", "女士真丝连衣裙", "夏季新款", "服装", "299"),
      ("Z08", "iPhone 15 手机壳", "防摔硅胶", "数码配件", "39"),
      ("Z09", "香薰蜡烛礼盒", "玫瑰香味 烛台可选", "家居装饰", "89"),
      ("Z10", "儿童保温水杯", "带吸管", "厨房用品", "45"),
      ("Z11", "头戴式降噪耳机", "蓝牙5.3", "数码配件", "599"),
      ("Z12", "北欧风陶瓷花瓶", "客厅摆件", "家居装饰", "79")]


def shoot(app, window, query_screen, text: str, name: str) -> None:
    query_screen.controls.query_box.setText(text)
    pump(app, 0.6)
    wait_idle(app, window)
    query_screen.select_row(0)
    wait_idle(app, window)
    query_screen.show_explanation_tab()
    save(app, window, f"{name}.png")
    window.resize(1280, 720)
    pump(app, 0.6)
    save(app, window, f"{name}_720.png")
    window.resize(1400, 900)
    pump(app, 0.3)
    print(name, query_screen.status.text()[:100], "|", query_screen.spelling.text()[:100])


def main() -> int:
    from merch_app.paths import demo_files
    from merch_app.ui.screens.mapping_dialog import ImportRequest

    tmp = temp_home("merch_search_shots_")
    zh = tmp / "商品目录.csv"
    with open(zh, "w", encoding="gbk", newline="") as fh:
        csv.writer(fh).writerows(ZH)
    app, window = open_window(tmp / "zh.merch.sqlite")
    window.show_screen("Data").start_import([ImportRequest(zh)])
    wait_idle(app, window)
    query = window.show_screen("Query")
    shoot(app, window, query, "烛台", "query_zh")

    app2, window2 = app, None
    window.close()
    from merch_app.ui.main_window import MainWindow

    window2 = MainWindow(tmp / "demo.merch.sqlite")
    window2.resize(1400, 900)
    window2.show()
    pump(app2)
    window2.show_screen("Data").start_import([ImportRequest(p) for p in demo_files()])
    wait_idle(app2, window2)
    shoot(app2, window2, window2.show_screen("Query"), "chrismas lights", "query_spelling")
    window2.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
