"""The student handout (tools/make_handout.py): no solution in it, and its grader works."""

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import make_handout  # noqa: E402
from make_templates import make_template  # noqa: E402

SOLUTIONS = sorted((REPO / "solutions").glob("*.py"))


def build(path):
    result = subprocess.run(
        [sys.executable, "tools/make_handout.py", "-o", str(path)], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def handout(tmp_path_factory):
    """The handout built and unpacked: (archive path, {name: bytes}, unpacked folder)."""
    root = tmp_path_factory.mktemp("handout")
    archive = build(root / "handout.zip")
    with zipfile.ZipFile(archive) as z:
        files = {name: z.read(name) for name in z.namelist()}
        z.extractall(root)
        for info in z.infolist():  # as unzip does: the modes recorded in the archive (setup_data.sh is executable)
            if info.external_attr >> 16:
                (root / info.filename).chmod((info.external_attr >> 16) & 0o777)
    return archive, files, root / make_handout.PREFIX


def test_the_handout_holds_templates_grader_datasets_and_a_readme(handout):
    _, files, _ = handout
    assert all(name.startswith("course-handout/") for name in files)
    names = {name.split("/", 1)[1] for name in files}
    assert {
        "README.md",
        "requirements.txt",
        "scripts/setup_data.sh",
        "grader/__main__.py",
        "grader/cli.py",
        "grader/assignments/bandits.py",
        "datasets/__init__.py",
        "datasets/checksums.json",
    } <= names
    assert {f"assignments/{s.name}" for s in SOLUTIONS} <= names
    assert {name.split("/")[0] for name in names} == {
        "README.md",
        "requirements.txt",
        "scripts",
        "grader",
        "datasets",
        "assignments",
    }
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    assert "pytest" not in files["course-handout/requirements.txt"].decode()
    assert "python -m grader assignments/bandits.py" in files["course-handout/README.md"].decode()


def test_no_solution_code_in_the_handout(handout):
    _, files, _ = handout
    texts = {name: data.decode() for name, data in files.items()}
    for solution in SOLUTIONS:  # the templates are exactly the generated ones: every region replaced by a TODO
        assert texts[f"course-handout/assignments/{solution.name}"] == make_template(solution.read_text())
    assert not any("BEGIN SOLUTION" in text or "END SOLUTION" in text for text in texts.values())
    assert make_handout.leaks({name.split("/", 1)[1]: data for name, data in files.items()}) == []
    # the detector finds solution code wherever it is, even re-indented in another file
    region = (REPO / "solutions/bandits.py").read_text().split("### BEGIN SOLUTION\n")[2].split("### END SOLUTION")[0]
    planted = {
        "grader/helpers.py": ("def update(self, actions, rewards):\n" + region.replace("        ", "    ")).encode()
    }
    assert [(path, solution) for path, solution, _ in make_handout.leaks(planted)] == [
        ("grader/helpers.py", "bandits.py")
    ] * 2
    assert make_handout.problems(dict(make_handout.handout_files()[0], **planted))


def test_the_handout_grader_runs_on_its_templates(handout, tmp_path):
    _, _, root = handout

    def grader(*args):
        return subprocess.run(
            [sys.executable, "-m", "grader", *args], cwd=root, capture_output=True, text=True, timeout=300
        )

    listing = grader("--help")
    assert listing.returncode == 0 and all(s.stem in listing.stdout for s in SOLUTIONS)
    template = grader("assignments/bandits.py")
    assert template.returncode == 1, template.stderr
    assert "unfinished TODOs: Agent.select_actions, Agent.update" in template.stdout
    assert "Traceback" not in template.stdout + template.stderr
    vae = grader("assignments/vae.py", "--check", "latent", "--quiet")  # TensorFlow and the datasets package
    assert vae.returncode == 1 and "TODO: latent_loss" in vae.stdout, vae.stdout + vae.stderr
    (root / "mine").mkdir()
    shutil.copy(REPO / "solutions/bandits.py", root / "mine/bandits.py")  # a student's finished work
    finished = grader("mine/bandits.py", "--quiet")
    assert finished.returncode == 0 and finished.stdout.startswith("PASSED"), finished.stdout


def test_the_archive_is_reproducible_and_tar_gz_has_the_same_files(handout, tmp_path):
    archive, files, _ = handout
    assert build(tmp_path / "again.zip").read_bytes() == archive.read_bytes()
    with tarfile.open(build(tmp_path / "handout.tar.gz")) as tar:
        assert sorted(tar.getnames()) == sorted(files)
        assert tar.getmember("course-handout/scripts/setup_data.sh").mode & 0o111


def test_refuses_an_unknown_archive_format(tmp_path):
    result = subprocess.run(
        [sys.executable, "tools/make_handout.py", "-o", str(tmp_path / "h.rar")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and ".zip or .tar.gz" in result.stderr


def test_the_handout_refers_only_to_what_it_ships_and_lists_every_assignment(handout):
    _, files, _ = handout
    shipped = {name.split("/", 1)[1]: data for name, data in files.items()}
    assert make_handout.dangling(shipped) == []
    assert make_handout.dangling({"grader/x.py": b"see bench/vae.py\n"}) == [("grader/x.py", 1, "see bench/vae.py")]
    readme = shipped["README.md"].decode()
    from grader.assignments import all_assignments

    for name, assignment in all_assignments().items():
        assert f"`assignments/{name}.py`" in readme and f"`{name}.py`" in readme and assignment.title in readme
    assert "course-handout/" in readme and "cd course-handout" in readme
    assert not any(name.startswith("grader/hidden/") and name != "grader/hidden/__init__.py" for name in shipped)


def fill(template, solution):
    """The template with each TODO replaced by the solution's region, as a student would write it."""
    regions, inside = [], None
    for line in solution.splitlines(keepends=True):
        if line.strip() == "### BEGIN SOLUTION":
            inside = []
        elif line.strip() == "### END SOLUTION":
            regions.append("".join(inside))
            inside = None
        elif inside is not None:
            inside.append(line)
    out = []
    for line in template.splitlines(keepends=True):
        if line.strip().startswith('raise NotImplementedError("TODO: '):
            out.append(regions.pop(0))
        else:
            out.append(line)
    assert not regions
    return "".join(out)


@pytest.mark.slow
def test_a_student_walks_through_the_handout(handout, tmp_path):
    """Unpack, set up exactly as the student README says, fill the TODOs, grade with the handout's grader."""
    _, files, root = handout
    readme = files["course-handout/README.md"].decode()
    setup = readme.split("## Set-up")[1].split("```sh")[1].split("```")[0]
    commands = [line.split("#")[0].strip() for line in setup.strip().splitlines()]
    commands = [c for c in commands if c and not c.startswith(("cd ", "sudo "))]
    assert commands[0] == "python3.11 -m venv .venv"
    commands[0] = f"{_base_python()} -m venv .venv"
    for command in commands:
        result = subprocess.run(command, shell=True, cwd=root, capture_output=True, text=True, timeout=1500)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    python = str(root / ".venv/bin/python")
    mine = root / "walk"  # not "mine": the module's handout is shared with the test above
    mine.mkdir()
    for solution in SOLUTIONS:
        template = (root / "assignments" / solution.name).read_text()
        (mine / solution.name).write_text(fill(template, solution.read_text()))

    def grade(*args):
        return subprocess.run(
            [python, "-m", "grader", *args, "--quiet"], cwd=root, capture_output=True, text=True, timeout=900
        )

    for name in ("bandits", "value_iteration"):  # every check
        result = grade(f"walk/{name}.py")
        assert result.returncode == 0 and result.stdout.startswith("PASSED"), result.stdout + result.stderr
    for name in ("reinforce", "reinforce_baseline", "vae"):  # the unit checks (training takes minutes)
        result = grade(f"walk/{name}.py", "--check", "loss", "--check", "returns", "--check", "sample")
        assert result.returncode == 0 and result.stdout.startswith("PASSED"), result.stdout + result.stderr
        template = grade(f"assignments/{name}.py", "--check", "loss")
        assert template.returncode == 1 and "TODO" in template.stdout, template.stdout + template.stderr


def _base_python():
    """A Python 3.11 as the student would have it (not this virtual environment's)."""
    import sysconfig

    return str(Path(sys.base_prefix) / "bin" / f"python{sysconfig.get_python_version()}")


# ------------------------------------------------------------------ notebooks
def notebooks(files):
    import nbformat

    return {
        name.split("/")[-1][: -len(".ipynb")]: nbformat.reads(data.decode(), as_version=4)
        for name, data in files.items()
        if name.endswith(".ipynb")
    }


def fill_notebook(notebook, solution):
    """The notebook with its TODOs replaced, cell by cell, by the solution's regions in order."""
    regions = [region.split("### END SOLUTION")[0] for region in solution.split("### BEGIN SOLUTION\n")[1:]]
    regions = ["\n".join(line for line in region.split("\n")[:-1]) + "\n" for region in regions]
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.source = "".join(
                regions.pop(0) if line.strip().startswith('raise NotImplementedError("TODO: ') else line
                for line in cell.source.splitlines(keepends=True)
            )
    assert not regions
    return notebook


def test_the_handout_has_a_notebook_of_every_template(handout):
    import nbformat

    _, files, _ = handout
    books = notebooks(files)
    assert sorted(books) == [s.stem for s in SOLUTIONS]
    for name, notebook in books.items():
        nbformat.validate(notebook)
        kinds = [c.cell_type for c in notebook.cells]
        assert kinds[:3] == ["markdown"] * 3 and kinds[-1] == "code"
        assert notebook.cells[0].source.startswith("# ") and notebook.cells[1].source.startswith("## How it is graded")
        assert f"python -m grader assignments/{name}.ipynb" in notebook.cells[2].source
        assert '`__name__` is `"__main__"`' in notebook.cells[2].source and "preview" in notebook.cells[2].source
        todos = [c for c in notebook.cells if 'raise NotImplementedError("TODO' in c.source]
        assert all(c.source.count("\ndef ") + c.source.startswith("def ") <= 1 for c in todos)  # a function a cell
        last = notebook.cells[-1].source
        assert 'if __name__ == "__main__":\n    main([])' in last
        code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
        assert not re.findall(r'(?<![.\w"])__file__', code), f"{name}.ipynb: Jupyter defines no __file__"
        template = (REPO / "assignments" / f"{name}.py").read_text()
        if make_handout.FENCE in template:  # the grader interface: the last cell, marked as such
            assert make_handout.FENCE in last and notebook.cells[-2].source.startswith("## Grader interface")
            assert not any(make_handout.FENCE in c.source for c in notebook.cells[:-1] if c.cell_type == "code")


@pytest.mark.parametrize("name", [s.stem for s in SOLUTIONS])
def test_the_handout_notebooks_filled_from_the_solutions_convert_and_compile(handout, name):
    import nbformat

    from grader.notebook import to_program

    _, files, _ = handout
    filled = fill_notebook(notebooks(files)[name], (REPO / "solutions" / f"{name}.py").read_text())
    program = to_program(nbformat.writes(filled).encode())
    compile(program.code, f"{name}.ipynb", "exec")
    assert b"NotImplementedError" not in program.code and program.notes == ()


@pytest.mark.parametrize("name", ["bandits", "value_iteration", "nas"])
def test_the_filled_handout_notebooks_pass_and_run_in_jupyter(handout, tmp_path, name):
    """Graded by the handout's grader, every check passes; run as Jupyter does (as __main__, with the
    kernel's argv), the last cell runs main([])."""
    import nbformat

    from grader.notebook import to_program

    _, files, root = handout
    folder = root / f"filled-{name}"
    folder.mkdir()
    text = nbformat.writes(fill_notebook(notebooks(files)[name], (REPO / "solutions" / f"{name}.py").read_text()))
    (folder / f"{name}.ipynb").write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "grader", f"filled-{name}/{name}.ipynb", "--quiet"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0 and result.stdout.startswith("PASSED"), result.stdout + result.stderr
    kernel = (
        "import sys; sys.argv = ['ipykernel_launcher.py', '-f', 'kernel.json']\n"
        f"exec(compile(open({str(tmp_path / 'code.py')!r}).read(), 'notebook', 'exec'), {{'__name__': '__main__'}})"
    )
    (tmp_path / "code.py").write_bytes(to_program(text.encode()).code)
    jupyter = subprocess.run([sys.executable, "-c", kernel], cwd=folder, capture_output=True, text=True, timeout=300)
    assert jupyter.returncode == 0 and jupyter.stdout, jupyter.stderr
