#!/usr/bin/env python3
"""Generates the student templates in assignments/ from the reference solutions in solutions/.

In a solution, each region the student writes is enclosed by the lines `### BEGIN SOLUTION`
and `### END SOLUTION`; in the template the region becomes
`raise NotImplementedError("TODO: <Class.function>")`. Everything else is copied, so the
templates and the solutions cannot drift: `--check` (run by the tests) fails when a
committed template differs from what this script generates.

The module docstring of each solution has a paragraph starting with the line
`How it is graded (written from the grader's spec, grader/assignments/NAME.py):`
and ending at the next blank line; this script rewrites it from the assignment's spec
(`Assignment.grading_text()`), so the thresholds a student reads are the ones in force.

    python tools/make_templates.py            # rewrite assignments/*.py
    python tools/make_templates.py vae        # only these assignments
    python tools/make_templates.py --check    # exit 1 and name the stale templates
"""

import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
GRADED = "How it is graded (written from the grader's spec, grader/assignments/{name}.py):"


def with_grading(source, name, text):
    """The solution's source with its "How it is graded" paragraph rewritten to `text`."""
    heading = GRADED.format(name=name)
    lines = source.split("\n")
    if heading not in lines:
        raise ValueError(f"solutions/{name}.py: its docstring needs a paragraph starting with the line {heading!r}")
    start = lines.index(heading) + 1
    end = start
    while end < len(lines) and lines[end].strip() and '"""' not in lines[end]:
        end += 1
    body = textwrap.wrap(text, width=92, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False)
    return "\n".join(lines[:start] + body + lines[end:])


def grading_texts():
    """{assignment name: its grading text}, from the specs."""
    sys.path.insert(0, str(ROOT))
    from grader.assignments import all_assignments

    return {name: a.grading_text() for name, a in all_assignments().items()}


def enclosing_name(lines, index, indent):
    """Qualified name of the function around line `index` (e.g. Agent.update)."""
    names = []
    for line in reversed(lines[:index]):
        match = re.match(r"(\s*)(?:async\s+)?(def|class)\s+(\w+)", line)
        if match and len(match.group(1)) < indent:
            names.insert(0, match.group(3))
            indent = len(match.group(1))
    return ".".join(names) or "module"


def make_template(source, filename="solution"):
    lines, out, inside = source.splitlines(keepends=True), [], None
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside is not None:
                raise ValueError(f"{filename}:{number + 1}: nested {BEGIN}")
            indent = len(line) - len(line.lstrip())
            inside = number
            out.append(" " * indent + f'raise NotImplementedError("TODO: {enclosing_name(lines, number, indent)}")\n')
        elif stripped == END:
            if inside is None:
                raise ValueError(f"{filename}:{number + 1}: {END} without {BEGIN}")
            inside = None
        elif inside is None:
            out.append(line)
    if inside is not None:
        raise ValueError(f"{filename}:{inside + 1}: {BEGIN} is never closed")
    return "".join(out)


def main(argv):
    check = "--check" in argv
    stale = []
    texts = grading_texts()
    only = [a for a in argv if not a.startswith("-")]
    for solution in sorted((ROOT / "solutions").glob("*.py")):
        if only and solution.stem not in only:
            continue
        template = ROOT / "assignments" / solution.name
        source = solution.read_text()
        if solution.stem in texts:
            graded = with_grading(source, solution.stem, texts[solution.stem])
            if graded != source:
                if check:
                    stale.append(solution.relative_to(ROOT))
                else:
                    solution.write_text(graded)
                source = graded
        text = make_template(source, solution.name)
        if check:
            if not template.exists() or template.read_text() != text:
                stale.append(template.relative_to(ROOT))
        else:
            template.write_text(text)
            template.chmod(solution.stat().st_mode)
    if stale:
        print("stale templates or grading paragraphs (run python tools/make_templates.py):", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
