"""Rendering a report: sections of blocks → Markdown (PNGs beside it) and self-contained HTML (base64 PNGs).

Both renderings come from the same blocks, so the two files always say the same thing.
"""

from __future__ import annotations

import base64
import html
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Section:
    """One parent run's part of a report: blocks in order and the PNG figures they name."""

    title: str
    run_id: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)  # ("p", str) | ("table", (head, rows)) | ("img", name)
    figures: dict[str, bytes] = field(default_factory=dict)

    def text(self, s: str) -> None:
        """Append a paragraph."""
        self.blocks.append(("p", s))

    def table(self, head: list[str], rows: list[list[str]]) -> None:
        """Append a table of ``head`` and ``rows`` (cells already formatted)."""
        self.blocks.append(("table", (head, rows)))

    def figure(self, name: str, png: bytes | None, caption: str) -> None:
        """Append the PNG ``png`` as figure ``name``; a figure that could not be drawn (None) is left out."""
        if png is None:
            return
        self.figures[name] = png
        self.blocks.append(("img", (name, caption)))


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    esc = [[x.replace("|", "\\|") for x in r] for r in rows]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
                     + ["| " + " | ".join(r) + " |" for r in esc])


def render_markdown(title: str, sections: list[Section], prefix: dict[str, str]) -> str:
    """The report as Markdown; ``prefix`` maps a section's run id to its PNG names' prefix (files beside it)."""
    out = [f"# {title}", "", f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} from MLflow.", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for kind, content in s.blocks:
            if kind == "p":
                out += [content, ""]
            elif kind == "table":
                out += [_md_table(*content), ""]
            else:
                name, caption = content
                out += [f"![{caption}]({prefix[s.run_id]}{name})", "", f"*{caption}*", ""]
    return "\n".join(out)


def _inline(text: str) -> str:
    """Markdown ``**bold**`` and `` `code` `` → HTML, the rest escaped."""
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def render_html(title: str, sections: list[Section]) -> str:
    """Self-contained: figures as base64 data URIs."""
    css = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
           "table{border-collapse:collapse;margin:.5em 0;font-size:13px}"
           "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
           "img{max-width:100%}figcaption{font-size:12px;color:#555}code{font-size:12px}")
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{css}</style></head><body><h1>{html.escape(title)}</h1>"]
    for s in sections:
        out.append(f"<h2>{html.escape(s.title)}</h2>")
        for kind, content in s.blocks:
            if kind == "p":
                out.append(f"<p>{_inline(content)}</p>")
            elif kind == "table":
                head, rows = content
                out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
                           + "".join("<tr>" + "".join(f"<td>{_inline(x)}</td>" for x in r) + "</tr>" for r in rows)
                           + "</table>")
            else:
                name, caption = content
                data = base64.b64encode(s.figures[name]).decode()
                out.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(out_dir: Path, title: str, sections: list[Section]) -> tuple[Path, Path]:
    """``report.md`` + ``report.html`` + PNGs in ``out_dir`` (PNG names prefixed per run when there are several)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = {s.run_id: (f"{s.run_id[:8]}_" if len(sections) > 1 else "") for s in sections}
    for s in sections:
        for name, png in s.figures.items():
            (out_dir / f"{prefix[s.run_id]}{name}").write_bytes(png)
    md, page = out_dir / "report.md", out_dir / "report.html"
    md.write_text(render_markdown(title, sections, prefix))
    page.write_text(render_html(title, sections))
    return md, page
