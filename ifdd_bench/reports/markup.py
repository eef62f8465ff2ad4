"""The table model of the reports and its two writers: booktabs LaTeX and Markdown.

A :class:`ReportTable` holds a header (optionally grouped into spanning labels), blocks of rows of
:class:`Cell` and footnotes. :func:`to_latex` writes it as a ``table``/``table*`` float with
caption, label and a footnote minipage; :func:`to_markdown` as a GitHub table with the notes as a
list. The builders in :mod:`ifdd_bench.reports.tables` fill it; the CLI prints the same object with
rich. No torch, no pandas.

Example::

    >>> t = ReportTable(key="demo", caption="Demo", columns=["Model", "UAR"], columns_tex=["Model", "UAR"],
    ...                 align="lr", blocks=[Block([[Cell("IFDD"), Cell("64.5", bold=True)]])])
    >>> print(to_markdown(t, heading=""))
    | Model | UAR |
    |:--|--:|
    | IFDD | **64.5** |
    <BLANKLINE>
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ifdd_bench.models.ifdd_config import LIFT_TEX


@dataclass
class Cell:
    """One table cell: plain text (Markdown / terminal), optional LaTeX form, bold flag."""

    text: str = ""
    tex: str | None = None  # None -> tex_escape(text)
    bold: bool = False

    def latex(self) -> str:
        body = self.tex if self.tex is not None else tex_escape(self.text)
        return rf"\textbf{{{body}}}" if self.bold and body else body

    def markdown(self) -> str:
        body = self.text.replace("|", r"\|")
        return f"**{body}**" if self.bold and body else body


@dataclass
class Block:
    """Rows printed together; a block after the first is separated by a rule and may have a title."""

    rows: list[list[Cell]] = field(default_factory=list)
    title: str = ""


@dataclass
class ReportTable:
    """A rendered-agnostic table: header (optionally grouped), blocks of rows, notes."""

    key: str  # file stem and LaTeX label suffix, e.g. "ablation_ifdd_tiny"
    caption: str
    columns: list[str]  # plain header of each column
    columns_tex: list[str]  # LaTeX header of each column
    align: str  # tabular column spec: one of l, c, r or p{width} per column
    blocks: list[Block]
    groups: list[tuple[str, int]] = field(default_factory=list)  # header groups (label, span); "" = none
    notes: list[str] = field(default_factory=list)  # plain text; converted with tex_escape for LaTeX
    wide: bool = False  # table* in LaTeX
    resize: bool = False  # scale the tabular to \textwidth (needs graphicx); for many-column tables
    colsep: str = ""  # \tabcolsep for this table (e.g. "4pt"); "" keeps the document's
    source: str = ""  # the CSV(s) it was rendered from

    def col_specs(self) -> list[str]:
        """The tabular spec split per column: ``"lp{3cm}r"`` -> ``["l", "p{3cm}", "r"]``."""
        return re.findall(r"p\{[^}]*\}|[lcr]", self.align)

    def justify(self) -> list[str]:
        """Horizontal alignment per column as ``left`` / ``center`` / ``right`` (``p`` columns are left)."""
        return [{"c": "center", "r": "right"}.get(spec, "left") for spec in self.col_specs()]

    def plain_header(self) -> list[str]:
        """Column headers with their group label prefixed (Markdown and terminal)."""
        labels = []
        for label, span in self.groups or [("", len(self.columns))]:
            labels.extend([label] * span)
        return [f"{g} {c}".strip() if g else c for g, c in zip(labels, self.columns)]

    def n_rows(self) -> int:
        return sum(len(b.rows) for b in self.blocks)


_TEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    # in text mode with the default OT1 encoding a bare < or > prints as an inverted ! or ?
    "<": r"\textless{}", ">": r"\textgreater{}",
}
_TEX_UNICODE = {
    "±": r"$\pm$", "×": r"$\times$", "Σ": r"$\Sigma$", "λ": r"$\lambda$", "≤": r"$\leq$", "≥": r"$\geq$",
    "–": "--", "—": "---", "†": r"\textdagger{}", "‡": r"\textdaggerdbl{}", "→": r"$\rightarrow$",
    "²": r"\textsuperscript{2}", "³": r"\textsuperscript{3}", "Δ": r"$\Delta$", "✓": r"\checkmark{}",
    "ⁿ": r"\textsuperscript{n}", "✗": r"$\times$", "·": r"$\cdot$", "≈": r"$\approx$", "−": r"$-$",
    "√": r"$\surd$", "ᶜ": r"\textsuperscript{c}", "…": r"\ldots{}",
}


def tex_escape(text: object) -> str:
    """Escape LaTeX specials (``_ % & $ # { } ~ ^ \\``) and map common symbols (±, ×, –) to macros.

    The word ``L_lift`` becomes the loss symbol of the IFDD paper.
    """
    parts = str(text).split("L_lift")
    out = []
    for k, part in enumerate(parts):
        if k:
            out.append(LIFT_TEX)
        out.extend(_TEX_SPECIALS.get(ch) or _TEX_UNICODE.get(ch) or ch for ch in part)
    return "".join(out)


def to_latex(table: ReportTable) -> str:
    """Booktabs LaTeX of a table, with caption, label and a footnote block."""
    env = "table*" if table.wide else "table"
    n = len(table.columns)
    lines = [
        f"% Generated by `ifdd-bench report`{' from ' + table.source if table.source else ''}; do not edit by hand.",
        r"% Needs \usepackage{booktabs} and \usepackage{amssymb} (for \checkmark)"
        + (r", \usepackage{graphicx} (\resizebox)." if table.resize else "."),
        rf"\begin{{{env}}}[t]",
        r"  \centering",
        r"  \small",
        *([rf"  \setlength{{\tabcolsep}}{{{table.colsep}}}"] if table.colsep else []),
        rf"  \caption{{{tex_escape(table.caption)}}}",
        rf"  \label{{tab:{re.sub(r'[^A-Za-z0-9:-]', '-', table.key)}}}",
        (r"  \resizebox{\textwidth}{!}{%" + "\n") * table.resize + rf"  \begin{{tabular}}{{{table.align}}}",
        r"    \toprule",
    ]
    if table.groups and any(label for label, _ in table.groups):
        cells, rules, col = [], [], 1
        for label, span in table.groups:
            if label:
                cells.append(rf"\multicolumn{{{span}}}{{c}}{{{tex_escape(label)}}}")
                rules.append(rf"\cmidrule(lr){{{col}-{col + span - 1}}}")
            else:
                cells.extend([""] * span)
            col += span
        lines.append("    " + " & ".join(cells) + r" \\")
        lines.append("    " + " ".join(rules))
    lines.append("    " + " & ".join(table.columns_tex) + r" \\")
    for b, block in enumerate(table.blocks):
        lines.append(r"    \midrule")
        if block.title and b > 0:
            lines.append(rf"    \multicolumn{{{n}}}{{l}}{{\textit{{{tex_escape(block.title)}}}}} \\")
        for row in block.rows:
            lines.append("    " + " & ".join(cell.latex() for cell in row) + r" \\")
    lines += [r"    \bottomrule", r"  \end{tabular}" + ("}" if table.resize else "")]
    if table.notes:
        lines += [r"  \par\smallskip", r"  \begin{minipage}{\linewidth}\footnotesize\raggedright"]
        lines += [f"  {tex_escape(note)}\\par" for note in table.notes]
        lines.append(r"  \end{minipage}")
    lines.append(rf"\end{{{env}}}")
    return "\n".join(lines) + "\n"


def to_markdown(table: ReportTable, *, heading: str = "**Table: {caption}**") -> str:
    """GitHub-flavoured Markdown of a table; block titles become italic rows, notes a list."""
    align = {"l": ":--", "c": ":-:", "r": "--:"}
    header = table.plain_header()
    lines = []
    if heading:
        lines += [heading.format(caption=table.caption), ""]
    lines.append("| " + " | ".join(h.replace("|", r"\|") for h in header) + " |")
    lines.append("|" + "|".join(align.get(a[0], ":--") for a in table.col_specs()) + "|")
    for b, block in enumerate(table.blocks):
        if block.title and b > 0:
            lines.append(f"| *{block.title}* |" + " |" * (len(header) - 1))
        for row in block.rows:
            lines.append("| " + " | ".join(cell.markdown() for cell in row) + " |")
    if table.notes:
        lines.append("")
        lines += [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"
