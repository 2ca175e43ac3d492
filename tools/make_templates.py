#!/usr/bin/env python3
"""Generates the student templates in assignments/ from the reference solutions in solutions/.

In a solution, each region the student writes is enclosed by the lines `### BEGIN SOLUTION`
and `### END SOLUTION`; in the template the region becomes
`raise NotImplementedError("TODO: <Class.function>")`. Everything else is copied, so the
templates and the solutions cannot drift: `--check` (run by the tests) fails when a
committed template differs from what this script generates.

    python tools/make_templates.py          # rewrite assignments/*.py
    python tools/make_templates.py --check  # exit 1 and name the stale templates
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


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
    for solution in sorted((ROOT / "solutions").glob("*.py")):
        template = ROOT / "assignments" / solution.name
        text = make_template(solution.read_text(), solution.name)
        if check:
            if not template.exists() or template.read_text() != text:
                stale.append(template.relative_to(ROOT))
        else:
            template.write_text(text)
            template.chmod(solution.stat().st_mode)
    if stale:
        print("stale templates (run python tools/make_templates.py):", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
