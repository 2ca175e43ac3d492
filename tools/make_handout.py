#!/usr/bin/env python3
"""Builds the student handout: an archive (.zip or .tar.gz) of course-handout/ with

    assignments/*.py       the templates (generated from the solutions: tools/make_templates.py)
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
import io
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
    sources += sorted(p for p in (ROOT / "grader").rglob("*.py") if "__pycache__" not in p.parts
                      and not (p.parent.name == "hidden" and p.name != "__init__.py"))
    sources += sorted(p for p in (ROOT / "datasets").iterdir() if p.suffix in (".py", ".json", ".md"))
    sources.append(ROOT / "scripts" / "setup_data.sh")
    files = {p.relative_to(ROOT).as_posix(): p.read_bytes() for p in sources}
    modes = {p.relative_to(ROOT).as_posix(): p.stat().st_mode & 0o777 for p in sources}
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    files["requirements.txt"] = "".join(f"{d}\n" for d in dependencies if not d.startswith("pytest")).encode()
    files["README.md"] = student_readme().encode()
    return files, modes


def student_readme():
    """tools/handout-README.md with the assignments of the registry filled in."""
    sys.path.insert(0, str(ROOT))
    from grader.assignments import all_assignments, table
    assignments = all_assignments()
    text = (ROOT / "tools" / "handout-README.md").read_text()
    return text.replace("{assignments}", table()).replace(
        "{names}", ", ".join(f"`{name}.py`" for name in assignments))


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
                runs += [(solution.name, tuple(region[i:i + width])) for i in range(len(region) - width + 1)]
                region = None
            elif region is not None and stripped and not stripped.startswith("#"):
                region.append(stripped)
    return runs


def leaks(files):
    """[(path, solution, run)] of solution code found in the files."""
    found = []
    for path, data in files.items():
        lines = [line.strip() for line in data.decode(errors="replace").splitlines()]
        lines = [line for line in lines if line and not line.startswith("#")]
        windows = {tuple(lines[i:i + w]) for w in (1, 2, 3) for i in range(len(lines) - w + 1)}
        found += [(path, solution, run) for solution, run in solution_runs() if run in windows]
    return found


UNSHIPPED = re.compile(r"(?<![\w./-])(bench|tests|tools|solutions)/")


def dangling(files):
    """[(path, line number, line)] of references to folders the handout does not ship."""
    found = []
    for path, data in files.items():
        if path.endswith((".py", ".md", ".sh", ".txt")):
            for number, line in enumerate(data.decode(errors="replace").splitlines(), 1):
                if UNSHIPPED.search(line) and "course's repository" not in line:
                    found.append((path, number, line.strip()))
    return found


def problems(files):
    out = [f"{path} contains {len(run)} line(s) of solutions/{solution}: {run[0]!r}..."
           for path, solution, run in leaks(files)]
    out += [f"{path}:{number} refers to a folder the handout does not ship: {line[:100]!r}"
            for path, number, line in dangling(files)]
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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", default=str(ROOT / "dist" / "handout.zip"),
                   help="the archive to write, .zip or .tar.gz (default: dist/handout.zip)")
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
