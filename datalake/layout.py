"""Reading order of a page from the boxes of its text: one module for OCR lines and PDF text.

A page's text is a set of fragments with boxes (OCR lines, PDF words). ``layout`` turns them
into blocks in reading order:

1. **baselines** -- fragments whose vertical extents overlap by half the smaller height and
   whose horizontal gap is under ``word_gap`` line heights are one line (words of one baseline
   stay together), and so are fragments of one line of a PDF's text stream (``Fragment.run``)
   whatever the gap (justified text); with ``gutters`` (OCR lines) a line is cut again where it crosses a column
   gutter -- a gap that no text crosses in the lines right above or right below, with column
   edges on both sides (a real scan's gutter can be narrower than a line height);
2. **blocks** -- a line joins the block whose last line is directly above it (gap under
   ``line_gap`` line heights and under the block's own median leading + 0.35 line heights,
   horizontal overlap of half the narrower line); a line under two blocks at once (a full-width
   line below columns) starts a block of its own, and so does a heading set off by space (it
   then leads the block under it: a section heading under the left column is read after the
   right column);
3. **labels** -- a one-line block standing alone beside a line of a block to its right (a term
   and its definition, an option and its description) joins that line;
4. **order** -- the partial order of Breuel ("High performance document layout analysis",
   2003): block *a* comes before *b* if they overlap horizontally and *a* is above *b*, or if
   *a* lies left of *b* and no block between them vertically overlaps both horizontally (a
   full-width title or figure caption separates the column parts above it from those below),
   and a block at least half the text width comes before everything entirely below it (a
   centred title above a sidebar), as does a block with nothing beside it and no block of its
   column right under it (a running header, a page number, a note between two tables);
   a topological sort with top-left-first tie breaking turns it into a sequence. Columns are
   read one after the other, a spanning title before them.

``clean_text`` removes control characters and joins words split by a soft hyphen (PDFium marks
a hyphen it considers soft with U+0002, which its text API hands out as U+FFFE; U+00AD is the
Unicode soft hyphen).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Fragment", "Line", "Block", "layout", "ordered_text", "clean_text", "line_text", "join_lines", "SOFT_HYPHENS"]

SOFT_HYPHENS = "\x02\xad\ufffe"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


@dataclass
class Fragment:
    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    ref: Any = None
    #: the line of the source's text stream this fragment comes from (a PDF's text runs), or
    #: None (OCR): fragments of one run on one baseline are one line whatever the space
    #: between them (justified text, a table row the PDF writes as one line)
    run: int | None = None

    @property
    def h(self) -> float:
        return max(self.y1 - self.y0, 1e-6)


@dataclass
class Line:
    frags: list[Fragment]
    x0: float = 0.0
    y0: float = 0.0
    x1: float = 0.0
    y1: float = 0.0

    def __post_init__(self) -> None:
        self._bounds()

    def _bounds(self) -> None:
        self.x0 = min(f.x0 for f in self.frags)
        self.y0 = min(f.y0 for f in self.frags)
        self.x1 = max(f.x1 for f in self.frags)
        self.y1 = max(f.y1 for f in self.frags)

    @property
    def h(self) -> float:
        return max(self.y1 - self.y0, 1e-6)

    @property
    def text(self) -> str:
        out = ""
        prev: Fragment | None = None
        for f in sorted(self.frags, key=lambda f: f.x0):
            if prev is not None and out and not out[-1].isspace() and not f.text[:1].isspace():
                out += " "
            out += f.text
            prev = f
        return out


@dataclass
class Block:
    lines: list[Line] = field(default_factory=list)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (min(ln.x0 for ln in self.lines), min(ln.y0 for ln in self.lines),
                max(ln.x1 for ln in self.lines), max(ln.y1 for ln in self.lines))

    @property
    def text(self) -> str:
        return join_lines([ln.text for ln in self.lines])


def clean_text(text: str) -> str:
    """Soft hyphens at the end of a line join the word (``ex\\x02\\npands`` -> ``expands``);
    other soft hyphens and control characters (but newline and tab) are removed."""
    text = re.sub(f"[{SOFT_HYPHENS}][ \t]*\r?\n[ \t]*", "", text)
    for ch in SOFT_HYPHENS:
        text = text.replace(ch, "")
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def line_text(text: str) -> str:
    """One line as it looks: a soft hyphen that ends it is shown as ``-`` (what the glyphs say,
    the OCR ground truth of the line); control characters removed."""
    text = text.rstrip()
    if text[-1:] in SOFT_HYPHENS:
        text = text[:-1] + "-"
    return clean_text(text)


def join_lines(lines: list[str]) -> str:
    return clean_text("\n".join(ln.rstrip() for ln in lines))


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return min(a1, b1) - max(a0, b0)


def baselines(frags: list[Fragment], word_gap: float = 1.0) -> list[Line]:
    """Fragments on one baseline, close enough horizontally, as lines."""
    lines: list[Line] = []
    for f in sorted(frags, key=lambda f: (f.x0, f.y0)):
        best, best_gap = None, None
        for ln in lines:
            if _overlap(ln.y0, ln.y1, f.y0, f.y1) < 0.5 * min(ln.h, f.h):
                continue
            gap = f.x0 - ln.x1
            same_run = f.run is not None and max(ln.frags, key=lambda g: g.x1).run == f.run
            if (gap > word_gap * max(min(ln.h, f.h), 1.0) and not same_run) or gap < -0.5 * f.h:
                continue
            if best_gap is None or gap < best_gap:
                best, best_gap = ln, gap
        if best is None:
            lines.append(Line([f]))
        else:
            best.frags.append(f)
            best._bounds()
    return lines


def split_at_gutters(lines: list[Line], min_gap: float = 0.7, reach: int = 6, min_run: float = 6.0) -> list[Line]:
    """Cut lines where they cross a column gutter. Two columns set close together (a real scan:
    a 38 px gutter under 44 px lines) are closer than ``word_gap``, so their lines merge on a
    shared baseline; a gutter is told from a wide space by its height: of the ``reach`` lines
    right above and right below (the two columns' lines interleave when their baselines do not
    align), those up to the first one that runs through the gap's middle include two that end
    just left of it and two that start just right of it (the columns' edges). A column's first
    line has a full-width paragraph above it, its last one a full-width list below: the other
    side carries the evidence. A wide space in prose has text running through it on both sides."""
    if len(lines) < 3:
        return lines
    order = sorted(lines, key=lambda ln: (ln.y0 + ln.y1) / 2)
    rank = {id(ln): i for i, ln in enumerate(order)}
    out: list[Line] = []
    for ln in lines:
        fr = sorted(ln.frags, key=lambda f: f.x0)
        if len(fr) < 2:
            out.append(ln)
            continue
        i = rank[id(ln)]
        above = [m for m in reversed(order[max(0, i - 4 * reach):i]) if m.y1 <= ln.y0 + 0.5 * ln.h][:reach]
        below = [m for m in order[i + 1:i + 1 + 4 * reach] if m.y0 >= ln.y1 - 0.5 * ln.h][:reach]
        # runs of text between wide gaps; a gutter separates two runs of running text, each at
        # least ``min_run`` line heights wide (table cells, terms and tags stay one row, as
        # pdftotext reads them)
        wide = [k for k, (a, b) in enumerate(zip(fr, fr[1:], strict=False)) if b.x0 - a.x1 >= min_gap * ln.h]
        if not wide:
            out.append(ln)
            continue
        starts, ends = [0] + [k + 1 for k in wide], [k for k in wide] + [len(fr) - 1]
        run_w = [max(f.x1 for f in fr[s0:e0 + 1]) - fr[s0].x0 for s0, e0 in zip(starts, ends, strict=False)]
        cut_at: list[int] = []
        for r, k in enumerate(wide):
            if run_w[r] < min_run * ln.h or run_w[r + 1] < min_run * ln.h:
                continue
            a, b = fr[k], fr[k + 1]
            g0, g1 = a.x1, b.x0
            mid, edge = (g0 + g1) / 2, 2 * ln.h
            left = right = 0
            for side in (above, below):  # nearest first, up to the first line that runs through the gap
                for m in side:
                    if any(f.x0 < mid < f.x1 for f in m.frags):
                        break
                    left += any(g0 - edge <= f.x1 <= mid for f in m.frags)
                    right += any(mid <= f.x0 <= g1 + edge for f in m.frags)
            if left >= 2 and right >= 2:
                cut_at.append(k + 1)
        if not cut_at:
            out.append(ln)
            continue
        for a0, b0 in zip([0, *cut_at], [*cut_at, len(fr)], strict=False):
            out.append(Line(fr[a0:b0]))
    return out


def blocks_of(lines: list[Line], line_gap: float = 1.2) -> list[Block]:
    blocks: list[Block] = []
    seen: list[Line] = []
    for ln in sorted(lines, key=lambda ln: (ln.y0, ln.x0)):
        cands = []
        for b in blocks:
            last = b.lines[-1]
            gap = ln.y0 - last.y1
            ov = _overlap(last.x0, last.x1, ln.x0, ln.x1)
            if len(b.lines) >= 2:  # the block's own leading: a gap well beyond it (a heading's space) ends it
                gaps = sorted(m.y0 - k.y1 for k, m in zip(b.lines, b.lines[1:], strict=False))
                leading_ok = gap <= max(gaps[len(gaps) // 2], 0.0) + 0.35 * max(ln.h, last.h)
            else:
                leading_ok = True
            if -0.5 * min(ln.h, last.h) <= gap <= line_gap * max(ln.h, last.h) and leading_ok and \
                    ov >= 0.5 * min(last.x1 - last.x0, ln.x1 - ln.x0):
                x0, x1 = min(last.x0, ln.x0), max(last.x1, ln.x1)
                tol = 0.25 * min(ln.h, last.h)
                # a line of another block between them (a term between two definitions) ends the block
                if not any(m is not last and m.y0 >= last.y1 - tol and m.y1 <= ln.y0 + tol
                           and _overlap(m.x0, m.x1, x0, x1) > 0 for m in seen):
                    cands.append(b)
        seen.append(ln)
        if len(cands) == 1:
            cands[0].lines.append(ln)
        else:  # nothing above it, or it spans two blocks (a full-width line under columns)
            blocks.append(Block([ln]))
    return blocks


def attach_labels(blocks: list[Block], max_gap: float = 8.0, clear_below: float = 2.5) -> list[Block]:
    """A one-line block that stands alone (nothing under it within ``clear_below`` line heights)
    beside a line of a block to its right (a term and its definition, an option and its
    description, a list number) joins that line: read ``$  Expands to ...``, not every term of
    the page before every definition. A column of bullets or numbers (every line under four
    line heights wide) joins line by line. A column heading has its paragraph right under it, so it
    never qualifies; two columns of running text have no one-line blocks to join."""
    out = list(blocks)

    def partner(la: Line, exclude: Block, right: bool = True, limit: float = max_gap) -> Line | None:
        """The nearest line of another block on ``la``'s baseline, to its right (or left)."""
        best, best_gap = None, None
        for b in out:
            if b is exclude:
                continue
            for lb in b.lines:
                gap = lb.x0 - la.x1 if right else la.x0 - lb.x1
                if gap <= 0 or gap > limit * la.h or _overlap(la.y0, la.y1, lb.y0, lb.y1) < 0.5 * min(la.h, lb.h):
                    continue
                if best_gap is None or gap < best_gap:
                    best, best_gap = lb, gap
        return best

    for a in sorted(blocks, key=lambda b: b.box[0]):
        if a not in out:
            continue
        narrow = all(ln.x1 - ln.x0 <= 4 * ln.h for ln in a.lines)  # bullets, numbers, short tags
        if len(a.lines) > 1 and not narrow:
            continue
        if not narrow:
            la = a.lines[0]
            if any(c is not a and 0 <= c.box[1] - la.y1 <= clear_below * la.h
                   and _overlap(c.box[0], c.box[2], la.x0, la.x1) > 0 for c in out):
                continue
        found = [(la, partner(la, a)) for la in a.lines]
        if not all(p is not None for _, p in found) and all(ln.x1 - ln.x0 <= 8 * ln.h for ln in a.lines):
            # short tags at the right end of their rows ([Function], a page number): the row's end
            found = [(la, partner(la, a, right=False, limit=40.0)) for la in a.lines]
        if all(p is not None for _, p in found):
            for la, lb in found:
                assert lb is not None
                lb.frags.extend(la.frags)
                lb._bounds()
            out.remove(a)
    return out


def _runs(ln: Line, gap: float = 1.0) -> list[tuple[float, int]]:
    """(width, words) of each stretch of a line without a gap of ``gap`` line heights: a row of
    cells already joined (``2 CARD16``) is two narrow one-word stretches; a line of prose is one."""
    out: list[tuple[float, int]] = []
    fr = sorted(ln.frags, key=lambda f: f.x0)
    x0, x1, words = fr[0].x0, fr[0].x1, len(fr[0].text.split())
    for f in fr[1:]:
        if f.x0 - x1 >= gap * ln.h:
            out.append((x1 - x0, words))
            x0, words = f.x0, 0
        x1 = max(x1, f.x1)
        words += len(f.text.split())
    out.append((x1 - x0, words))
    return out


def merge_tables(blocks: list[Block], narrow: float = 8.0, max_gap: float = 15.0, share: float = 0.6) -> list[Block]:
    """Columns of a table read row by row. A block of short cells (median widest cell of a line
    under ``narrow`` line heights, one word: sizes, types, numbers, tags) whose lines mostly (``share``, at least two) sit on
    the baselines of lines in blocks to its right is one table with them: their lines on one
    baseline become one row, the rows read top to bottom (as pdftotext reads them), where
    column by column would list every size, then every type, then every name. Running text is
    never narrow, so prose columns that share baselines stay columns."""
    out = list(blocks)
    changed = True
    while changed:
        changed = False
        for a in sorted(out, key=lambda b: -b.box[0]):  # rightmost first: a 3-column table merges right to left
            if len(a.lines) < 2:
                continue
            runs = [_runs(ln) for ln in a.lines]
            widths = sorted(max(w for w, _ in r) for r in runs)
            h = sorted(ln.h for ln in a.lines)[len(a.lines) // 2]
            words = sorted(max(n for _, n in r) for r in runs)
            if widths[len(widths) // 2] > narrow * h or words[len(words) // 2] > 1:
                continue  # running text (a sidebar's wrapped lines beside a column), not cells
            pairs: list[tuple[Line, Line, Block]] = []
            for la in a.lines:
                best = None
                for b in out:
                    if b is a:
                        continue
                    for lb in b.lines:
                        gap = lb.x0 - la.x1
                        if 0 < gap <= max_gap * la.h and _overlap(la.y0, la.y1, lb.y0, lb.y1) >= 0.5 * min(la.h, lb.h) \
                                and (best is None or gap < best[0]):
                            best = (gap, lb, b)
                if best is not None:
                    pairs.append((la, best[1], best[2]))
            if len(pairs) < 2 or len(pairs) < share * len(a.lines):
                continue
            partners = {id(b): b for _, _, b in pairs}
            joined = {id(la) for la, _, _ in pairs}
            for la, lb, _ in pairs:
                lb.frags.extend(la.frags)
                lb._bounds()
            lines = [ln for b in partners.values() for ln in b.lines] + [la for la in a.lines if id(la) not in joined]
            table = Block(sorted(lines, key=lambda ln: (ln.y0, ln.x0)))
            out = [b for b in out if b is not a and id(b) not in partners] + [table]
            changed = True
            break
    return out


def order_blocks(blocks: list[Block]) -> list[Block]:
    """Breuel's partial order, sorted topologically (top-left first among the ready blocks)."""
    n = len(blocks)
    if n <= 1:
        return list(blocks)
    bx = [b.box for b in blocks]
    tol = [0.5 * min(ln.h for ln in b.lines) for b in blocks]
    ymid = [(y0 + y1) / 2 for _, y0, _, y1 in bx]

    def xover(i: int, j: int) -> bool:
        return _overlap(bx[i][0], bx[i][2], bx[j][0], bx[j][2]) > max(tol[i], tol[j])

    page_w = max(b[2] for b in bx) - min(b[0] for b in bx)

    def above(i: int, j: int) -> bool:  # i entirely above j
        return bx[i][3] <= bx[j][1] + max(tol[i], tol[j])

    def alone(i: int) -> bool:
        """Nothing beside it and no column going on under it: a running header, a page number
        or a note set in the space between two blocks of the other side is read where it
        stands, not after the whole column beside it."""
        lh = tol[i] / 0.5  # the block's smallest line height
        for j in range(n):
            if j != i and not (above(i, j) or above(j, i)):
                return False
            if j != i and xover(i, j) and 0 <= bx[j][1] - bx[i][3] <= 2 * lh:
                return False
        return True

    wide = [(b[2] - b[0]) >= 0.5 * page_w or alone(i) for i, b in enumerate(bx)]

    after: list[set[int]] = [set() for _ in range(n)]
    indeg = [0] * n
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            before = False
            if wide[j] and above(j, i):  # a title or caption above: it comes first
                continue
            if wide[i] and above(i, j):
                before = True
            elif xover(i, j):
                before = ymid[i] < ymid[j]
            elif bx[i][2] <= bx[j][0] + max(tol[i], tol[j]):  # i left of j
                lo, hi = min(ymid[i], ymid[j]), max(ymid[i], ymid[j])
                before = not any(lo < ymid[c] < hi and xover(c, i) and xover(c, j)
                                 for c in range(n) if c != i and c != j)
            if before and j not in after[i]:
                after[i].add(j)
                indeg[j] += 1
    order: list[int] = []
    done = [False] * n
    key = [(bx[i][1], bx[i][0]) for i in range(n)]
    for _ in range(n):
        ready = [i for i in range(n) if not done[i] and indeg[i] == 0]
        if not ready:  # a cycle (overlapping boxes): break it at the top-left block
            ready = [i for i in range(n) if not done[i]]
        i = min(ready, key=lambda k: key[k])
        done[i] = True
        order.append(i)
        for j in after[i]:
            indeg[j] -= 1
    return [blocks[i] for i in order]


def layout(frags: list[Fragment], *, word_gap: float = 1.0, line_gap: float = 1.2, gutters: bool = False) -> list[Block]:
    """Blocks in reading order, each with its lines top to bottom and words left to right.

    ``gutters``: cut lines at column gutters narrower than ``word_gap`` (``split_at_gutters``).
    OCR lines ask for it (scans set columns close); a PDF's words do not: their spaces are real,
    and aligned monospace code would be cut into columns."""
    frags = [f for f in frags if f.text.strip()]
    if not frags:
        return []
    lines = baselines(frags, word_gap)
    if gutters:
        lines = split_at_gutters(lines)
    return order_blocks(merge_tables(attach_labels(blocks_of(lines, line_gap))))


def ordered_text(blocks: list[Block]) -> str:
    return "\n".join(b.text for b in blocks)
