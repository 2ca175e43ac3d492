#!/usr/bin/env python3
"""Builds the student handout: an archive (.zip or .tar.gz) of course-handout/ with

    assignments/*.py       the templates (generated from the solutions: tools/make_templates.py)
    assignments/*.ipynb    the same templates as Jupyter notebooks (jupytext; `notebook()` below)
    grader/                the grader, exactly as the course uses it
    datasets/              the datasets package (code, checksums, its README)
    scripts/setup_data.sh  the offline MNIST set-up
    requirements.txt       the pinned stack of pyproject.toml (less pytest)
    README.md              for students: tools/handout-README.md

and nothing else: never solutions/, bench/, tests/, tools/, nor grader/hidden/ (the code and
thresholds of hidden checks: the handout's grader lists them as graded at submission). Before
writing, it refuses (exit status 1) when a template is stale, when a file of the handout
contains solution code (any run of three consecutive lines, a whole region if shorter, of a
`### BEGIN SOLUTION` region of solutions/*.py, comments and blank lines aside), or when a file
refers to a folder the handout does not ship (bench/, tests/, tools/, solutions/), except on a
line that says it is in the course's repository. The archive is reproducible (sorted entries,
fixed dates).

    python tools/make_handout.py                      # dist/handout.zip
    python tools/make_handout.py -o handout.tar.gz
"""

import argparse
import ast
import io
import json
import re
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "course-handout"
sys.path.insert(0, str(ROOT / "tools"))
from make_templates import BEGIN, END, make_template  # noqa: E402


def handout_files():
    """{path in the archive: bytes}, and the mode of each file ({path: mode})."""
    sources = sorted((ROOT / "assignments").glob("*.py"))
    sources += sorted(
        p
        for p in (ROOT / "grader").rglob("*.py")
        if "__pycache__" not in p.parts and not (p.parent.name == "hidden" and p.name != "__init__.py")
    )
    sources += sorted(p for p in (ROOT / "datasets").iterdir() if p.suffix in (".py", ".json", ".md"))
    sources.append(ROOT / "scripts" / "setup_data.sh")
    files = {p.relative_to(ROOT).as_posix(): p.read_bytes() for p in sources}
    modes = {p.relative_to(ROOT).as_posix(): p.stat().st_mode & 0o777 for p in sources}
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    files["requirements.txt"] = "".join(f"{d}\n" for d in dependencies if not d.startswith("pytest")).encode()
    files["README.md"] = student_readme().encode()
    for path in sorted((ROOT / "assignments").glob("*.py")):
        files[f"assignments/{path.stem}.ipynb"] = notebook(path.read_text(), path.stem)
    return files, modes


# ------------------------------------------------------------------ notebooks
FENCE = "# Grader interface: what the grader calls. You need not read or change anything below."
TOP_LEVEL = re.compile(r"(def |class |async def |@|if __name__ == .__main__.:)")
# In Jupyter, sys.argv holds the kernel's options and __file__ is not defined: the notebook's
# copy of the template calls main([]) and locates itself by its name.
NOTEBOOK_EDITS = (
    (
        'if __name__ == "__main__":\n    main()',
        'if __name__ == "__main__":\n    main([])  # the options as on the command line, e.g. main(["--help"])',
    ),
    ("os.path.abspath(__file__)", 'os.path.abspath(globals().get("__file__", "{name}.ipynb"))'),
    ("Path(__file__)", 'Path(globals().get("__file__", "{name}.ipynb"))'),
)
HOW_TO = """## Working in this notebook

Write the parts that raise `NotImplementedError("TODO: ...")`; each is in its own cell below. Save
the notebook as `{name}.ipynb` and check it with the grader, from the handout's folder:

    .venv/bin/python -m grader assignments/{name}.ipynb

The grader runs the notebook's code cells in order, as one Python module, in its own sandboxed
process: nothing of your kernel's state counts, only what the cells define. Lines that only
Jupyter understands (`%matplotlib inline`, `!pip install ...`) are left out, with a note in the
report; errors name the cell (counted from the top, text cells included) and its line.

Your own experiments run only under `if __name__ == "__main__":` (the last cell): in Jupyter or
Colab `__name__` is `"__main__"`, so running that cell runs them; the grader imports the notebook
as the module `{name}` (`__name__` is `"{name}"`), so they do not run when graded. Keep long
trainings there, never at the top level of a cell. In Colab there is no sandbox and no grader:
what you measure there is a preview; the grade is what `python -m grader` says."""


INTERFACE = (
    "## Grader interface\n\nWhat the grader calls: you need not read or change this cell, but run it (it "
    'also holds the `if __name__ == "__main__":` part that runs your experiments in Jupyter).'
)
RUN = "## Run your experiments\n\nRunning this cell runs them in Jupyter; the grader does not run it."


def markdown(text):
    """A docstring's paragraph as Markdown: its indented lines as a code block, `*` escaped
    outside code spans (lecture notation such as v*(s) is not emphasis)."""
    out, block = [], []
    for line in text.split("\n") + [""]:
        if line.startswith("    ") and line.strip():
            block.append(line[4:])
            continue
        if block:
            out += ["```", *block, "```"]
            block = []
        if line:
            out.append(re.sub(r"(`[^`]*`)|\*", lambda m: m[1] or r"\*", line))
    return "\n".join(out)


def docstring_cells(doc, name):
    """The module docstring as Markdown cells: the title and the text, then how it is graded."""
    paragraphs = [p for p in doc.strip("\n").split("\n\n") if p.strip()]
    title, *intro = paragraphs[0].split("\n")
    cells, text = [], [f"# {title}"] + ([markdown("\n".join(intro))] if intro else [])
    for paragraph in paragraphs[1:]:
        if paragraph.startswith("How it is graded"):
            heading, _, body = paragraph.partition("\n")
            cells.append("\n\n".join(text))
            text = [f"## {heading.rstrip(':')}", " ".join(line.strip() for line in body.split("\n"))]
        else:
            text.append(markdown(paragraph))
    cells.append("\n\n".join(text))
    return cells + [HOW_TO.format(name=name)]


def code_cells(code):
    """Top-level chunks of code: the imports, then each function or class (with the comments
    above it) in its own cell; from the grader interface's fence on, one cell."""
    chunks, lines, fenced = [[]], code.split("\n"), False
    for index, line in enumerate(lines):
        fence = line.startswith("# ===") and index + 1 < len(lines) and lines[index + 1] == FENCE
        if fence or (not fenced and TOP_LEVEL.match(line) and not (chunks[-1] and chunks[-1][-1].startswith("@"))):
            comments = []
            while chunks[-1] and chunks[-1][-1].startswith("#") and not fence:
                comments.insert(0, chunks[-1].pop())
            chunks.append(comments)
        fenced = fenced or fence
        chunks[-1].append(line)
    return ["\n".join(chunk).strip("\n") for chunk in chunks if "\n".join(chunk).strip()]


def notebook(template, name):
    """The template as a notebook (bytes): Markdown cells from its docstring, a code cell per
    import block, function and class, and the grader interface in a last cell marked as such.
    Made with jupytext from the py:percent form; cell ids are fixed, so the handout is reproducible."""
    import jupytext
    import nbformat

    for old, new in NOTEBOOK_EDITS:
        template = template.replace(old, new.format(name=name))
    module = ast.parse(template)
    doc_end = module.body[0].end_lineno if ast.get_docstring(module) else 0
    lines = template.split("\n")
    doc = ast.get_docstring(module, clean=False) or ""
    cells = [("markdown", text) for text in docstring_cells(doc, name)]
    title = doc.strip().split("\n")[0]
    code = f'__doc__ = """{title}\n"""  # the text cells above are the module\'s docstring; parse_args reads it\n'
    for chunk in code_cells(code + "\n".join(lines[doc_end:])):
        if chunk.startswith("# ===") and FENCE in chunk:
            cells.append(("markdown", INTERFACE))
        cells.append(("code", chunk))
    if not any(kind == "code" and "Grader interface" in text for kind, text in cells):
        guard = cells.pop()  # no interface: the last cell is the `if __name__ == "__main__":` part
        cells += [("markdown", RUN), guard]
    text = (
        "\n\n".join(
            "# %% [markdown]\n" + "\n".join(f"# {line}".rstrip() for line in body.split("\n"))
            if kind == "markdown"
            else f"# %%\n{body}"
            for kind, body in cells
        )
        + "\n"
    )
    nb = jupytext.reads(text, fmt="py:percent")
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for index, cell in enumerate(nb.cells):
        cell.id = f"{name}-{index}"
    nbformat.validate(nb)
    return nbformat.writes(nb).encode()


def text_of(path, data):
    """What a file says: a notebook's cells, anything else its text."""
    if path.endswith(".ipynb"):
        return "\n".join("".join(cell["source"]) for cell in json.loads(data)["cells"])
    return data.decode(errors="replace")


def student_readme():
    """tools/handout-README.md with the assignments of the registry filled in."""
    sys.path.insert(0, str(ROOT))
    from grader.assignments import all_assignments, table

    assignments = all_assignments()
    text = (ROOT / "tools" / "handout-README.md").read_text()
    return text.replace("{assignments}", table()).replace("{names}", ", ".join(f"`{name}.py`" for name in assignments))


def solution_runs():
    """(solution file, run of lines) for every run of 3 consecutive significant lines of a
    solution region (the whole region if it is shorter)."""
    runs = []
    for solution in sorted((ROOT / "solutions").glob("*.py")):
        region = None
        for line in solution.read_text().splitlines():
            stripped = line.strip()
            if stripped == BEGIN:
                region = []
            elif stripped == END:
                width = min(3, len(region))
                runs += [(solution.name, tuple(region[i : i + width])) for i in range(len(region) - width + 1)]
                region = None
            elif region is not None and stripped and not stripped.startswith("#"):
                region.append(stripped)
    return runs


def leaks(files):
    """[(path, solution, run)] of solution code found in the files."""
    found = []
    for path, data in files.items():
        lines = [line.strip() for line in text_of(path, data).splitlines()]
        lines = [line for line in lines if line and not line.startswith("#")]
        windows = {tuple(lines[i : i + w]) for w in (1, 2, 3) for i in range(len(lines) - w + 1)}
        found += [(path, solution, run) for solution, run in solution_runs() if run in windows]
    return found


UNSHIPPED = re.compile(r"(?<![\w./-])(bench|tests|tools|solutions)/")


def dangling(files):
    """[(path, line number, line)] of references to folders the handout does not ship."""
    found = []
    for path, data in files.items():
        if path.endswith((".py", ".md", ".sh", ".txt", ".ipynb")):
            for number, line in enumerate(text_of(path, data).splitlines(), 1):
                if UNSHIPPED.search(line) and "course's repository" not in line:
                    found.append((path, number, line.strip()))
    return found


def problems(files):
    out = [
        f"{path} contains {len(run)} line(s) of solutions/{solution}: {run[0]!r}..."
        for path, solution, run in leaks(files)
    ]
    out += [
        f"{path}:{number} refers to a folder the handout does not ship: {line[:100]!r}"
        for path, number, line in dangling(files)
    ]
    for solution in sorted((ROOT / "solutions").glob("*.py")):
        template = files.get(f"assignments/{solution.name}")
        if template is None or template.decode() != make_template(solution.read_text(), solution.name):
            out.append(f"assignments/{solution.name} is missing or stale: run python tools/make_templates.py")
    return out


def write_archive(files, modes, output):
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.name.endswith(".zip"):
        with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(files):
                info = zipfile.ZipInfo(f"{PREFIX}/{path}", date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (0o100000 | modes.get(path, 0o644)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, files[path])
    elif output.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(output, "w:gz") as archive:
            for path in sorted(files):
                info = tarfile.TarInfo(f"{PREFIX}/{path}")
                info.size, info.mode, info.mtime = len(files[path]), modes.get(path, 0o644), 0
                archive.addfile(info, io.BytesIO(files[path]))
    else:
        raise ValueError(f"{output}: the archive must end in .zip or .tar.gz")
    return output


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "-o",
        "--output",
        default=str(ROOT / "dist" / "handout.zip"),
        help="the archive to write, .zip or .tar.gz (default: dist/handout.zip)",
    )
    args = p.parse_args(argv)
    if not args.output.endswith((".zip", ".tar.gz", ".tgz")):
        p.error("the archive must end in .zip or .tar.gz")
    files, modes = handout_files()
    found = problems(files)
    if found:
        print("not writing the handout:", *found, sep="\n  ", file=sys.stderr)
        return 1
    output = write_archive(files, modes, args.output)
    print(f"{output}: {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
