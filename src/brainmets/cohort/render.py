"""Rendering the descriptor: one self-contained HTML file (CSS inline, PNG figures embedded as
``data:`` URIs, no script, nothing fetched), a Markdown version whose figures are PNG files in
``figures/``, and every table as CSV in ``tables/``."""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

from brainmets.cohort.tables import Table
from brainmets.fsutil import atomic_write_bytes, atomic_write_text


@dataclass
class Figure:
    """A PNG figure of the report (``figures/<name>.png``)."""

    name: str
    caption: str
    png: bytes


@dataclass
class Section:
    """A section: heading, paragraphs, then tables, then figures."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Document:
    """The whole report."""

    title: str
    subtitle: str
    sections: list[Section]

    @property
    def tables(self) -> list[Table]:
        return [t for s in self.sections for t in s.tables]

    @property
    def figures(self) -> list[Figure]:
        return [f for s in self.sections for f in s.figures]


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1400px;color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:1.6em}h3{font-size:1.05em;margin-bottom:.3em}
.subtitle{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.4em 0 .3em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right}
.note{color:#555;font-size:.86em;margin:.2em 0 1em 0}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{color:#555;font-size:.88em}
nav ul{columns:2;font-size:.92em}
"""


def _cell(v: object) -> str:
    return "" if v is None else str(v)


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _indent(v: str) -> int:
    """Leading spaces of a row label (2 per level: a category, 4: a reason within it)."""
    return len(v) - len(v.lstrip(" "))


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def repeats(heading: str, caption: str) -> bool:
    """Whether a table's caption only repeats the heading above it (then it is not shown)."""
    return " ".join(heading.split()).casefold() == " ".join(caption.split()).casefold()


def table_html(t: Table, heading: str = "") -> str:
    """One table as HTML (``id`` = the table's name); its caption (``<h3>``) is left out when
    it repeats ``heading``, the section's title."""
    out = [] if repeats(heading, t.title) else [f"<h3>{html.escape(t.title)}</h3>"]
    out += [f'<table id="{html.escape(t.name)}">', "<thead><tr>"]
    out += [f"<th>{html.escape(c)}</th>" for c in t.columns]
    out.append("</tr></thead><tbody>")
    for row in t.rows:
        out.append("<tr>")
        for v in row:
            text = html.escape(_cell(v))
            if isinstance(v, str) and v.startswith("  "):
                text = "&nbsp;" * (2 * _indent(v)) + html.escape(v.strip())
            out.append(f'<td class="num">{text}</td>' if _is_num(v) else f"<td>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    if t.note:
        out.append(f'<p class="note">{html.escape(t.note)}</p>')
    return "\n".join(out)


def render_html(doc: Document) -> str:
    """The self-contained HTML report."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(doc.title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
        f'<p class="subtitle">{html.escape(doc.subtitle)}</p>',
        "<nav><ul>",
        *[
            f'<li><a href="#{_anchor(s.title)}">{html.escape(s.title)}</a></li>'
            for s in doc.sections
        ],
        "</ul></nav>",
    ]
    for s in doc.sections:
        parts.append(f'<section id="{_anchor(s.title)}"><h2>{html.escape(s.title)}</h2>')
        parts += [f"<p>{html.escape(p)}</p>" for p in s.paragraphs]
        parts += [table_html(t, s.title) for t in s.tables]
        for f in s.figures:
            data = base64.b64encode(f.png).decode("ascii")
            parts.append(
                f'<figure id="fig-{html.escape(f.name)}"><img alt="{html.escape(f.caption)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{html.escape(f.caption)}'
                "</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _md_escape(v: object) -> str:
    return _cell(v).replace("|", "\\|").replace("\n", " ")


def table_markdown(t: Table, heading: str = "") -> str:
    """One table as Markdown; its caption (``###``) is left out when it repeats ``heading``."""
    lines = [] if repeats(heading, t.title) else [f"### {t.title}", ""]
    lines.append("| " + " | ".join(_md_escape(c) for c in t.columns) + " |")
    numeric = [
        bool(t.rows) and all(_is_num(r[i]) or r[i] in ("", None) for r in t.rows)
        for i in range(len(t.columns))
    ]
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    for row in t.rows:
        cells = []
        for v in row:
            text = _md_escape(v)
            if isinstance(v, str) and v.startswith("  "):
                text = "&nbsp;" * _indent(v) + text.strip()
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    if t.note:
        lines += ["", f"*{t.note}*"]
    return "\n".join(lines)


def render_markdown(doc: Document, figure_dir: str = "figures") -> str:
    """The Markdown report; figures are referenced as ``figures/<name>.png``."""
    out = [f"# {doc.title}", "", doc.subtitle, ""]
    for s in doc.sections:
        out += [f"## {s.title}", ""]
        for p in s.paragraphs:
            out += [p, ""]
        for t in s.tables:
            out += [table_markdown(t, s.title), ""]
        for f in s.figures:
            out += [f"![{f.caption}]({figure_dir}/{f.name}.png)", "", f"*{f.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


def table_csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(t.columns)
    for row in t.rows:
        w.writerow([_cell(v).strip() if isinstance(v, str) else _cell(v) for v in row])
    return buf.getvalue()


def write_document(doc: Document, out_dir: Path) -> dict[str, Path]:
    """Write ``report.html``, ``report.md``, ``tables/<name>.csv`` and
    ``figures/<name>.png`` into ``out_dir`` (atomically, file by file); return role -> path
    (``html``, ``markdown``, ``table_<name>``, ``figure_<name>``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for t in doc.tables:
        written[f"table_{t.name}"] = atomic_write_text(
            out_dir / "tables" / f"{t.name}.csv", table_csv(t)
        )
    for f in doc.figures:
        written[f"figure_{f.name}"] = atomic_write_bytes(
            out_dir / "figures" / f"{f.name}.png", f.png
        )
    written["markdown"] = atomic_write_text(out_dir / "report.md", render_markdown(doc))
    written["html"] = atomic_write_text(out_dir / "report.html", render_html(doc))
    keep = {p.resolve() for p in written.values()}
    for sub, pattern in (("tables", "*.csv"), ("figures", "*.png")):
        for old in (out_dir / sub).glob(pattern):
            if old.resolve() not in keep:  # a table or figure of an earlier run
                old.unlink()
    return written
