"""Notebook submissions: a Jupyter notebook (NAME.ipynb) is graded as the Python module its code
cells make, exactly like NAME.py.

`program(path, data)` turns the bytes of a submitted file into a `Program`: the code the child
imports, the map from the code's lines back to the notebook's cells, and notes for the report.
A .py file is its own code. A notebook is read with nbformat (and validated against its JSON
schema): its code cells are joined in order, each followed by a blank line; markdown and raw
cells are left out. Lines that only IPython understands (a `%%cell magic` cell, `%line magics`,
`!shell commands`, `x = !cmd`, `get_ipython()` calls) are left out too: each becomes `pass`
(so a block stays a block and every other line keeps its place), a cell magic's cell becomes
nothing, and the report gets one note naming the cells that had them. A notebook that cannot
be read (broken JSON, not a notebook, invalid against the schema) is the student's failure,
with the reason.

Cells are counted from 1 at the top of the notebook, text cells included: "cell 3, line 2" is
the second line of the third cell. The child (grader/child.py, `location`) names lines that way in error
messages and tracebacks, from `Program.cells`.

When graded, the notebook is imported as a module named after the assignment (`__name__` is
e.g. "vae", never "__main__"): what a cell guards with `if __name__ == "__main__":` runs in
Jupyter and Colab but not when graded, as for a .py file. Nothing of Jupyter's server or kernels
is used: nbformat only reads the JSON.
"""

import io
import json
import re
import tokenize
import warnings
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".ipynb"
MAX_NOTEBOOK_BYTES = 64 << 20  # the whole file, outputs included (the size limit of the code is the spec's)
MAX_CODE_CELLS = 2000  # the line map travels on the child's command line
IPYTHON_LINE = re.compile(r"\s*(?:[%!]|[\w.]+(?:\s*,\s*[\w.]+)*\s*=\s*[%!][\w!])|.*\bget_ipython\s*\(")


class NotebookError(Exception):
    """The submitted notebook cannot be read: the student's failure."""


@dataclass(frozen=True)
class Program:
    """What the child imports (`code`, UTF-8) and how to name its lines: `cells` lists
    [first line in the code, cell number, lines] per code cell (empty for a .py file)."""

    code: bytes
    cells: tuple = ()
    notes: tuple = ()


def is_notebook(path):
    return Path(path).suffix == SUFFIX


def program(path, data, max_code_bytes=None):
    """The Program of a submitted file's bytes; NotebookError for a notebook that cannot be read."""
    return to_program(data, max_code_bytes) if is_notebook(path) else Program(bytes(data))


def to_program(data, max_code_bytes=None):
    """A notebook's bytes -> Program (see the module's docstring). Code cells of more than
    `max_code_bytes` in all are joined as they are (the caller refuses them as too large)."""
    import nbformat  # only where notebooks are graded

    if len(data) > MAX_NOTEBOOK_BYTES:
        raise NotebookError(
            f"the notebook file has {len(data):,} bytes, more than {MAX_NOTEBOOK_BYTES >> 20} MiB "
            "(its outputs included): clear the outputs and submit it again"
        )
    try:
        raw = json.loads(bytes(data).decode("utf-8"))
    except UnicodeDecodeError:
        raise NotebookError("the notebook is not UTF-8 text: is it a notebook (.ipynb) file?") from None
    except ValueError as error:
        raise NotebookError(
            f"the notebook's JSON is broken ({error}): open it in Jupyter and save it again, or download it again"
        ) from None
    except RecursionError:
        raise NotebookError("the notebook's JSON is nested too deeply") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("nbformat"), int):
        raise NotebookError("the file is JSON but not a notebook (no nbformat version)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            notebook = nbformat.reads(json.dumps(raw), as_version=4)
            nbformat.validate(notebook)
    except nbformat.ValidationError as error:
        raise NotebookError(
            f"the notebook is not valid (nbformat {raw['nbformat']}): {str(error).splitlines()[0][:200]}"
        ) from None
    except RecursionError:
        raise NotebookError("the notebook's JSON is nested too deeply") from None
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise NotebookError(f"the notebook cannot be read: {str(error)[:200]}") from None
    code_cells = sum(cell.cell_type == "code" for cell in notebook.cells)
    if code_cells > MAX_CODE_CELLS:
        raise NotebookError(f"the notebook has {code_cells:,} code cells, more than {MAX_CODE_CELLS:,}: merge some")
    lines, cells, magic = [], [], []
    raw = (
        max_code_bytes is not None
        and sum(len(c.source) for c in notebook.cells if c.cell_type == "code") > max_code_bytes
    )
    for number, cell in enumerate(notebook.cells, 1):
        if cell.cell_type != "code":
            continue
        source = cell.source.splitlines()
        if raw:
            cells.append((len(lines) + 1, number, max(len(source), 1)))
            lines += source + [""]
            continue
        if source and next((s for s in source if s.strip()), "").lstrip().startswith("%%"):
            magic.append((number, next(s for s in source if s.strip()).strip()))
            continue  # a cell magic: the cell is not Python
        kept, starts = [], statement_starts(cell.source)
        for lineno, line in enumerate(source, 1):
            if lineno in starts and IPYTHON_LINE.match(line):
                magic.append((number, line.strip()))
                line = left_out(line)
            kept.append(line)
        cells.append((len(lines) + 1, number, max(len(kept), 1)))
        lines += kept + [""]
    notes = ()
    if magic:
        which = sorted({number for number, _ in magic})
        shown = "; ".join(f"cell {number}: {text[:40]}" for number, text in magic[:6]) + (
            "; ..." if len(magic) > 6 else ""
        )
        cells_text = f"cell{'s' if len(which) > 1 else ''} {', '.join(map(str, which))}"
        notes = (
            (
                "the notebook's IPython-only lines (%magics, !shell commands, get_ipython()) are not Python and "
                f"were left out when graded, in {cells_text} ({shown})"
            ),
        )
    return Program("\n".join(lines).encode("utf-8"), tuple(cells), notes)


def left_out(line):
    """What stands for a left-out line: `pass`, or a header that never runs its block (`if
    get_ipython() ...:` -> `if False:`), at the same indentation."""
    indent, text = line[: len(line) - len(line.lstrip())], line.strip()
    header = re.match(r"(if|elif|while)\b.*:$", text)
    return indent + (f"{header[1]} False:" if header else "pass")


def statement_starts(source):
    """The line numbers (from 1) of `source` where a statement starts: not inside brackets, a
    string or a continued line (a `%` there is Python's modulo, not a magic). All lines when
    the source cannot be tokenized."""
    starts, depth, expect = set(), 0, True
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
                continue
            if token.type == tokenize.NEWLINE:
                expect = True
                continue
            if expect and depth == 0:
                starts.add(token.start[0])
            expect = False
            if token.type == tokenize.OP and token.string in "([{":
                depth += 1
            elif token.type == tokenize.OP and token.string in ")]}":
                depth = max(depth - 1, 0)
    except (tokenize.TokenError, SyntaxError):
        return range(1, source.count("\n") + 2)
    return starts
