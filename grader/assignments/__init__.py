"""The registry of assignments: every module in this package that defines ASSIGNMENT.
To add an assignment, drop a module here (see bandits.py for a complete example)."""
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
    """The Markdown table of the assignments (README.md and the handout's README carry it)."""
    rows = ["| assignment | file | grading takes (2 cores) |", "|---|---|---|"]
    rows += [f"| {a.title} | `{folder}/{name}.py` | {a.expected_time or '-'} |" for name, a in all_assignments().items()]
    return "\n".join(rows)
