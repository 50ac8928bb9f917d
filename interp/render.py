"""HTML building blocks shared by the card sections, the dashboard and the exports: plain strings, no plotly.

Every piece of text that can come from a corpus, a prompt or a tokenizer passes through ``html.escape``
here, so a section that builds its HTML from these helpers cannot inject markup. Figures are inline SVG
(``svg_bars``), so a card page or an exported file needs no JavaScript and no network.
"""

from __future__ import annotations

import base64
import html
import math
import re

STYLE = ("table.card{border-collapse:collapse;margin:.4em 0}table.card td,table.card th{border:1px solid #cbd5e0;"
         "padding:2px 6px;font-size:13px}.missing{color:#4a5568;background:#ebf8ff;padding:10px;border-radius:6px}"
         ".note{color:#718096;font-size:13px}")


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text) -> str:
    """Control characters (an ESC that would drive a terminal, a NUL) written as ``\\xNN``."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def esc(text) -> str:
    return html.escape(visible(text))


def with_code(text: str) -> str:
    """Escaped text whose `backticked` parts are shown as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(visible(text or "")))


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:+.4g}"
    return "" if v is None else str(v)


def note(text: str) -> str:
    return f"<p class='note'>{with_code(text)}</p>"


def table_html(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table class='card'><tr>{head}</tr>{body}</table>"


def chips(tokens: list[dict], rgb: str) -> str:
    """Tokens as shaded chips (the shade: |score| over the list's largest; hover: score and id)."""
    if not tokens:
        return "<i>none</i>"
    peak = max(abs(t["score"]) for t in tokens) or 1.0
    return " ".join(
        f'<span title="{t["score"]:+.3f} (id {t["token_id"]})" style="background:rgba({rgb},'
        f'{0.15 + 0.6 * abs(t["score"]) / peak:.2f});padding:1px 5px;border-radius:4px;font-family:monospace;'
        f'white-space:pre">{esc(repr(t["token"]))}</span>' for t in tokens)


def metrics_html(items: list[tuple[str, str, str]]) -> str:
    """Big numbers in a row: (label, value, note)."""
    cells = "".join(f'<div style="min-width:120px"><div style="font-size:13px;color:#4a5568">{esc(l)}</div>'
                    f'<div style="font-size:28px">{esc(v)}</div>'
                    f'<div style="font-size:12px;color:#718096">{esc(n)}</div></div>' for l, v, n in items)
    return f'<div style="display:flex;gap:28px;flex-wrap:wrap;margin:6px 0 10px 0">{cells}</div>'


def svg_bars(heights: list[float | int], labels: list[str], title: str, log: bool = False,
             colors: list[str] | None = None, ticks: list[tuple[int, str]] | None = None, width: int = 520,
             height: int = 170, fmt: str = "{:g}") -> str:
    """A bar chart as inline SVG: one bar per value (hover: its label and value), optional log scale,
    x tick labels at ``ticks`` (index, text)."""
    n = max(len(heights), 1)
    top, bottom, left = 22, 22, 4
    inner_h, inner_w = height - top - bottom, width - 2 * left
    scaled = [math.log10(1 + h) if log else h for h in heights]
    peak = max(scaled) if scaled and max(scaled) > 0 else 1.0
    bar_w = inner_w / n
    bars = []
    for i, (h, s) in enumerate(zip(heights, scaled)):
        bh = inner_h * s / peak
        color = colors[i] if colors else "#4a5568"
        bars.append(f'<rect x="{left + i * bar_w:.1f}" y="{top + inner_h - bh:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                    f'height="{bh:.1f}" fill="{color}"><title>{esc(labels[i])}: {fmt.format(h)}</title></rect>')
    tick = "".join(f'<text x="{left + (i + 0.5) * bar_w:.1f}" y="{height - 6}" font-size="10" text-anchor="middle" '
                   f'fill="#4a5568">{esc(t)}</text>' for i, t in (ticks or []))
    return (f'<svg width="{width}" height="{height}" style="font-family:sans-serif">'
            f'<text x="{left}" y="14" font-size="13" font-weight="600" fill="#1a202c">{esc(title)}</text>'
            f'{"".join(bars)}<line x1="{left}" x2="{width - left}" y1="{top + inner_h}" y2="{top + inner_h}" '
            f'stroke="#a0aec0"/>{tick}</svg>')


def context_html(ctx: dict, scale: float) -> str:
    """A context as HTML text, each token shaded by this neuron's activation
    (blue positive, red negative; the example's own token is outlined)."""
    spans = []
    for i, (tok, a) in enumerate(zip(ctx["tokens"], ctx["acts"])):
        alpha = min(1.0, abs(a) / scale) if scale else 0.0
        color = f"rgba(43,108,176,{alpha:.2f})" if a >= 0 else f"rgba(197,48,48,{alpha:.2f})"
        border = "outline:2px solid #1a202c;" if i == ctx["center"] else ""
        text = esc(tok).replace("\n", "⏎")
        spans.append(f'<span title="{a:+.3f}" style="background:{color};{border}padding:1px 0;'
                     f'white-space:pre">{text}</span>')
    return (f'<div style="font-family:monospace;line-height:1.9;margin:2px 0">'
            f'<b style="display:inline-block;width:70px">{ctx["activation"]:+.2f}</b>{"".join(spans)}</div>')


def scale_of(contexts: list[dict]) -> float:
    values = [abs(a) for c in contexts for a in c["acts"]]
    return max(values) if values else 1.0


def contexts_html(ctxs: list[dict]) -> str:
    scale = scale_of(ctxs)
    return "".join(context_html(c, scale) for c in ctxs)


_SVG = re.compile(r"<svg\b(.*?)>(.*?)</svg>", re.S)


def svgs_as_images(html_text: str) -> str:
    """Each inline ``<svg>`` as an ``<img>`` with the SVG in a data URI: pages that sanitise their HTML (Streamlit's
    ``st.html`` drops inline SVG) still draw the figure; its bars' hover titles are lost there (not in exports)."""
    def image(m: re.Match) -> str:
        attrs = m.group(1) if "xmlns" in m.group(1) else f' xmlns="http://www.w3.org/2000/svg"{m.group(1)}'
        data = base64.b64encode(f"<svg{attrs}>{m.group(2)}</svg>".encode()).decode()
        title = re.search(r"<text[^>]*>(.*?)</text>", m.group(2), re.S)
        alt = title.group(1) if title else "figure"
        return f'<img class="figure" alt="{alt}" src="data:image/svg+xml;base64,{data}">'
    return _SVG.sub(image, html_text)
