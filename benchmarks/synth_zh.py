"""A seeded synthetic Chinese catalogue (and queries) for the Chinese search benchmark.

Titles are 2-4 words the way Chinese shop titles are written: optional colour,
material and adjective, then a product noun (``红色陶瓷马克杯``), most of them
written solid (no spaces), some with spaces between the words
(``北欧 简约 陶瓷 花瓶``), some with a pack/size suffix (``2只装``, ``500ml``), and
about 8 % mixed-script (``iPhone 15 手机壳``, ``Type-C 数据线``).  Every item
has a description sentence built from the same words plus a use
(``这款红色陶瓷马克杯做工精致，适合办公室使用。``) and a category from its noun.
Every character is in GBK, so the CSV can be written in GBK as Chinese
exports usually are.

:func:`make_queries` returns shopper-like queries of five kinds, with the item
each one was made from:

* ``word``     one word of an item's title (``马克杯``, ``陶瓷``);
* ``two``      two of its words, spaced or solid (``红色 马克杯``, ``陶瓷保温杯``);
* ``backoff``  a word the catalogue does not contain, so the searcher backs off
               to sub-words/characters (``杯子``, ``陶瓷杯子``, ``蓝牙耳麦``);
* ``pinyin``   toneless pinyin or initials of a title word (``makebei``, ``mkb``);
* ``misspelt`` a mixed query with a misspelt Latin word (``iphnoe 手机壳``).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import numpy as np

COLOURS = ["红色", "白色", "黑色", "蓝色", "绿色", "黄色", "粉色", "灰色", "紫色", "棕色", "金色", "银色",
           "米色", "橙色", "藏青色", "酒红色", "卡其色", "浅蓝色"]
MATERIALS = ["陶瓷", "玻璃", "不锈钢", "木质", "竹制", "纯棉", "真丝", "羊毛", "皮革", "塑料", "硅胶", "亚麻",
             "水晶", "铜质", "帆布", "铝合金", "骨瓷", "珐琅"]
ADJECTIVES = ["复古", "简约", "北欧", "可爱", "迷你", "大号", "便携", "加厚", "防水", "折叠", "手工", "日式",
              "创意", "高档", "心形", "儿童", "女士", "男士", "时尚", "轻薄", "耐用", "卡通", "ins风", "网红"]
# noun -> category; the materials/colours that make sense are not modelled (synthetic data)
NOUNS = {
    "厨房用品": ["马克杯", "保温杯", "茶杯", "咖啡杯", "水杯", "饭碗", "盘子", "筷子", "茶壶", "汤锅", "炒锅",
                 "砧板", "保鲜盒", "餐具套装", "玻璃杯"],
    "数码配件": ["蓝牙耳机", "耳机", "音箱", "充电器", "数据线", "手机壳", "鼠标", "键盘", "充电宝", "手机支架",
                 "鼠标垫", "平板保护套"],
    "女装": ["连衣裙", "半身裙", "衬衫", "针织衫", "外套", "风衣", "毛衣", "打底裤"],
    "男装": ["T恤", "卫衣", "夹克", "西装", "牛仔裤", "休闲裤", "羽绒服"],
    "鞋包配饰": ["运动鞋", "帆布鞋", "拖鞋", "背包", "钱包", "手提包", "围巾", "帽子", "袜子", "手套", "腰带"],
    "家居装饰": ["烛台", "花瓶", "相框", "台灯", "抱枕", "地毯", "挂钟", "收纳盒", "香薰", "装饰画", "镜子",
                 "窗帘"],
    "家纺": ["毛巾", "浴巾", "床单", "被套", "枕头", "毛毯", "四件套"],
    "玩具": ["积木", "毛绒玩具", "拼图", "遥控车", "玩偶", "小狗玩具", "益智玩具"],
    "文具": ["笔记本", "钢笔", "文具盒", "便利贴", "书签", "日记本", "铅笔"],
}
CATEGORY_OF = {n: c for c, ns in NOUNS.items() for n in ns}
ALL_NOUNS = [n for ns in NOUNS.values() for n in ns]
SUFFIXES = ["2只装", "3件套", "500ml", "大容量", "套装", "新款", "加大码", "10个装"]
USES = ["家居", "办公室", "送礼", "旅行", "厨房", "户外", "学生宿舍", "日常", "节日", "聚会"]
PRAISE = ["做工精致", "手感舒适", "经久耐用", "设计新颖", "品质上乘", "简单大方", "性价比高"]
# Mixed-script titles: (Latin part, noun); the Latin part is what shoppers misspell.
MIXED = [("iPhone 15", "手机壳"), ("iPhone 14 Pro", "手机壳"), ("iPad", "平板保护套"), ("AirPods", "耳机"),
         ("Type-C", "数据线"), ("USB", "充电器"), ("Switch", "保护套"), ("MacBook", "键盘"),
         ("Kindle", "保护套"), ("Bluetooth", "音箱"), ("Lego", "积木"), ("Nike", "运动鞋")]
MISSPELL = {"iPhone": "iphnoe", "AirPods": "airpds", "Bluetooth": "bluetoth", "MacBook": "macbok",
            "Kindle": "kindel", "Switch": "swich", "Nike": "nkie", "Lego": "lgeo"}
# Query words the catalogue never contains (so the searcher backs off), with the noun they mean.
BACKOFF = [("杯子", "马克杯"), ("鞋子", "运动鞋"), ("裙子", "连衣裙"), ("被子", "被套"), ("陶瓷杯子", "马克杯"),
           ("蓝牙耳麦", "蓝牙耳机"), ("茶具", "茶壶"), ("水壶", "保温杯"), ("灯具", "台灯"), ("包包", "手提包"),
           ("玻璃花瓶子", "花瓶"), ("毛绒狗", "毛绒玩具"), ("耳机套", "耳机"), ("充电线", "数据线")]
CATEGORY_HEADER = ["商品编号", "商品名称", "描述", "类别", "价格"]


def _is_han(word: str) -> bool:
    return all("\u4e00" <= ch <= "\u9fff" for ch in word)


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def make_item(rng: np.random.Generator) -> dict:
    """One item: ``words`` (title words in order), ``title``, ``description``, ``category``, ``latin``."""
    if rng.random() < 0.08:
        latin, noun = _pick(rng, MIXED)
        cat = CATEGORY_OF.get(noun, "数码配件")
        words = [latin]
        if rng.random() < 0.6:
            words.append(_pick(rng, COLOURS + MATERIALS))
        words.append(noun)
        title = " ".join(words)
    else:
        noun = _pick(rng, ALL_NOUNS)
        cat = CATEGORY_OF[noun]
        latin = None
        words = []
        for pool, p in ((ADJECTIVES, 0.45), (COLOURS, 0.6), (MATERIALS, 0.55)):
            if rng.random() < p:
                words.append(_pick(rng, pool))
        if not words:
            words.append(_pick(rng, COLOURS))
        words = words[:3] + [noun]
        title = (" " if rng.random() < 0.3 else "").join(words)
        if rng.random() < 0.2:
            title += " " + _pick(rng, SUFFIXES)
    desc = f"这款{''.join(w for w in words if w != latin)}{_pick(rng, PRAISE)}，适合{_pick(rng, USES)}使用。"
    return {"words": words, "title": title, "description": desc, "category": cat, "latin": latin}


def make_catalogue(n: int, seed: int = 19) -> list[dict]:
    """``n`` items with ids ``ZH0000001``..., seeded."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        it = make_item(rng)
        it["item_id"] = f"ZH{i + 1:07d}"
        it["price"] = round(float(rng.lognormal(3.5, 0.8)), 2)
        items.append(it)
    return items


def write_csv(items: list[dict], path: Path, encoding: str = "gbk") -> Path:
    """The catalogue as a CSV with Chinese headers (:data:`CATEGORY_HEADER`), GBK by default."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding=encoding, newline="") as f:
        w = csv.writer(f)
        w.writerow(CATEGORY_HEADER)
        for it in items:
            w.writerow([it["item_id"], it["title"], it["description"], it["category"], f"{it['price']:.2f}"])
    return path


def _pinyin(word: str, initials: bool) -> str:
    from pypinyin import Style, lazy_pinyin

    if initials:
        return "".join(s[:1] for s in lazy_pinyin(word, style=Style.FIRST_LETTER))
    return "".join(lazy_pinyin(word))


def make_queries(items: list[dict], count: int, seed: int = 23,
                 shares: Optional[dict[str, float]] = None) -> list[dict]:
    """``count`` distinct queries ``{"query", "kind", "source", "word"}`` (``source`` = item index).

    Kinds and default shares: word 0.35, two 0.25, backoff 0.15, pinyin 0.15, misspelt 0.10.
    """
    rng = np.random.default_rng(seed)
    shares = shares or {"word": 0.35, "two": 0.25, "backoff": 0.15, "pinyin": 0.15, "misspelt": 0.10}
    kinds, probs = list(shares), np.array(list(shares.values()), dtype=float)
    probs /= probs.sum()
    mixed = [i for i, it in enumerate(items) if it["latin"] and it["latin"].split()[0] in MISSPELL]
    seen: dict[str, dict] = {}
    tries = 0
    while len(seen) < count and tries < count * 200:
        tries += 1
        kind = kinds[int(rng.choice(len(kinds), p=probs))]
        src = int(rng.integers(len(items)))
        it = items[src]
        han = [w for w in it["words"] if w != it["latin"]]
        word = None
        if kind == "word":
            word = _pick(rng, han)
            q = word
        elif kind == "two":
            if len(han) < 2:
                continue
            a, b = sorted(rng.choice(len(han), 2, replace=False).tolist())
            q = han[a] + (" " if rng.random() < 0.5 else "") + han[b]
        elif kind == "backoff":
            q, _noun = _pick(rng, BACKOFF)
            if rng.random() < 0.5:
                q = _pick(rng, COLOURS) + q
            src = -1
        elif kind == "pinyin":
            pure = [w for w in han if _is_han(w)]
            if not pure:
                continue
            word = _pick(rng, pure)
            q = _pinyin(word, initials=rng.random() < 0.3)
            if len(q) < 2:
                continue
        else:
            if not mixed:
                continue
            src = mixed[int(rng.integers(len(mixed)))]
            it = items[src]
            latin = it["latin"].split()[0]
            q = f"{MISSPELL[latin]} {it['words'][-1]}"
        if q in seen:
            continue
        seen[q] = {"query": q, "kind": kind, "source": src, "word": word}
    return list(seen.values())


def whole_title_queries(items: list[dict], count: int, seed: int = 29) -> list[dict]:
    """Queries made of all the Han words of one item's title (spaced), for the known-item check."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict] = {}
    while len(out) < count:
        src = int(rng.integers(len(items)))
        han = [w for w in items[src]["words"] if w != items[src]["latin"]]
        if len(han) >= 3:
            out.setdefault(" ".join(han), {"query": " ".join(han), "kind": "title", "source": src, "word": None})
    return list(out.values())


if __name__ == "__main__":
    for it in make_catalogue(12):
        print(it["item_id"], it["title"], "|", it["description"], "|", it["category"])
    for q in make_queries(make_catalogue(1000), 20):
        print(q)
