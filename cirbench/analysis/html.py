"""A self-contained HTML report (reports/index.html): the tables with intervals, the plots, the paired
comparisons, the retrieval grids and a per-query browser (filter by split, by "method A right, method
B wrong", search by text). It works opened from disk: no server, no network; thumbnails are files in
reports/thumbs/ beside it, the data is embedded in the page.
"""

from __future__ import annotations

import hashlib
import html as _html
import io
import json
import re
from pathlib import Path

import numpy as np

from cirbench.analysis.cells import dataset_labels, display_orders, encoder_labels
from cirbench.analysis.tables import encoder_lines, example_texts, fmt, protocol_lines, significance_matrices
from cirbench.storage.results import method_id
from cirbench.util import fsutil
from cirbench.analysis.grids import choose, groups, thumbnail, view_of

THUMB = 80
THUMB_FILE = re.compile(r"[0-9a-f]{16}\.jpg")  # the names Thumbs gives


def esc(text) -> str:
    return _html.escape(str(text), quote=True)


def _table_html(table) -> str:

    head = "".join(f"<th>{esc(s)}<br>{esc(m)}</th>" for s, m in table.value.columns)
    rows = []
    for ix in table.value.index:
        cells = "".join(f"<td>{esc(fmt(table.value.loc[ix, c], table.low.loc[ix, c], table.high.loc[ix, c]))}</td>"
                        for c in table.value.columns)
        rows.append(f"<tr><th>{esc(ix[0])}</th><th>{esc(ix[1])}</th>{cells}</tr>")
    return (f"<table class='results'><thead><tr><th>encoder</th><th>method</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def inline(text: str) -> str:
    """Markdown text (as the .md report writes it) as HTML: escaped, its `code` spans (and ``fenced``
    ones holding a backtick) as <code>."""
    return re.sub(r"`` (.+?) ``|`([^`]*)`", lambda m: f"<code>{m.group(1) if m.group(1) is not None else m.group(2)}</code>",
                  esc(text))


def _markdown_table_html(lines: list[str]) -> str:
    """A markdown table (as the .md report writes them) as HTML: cells split at unescaped pipes."""
    rows = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            for line in lines if not line.startswith("|---")]
    if not rows:
        return ""
    head = "".join(f"<th>{esc(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Thumbs:
    """Thumbnails made once per image per render, written into reports/thumbs/ under the digest of their
    bytes: the same report rendered again, or on another machine, names and writes nothing new."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.done: dict[tuple[str, str], str] = {}  # (source path, image id) -> file name

    def __call__(self, outcomes, image_id: str) -> str:
        if not image_id:
            return ""
        key = (str(outcomes.images.get(image_id, "")), image_id)
        if key not in self.done:
            buffer = io.BytesIO()
            thumbnail(outcomes, image_id, THUMB).save(buffer, format="JPEG", quality=85)
            data = buffer.getvalue()
            name = hashlib.sha1(data).hexdigest()[:16] + ".jpg"
            if not (self.folder / name).is_file():
                fsutil.atomic_write(self.folder / name, lambda fh: fh.write(data), fsync=False)
            self.done[key] = name
        return f"thumbs/{self.done[key]}"

    def prune(self) -> None:
        """Remove the thumbnails of earlier renders that this page no longer shows."""
        if not self.folder.is_dir():
            return
        shown = set(self.done.values())
        for path in self.folder.iterdir():
            if THUMB_FILE.fullmatch(path.name) and path.name not in shown:
                path.unlink()


def browser_data(report, out: Path, per_split: int, seed: int) -> dict:
    """The per-query browser's data: a seeded sample of each split's queries, each method's top 5, which
    of them are ground truth, and the best rank of a ground truth (for right/wrong filters)."""

    records = report.records
    enc_labels, ds_labels = encoder_labels(records), dataset_labels(records)
    thumbs = Thumbs(out / "thumbs")
    data = []
    for (enc, ds, split), cells in sorted(groups(report).items()):
        rows = choose(cells, per_split, "random", None, seed, f"browser:{ds}:{split}")
        first = cells[0].outcomes
        queries = []
        for q in rows:
            entry = {"qid": first.qids[q], "text": first.texts[q] if first.texts else "",
                     "ref": thumbs(first, first.references[q]) if first.references else "",
                     "target": thumbs(first, first.first_targets[q]) if first.first_targets else "", "m": {}}
            for cell in cells:
                if len(cell.outcomes.qids) <= q or cell.outcomes.qids[q] != first.qids[q]:
                    continue
                top, ranks, _f = view_of(cell)
                found = [int(r) for r in ranks[q] if r > 0]
                entry["m"][method_id(cell.record)] = {
                    "top": [thumbs(cell.outcomes, cell.outcomes.gallery[g]) for g in top[q, :5].tolist() if g >= 0],
                    "hits": sorted(r for r in found if r <= 5), "best": min(found) if found else 0}
            queries.append(entry)
        data.append({"group": f"{ds_labels[ds]}:{split}" + (f" ({enc_labels[enc]})" if len(set(enc_labels.values())) > 1
                                                            else ""),
                     "methods": [method_id(c.record) for c in cells], "queries": queries})
    thumbs.prune()
    return {"groups": data}


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cirbench report</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
table.results td {{ white-space: nowrap; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
img.plot {{ max-width: 100%; }} img.grid {{ max-width: 100%; border: 1px solid #ddd; margin: 4px 0; }}
#browser .q {{ border-top: 1px solid #ddd; padding: 6px 0; }}
#browser .row {{ display: flex; align-items: center; gap: 4px; margin: 2px 0; }}
#browser .name {{ width: 150px; font-size: 12px; }}
#browser img {{ width: {thumb}px; height: {thumb}px; border: 3px solid transparent; }}
#browser img.hit {{ border-color: #14aa3c; }}
.controls label {{ margin-right: 1em; }} #errors {{ color: #b00; }}
</style></head>
<body data-status="loading">
<script>
window.cirbenchErrors = [];
window.addEventListener('error', function (e) {{
  window.cirbenchErrors.push(String(e.message || (e.target && e.target.src) || 'error'));
  document.body.setAttribute('data-errors', window.cirbenchErrors.join(' | '));
}}, true);
</script>
<h1>cirbench report</h1>
<p>{intro}</p>
{sections}
<h2 id="browse">Per-query browser</h2>
<div class="controls">
<label>split <select id="group"></select></label>
<label>method A <select id="ma"></select></label>
<label>method B <select id="mb"></select></label>
<label>right = ground truth in top <select id="k"><option>1</option><option selected>5</option><option>10</option></select></label>
<label>show <select id="filter">
<option value="all">all queries</option><option value="a-not-b">A right, B wrong</option>
<option value="b-not-a">B right, A wrong</option><option value="neither">both wrong</option></select></label>
<label>text <input id="search" type="search" placeholder="search the query text"></label>
</div>
<p id="count"></p>
<div id="browser"></div>
<pre id="errors"></pre>
<script type="application/json" id="data">{data}</script>
<script>
(function () {{
  var data = JSON.parse(document.getElementById('data').textContent);
  var $ = function (id) {{ return document.getElementById(id); }};
  function option(select, value, text) {{
    var o = document.createElement('option'); o.value = value; o.textContent = text; select.appendChild(o);
  }}
  data.groups.forEach(function (g, i) {{ option($('group'), i, g.group + ' (' + g.queries.length + ' queries)'); }});
  function fillMethods() {{
    var g = data.groups[+$('group').value];
    ['ma', 'mb'].forEach(function (id, j) {{
      var s = $(id); var keep = s.value; s.innerHTML = '';
      (g ? g.methods : []).forEach(function (m) {{ option(s, m, m); }});
      if (keep && g && g.methods.indexOf(keep) >= 0) {{ s.value = keep; }}
      else if (g && g.methods.length > j) {{ s.value = g.methods[g.methods.length > 1 ? g.methods.length - 1 - j : 0]; }}
    }});
  }}
  function right(q, m, k) {{ var r = q.m[m]; return !!r && r.best > 0 && r.best <= k; }}
  function image(src, hit) {{
    var img = document.createElement('img'); img.src = src; img.alt = ''; img.loading = 'lazy';
    if (hit) {{ img.className = 'hit'; }} return img;
  }}
  function render() {{
    var g = data.groups[+$('group').value]; var box = $('browser'); box.innerHTML = '';
    if (!g) {{ $('count').textContent = 'no per-query outcomes in these results'; return; }}
    var a = $('ma').value, b = $('mb').value, k = +$('k').value, f = $('filter').value;
    var text = $('search').value.toLowerCase();
    var shown = g.queries.filter(function (q) {{
      if (text && q.text.toLowerCase().indexOf(text) < 0) {{ return false; }}
      if (f === 'a-not-b') {{ return right(q, a, k) && !right(q, b, k); }}
      if (f === 'b-not-a') {{ return right(q, b, k) && !right(q, a, k); }}
      if (f === 'neither') {{ return !right(q, a, k) && !right(q, b, k); }}
      return true;
    }});
    $('count').textContent = shown.length + ' of ' + g.queries.length + ' sampled queries';
    shown.slice(0, 60).forEach(function (q) {{
      var div = document.createElement('div'); div.className = 'q';
      var head = document.createElement('div'); head.className = 'row';
      if (q.ref) {{ head.appendChild(image(q.ref, false)); }}
      var t = document.createElement('span'); t.textContent = q.qid + ': ' + q.text; head.appendChild(t);
      if (q.target) {{ var tl = document.createElement('span'); tl.textContent = '  target:'; head.appendChild(tl);
                       head.appendChild(image(q.target, true)); }}
      div.appendChild(head);
      g.methods.forEach(function (m) {{
        var r = q.m[m]; if (!r) {{ return; }}
        var row = document.createElement('div'); row.className = 'row';
        var n = document.createElement('span'); n.className = 'name';
        n.textContent = m + (r.best ? ' (first hit at ' + r.best + ')' : ' (no hit in the top 50)');
        row.appendChild(n);
        r.top.forEach(function (src, i) {{ row.appendChild(image(src, r.hits.indexOf(i + 1) >= 0)); }});
        div.appendChild(row);
      }});
      box.appendChild(div);
    }});
  }}
  $('group').addEventListener('change', function () {{ fillMethods(); render(); }});
  ['ma', 'mb', 'k', 'filter'].forEach(function (id) {{ $(id).addEventListener('change', render); }});
  $('search').addEventListener('input', render);
  fillMethods(); render();
  document.body.setAttribute('data-status', 'ready');
  window.addEventListener('load', function () {{
    var broken = Array.prototype.filter.call(document.images, function (im) {{ return im.complete && im.naturalWidth === 0; }});
    document.body.setAttribute('data-broken-images', String(broken.length));
  }});
}})();
</script>
</body></html>
"""


def render_html(report, tables: dict, comp, paper, plots: dict, grid_files: list[tuple[str, Path]], out: Path,
                browser_queries: int = 40, seed: int = 0) -> Path:

    sections = []
    for dataset, table in tables.items():
        parts = [f"<h2 id='{esc(fsutil.slug(dataset))}'>{esc(dataset)}</h2>", _table_html(table)]
        if dataset in plots:
            parts.append(f"<img class='plot' src='{esc(plots[dataset].name)}' alt='{esc(dataset)} plot'>")
        for split, metric, enc, matrix in significance_matrices(comp, dataset, table, display_orders(report.records)):
            parts.append(f"<p>Paired comparisons, {esc(split)} {esc(metric)} ({esc(enc)}): row minus column; "
                         "* p &lt; 0.05 after Holm's correction over the matrix's pairs (paired bootstrap)."
                         "</p>" + _markdown_table_html(matrix))
        for grid_dataset, grid in grid_files:
            if grid_dataset == dataset:
                parts.append(f"<img class='grid' src='grids/{esc(grid.name)}' alt='retrieval grid {esc(grid.stem)}'>")
        sections.append("\n".join(parts))
    if paper.empty:
        sections.append("<h2 id='paper'>Paper numbers beside measured ones</h2><p>No result matches a published number "
                        "(they need the same method, encoder, dataset, split and metric).</p>")
    else:
        rows = "".join(f"<tr><td>{esc(r.method)}</td><td>{esc(r.backbone)}</td><td>{esc(r.dataset)}:{esc(r.split)}</td>"
                       f"<td>{esc(r.metric)}</td><td>{esc(fmt(r.value_measured, r.measured_low, r.measured_high))}</td>"
                       f"<td>{r.value_paper:.2f}</td><td>{r.difference:+.2f}</td><td>{esc(r.paper_inside_interval)}</td>"
                       f"<td>{esc(r.verified)}</td><td>{esc(r.source)}</td></tr>" for r in paper.itertuples())
        sections.append("<h2 id='paper'>Paper numbers beside measured ones</h2><table><thead><tr><th>method</th>"
                        "<th>backbone</th><th>split</th><th>metric</th><th>measured</th><th>paper</th><th>difference</th>"
                        "<th>paper inside the interval</th><th>verified</th><th>source</th></tr></thead>"
                        f"<tbody>{rows}</tbody></table>")
    sections.append("<h2 id='protocols'>Methods and protocols</h2>"
                    + _markdown_table_html(protocol_lines(report.records, example_texts(report))))
    items = "".join(f"<li>{inline(line[2:].strip())}</li>" if line.startswith("- ")
                    else f"<ul><li>{inline(line.strip()[2:])}</li></ul>" for line in encoder_lines(report.records))
    sections.append(f"<h2 id='encoders'>Encoders</h2><ul class='encoders'>{items}</ul>")
    heads = re.findall(r"<h2 id='([^']*)'>([^<]*)</h2>", "\n".join(sections))
    contents = " · ".join(f"<a href='#{i}'>{t}</a>" for i, t in heads + [("browse", "Per-query browser")])
    sections.insert(0, f"<nav id='contents'>Contents: {contents}</nav>")
    data = browser_data(report, out, browser_queries, seed)
    intro = (f"{len(report.cells)} result files. Scores are percentages with 95% bootstrap intervals over queries "
             f"({report.resamples} resamples, seed {report.seed}). Grids: each method's top 5, ground truth in green.")
    page = PAGE.format(intro=esc(intro), sections="\n".join(sections), thumb=THUMB,
                       data=json.dumps(data, default=_json_default).replace("</", "<\\/"))
    return fsutil.write_text(out / "index.html", page)


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    raise TypeError(type(obj))
