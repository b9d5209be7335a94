"""The report's document and the helpers every section shares: sections collected once, rendered
as HTML and as Markdown (no network, no JS)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd


class Doc:
    """Collects sections once and renders them as HTML and as Markdown."""

    def __init__(self, title: str, fig_dir: Path):
        self.title, self.fig_dir, self.html, self.md = title, fig_dir, [], [f"# {title}\n"]
        self.n_fig = 0

    def heading(self, text: str, level: int = 2):
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {text}\n")

    def para(self, text: str):
        self.html.append(f"<p>{html.escape(text)}</p>")
        self.md.append(f"{text}\n")

    def table(self, df: pd.DataFrame, bold: set | None = None):
        bold = bold or set()
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
        rows = []
        for i, row in enumerate(df.itertuples(index=False)):
            cells = "".join(f"<td class='{'best' if (i, j) in bold else ''}'>{html.escape(str(v))}</td>"
                            for j, v in enumerate(row))
            rows.append(f"<tr>{cells}</tr>")
        self.html.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        md = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
        for i, row in enumerate(df.itertuples(index=False)):
            md.append("| " + " | ".join(f"**{v}**" if (i, j) in bold else str(v) for j, v in enumerate(row)) + " |")
        self.md.append("\n".join(md) + "\n")

    def figure(self, png: bytes, caption: str):
        self.n_fig += 1
        name = f"figure{self.n_fig}.png"
        (self.fig_dir / name).write_bytes(png)
        b64 = base64.b64encode(png).decode()
        self.html.append(f"<figure><img src='data:image/png;base64,{b64}' alt='{html.escape(caption)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        self.md.append(f"![{caption}](figures/{name})\n\n*{caption}*\n")

    def render_html(self, footer: str) -> str:
        css = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{border-bottom:2px solid #1f77b4;padding-bottom:.2em}
h2{margin-top:1.8em;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.35em .7em;text-align:right}th{background:#f3f5f8}
td:first-child,th:first-child{text-align:left}td.best{font-weight:bold;background:#e8f4e8}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:.85em;color:#555}
footer{margin-top:3em;font-size:.8em;color:#666;border-top:1px solid #ddd;padding-top:.5em}"""
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{css}</style></head><body><h1>{html.escape(self.title)}</h1>{''.join(self.html)}"
                f"<footer>{footer}</footer></body></html>")


def fmt(mean: float, std: float) -> str:
    """``mean ± std`` with digits by magnitude; the spread left out where it is 0 or unknown (one seed)."""
    digits = 1 if abs(mean) >= 10 else 2 if abs(mean) >= 1 else 3
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if np.isfinite(std) and std > 0 else "")


def setting_col(df: pd.DataFrame, name: str) -> pd.Series:
    """One field of every record's ``setting`` dict (None where a record has no such field)."""
    return df["setting"].map(lambda s: s.get(name) if isinstance(s, dict) else None)
