"""The registry of assignments: every module in this package that defines ASSIGNMENT (modules
starting with _ are what the specs share). A new assignment starts with the scaffold,
tools/new_assignment.py NAME "Title" in the course's repository (README: "Adding an assignment")."""

import importlib
import pkgutil


def all_assignments():
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "ASSIGNMENT"):
            found[module.ASSIGNMENT.name] = module.ASSIGNMENT
    return dict(sorted(found.items()))


def table(folder="assignments"):
    """The Markdown table of the assignments: README.md carries table("solutions"), the handout's README
    table() (tests/test_assignments.py and tools/make_handout.py in the course's repository)."""
    rows = ["| assignment | file | grading takes (2 idle cores) |", "|---|---|---|"]
    rows += [
        f"| {a.title} | `{folder}/{name}.py` | {a.expected_time or '-'} |" for name, a in all_assignments().items()
    ]
    return "\n".join(rows)
