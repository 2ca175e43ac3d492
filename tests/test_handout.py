"""The student handout (tools/make_handout.py): no solution in it, and its grader works."""
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import make_handout  # noqa: E402
from make_templates import make_template  # noqa: E402

SOLUTIONS = sorted((REPO / "solutions").glob("*.py"))


def build(path):
    result = subprocess.run([sys.executable, "tools/make_handout.py", "-o", str(path)], cwd=REPO,
                            capture_output=True, text=True)
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
    return archive, files, root / make_handout.PREFIX


def test_the_handout_holds_templates_grader_datasets_and_a_readme(handout):
    _, files, _ = handout
    assert all(name.startswith("course-handout/") for name in files)
    names = {name.split("/", 1)[1] for name in files}
    assert {"README.md", "requirements.txt", "scripts/setup_data.sh", "grader/__main__.py", "grader/cli.py",
            "grader/assignments/bandits.py", "datasets/__init__.py", "datasets/checksums.json"} <= names
    assert {f"assignments/{s.name}" for s in SOLUTIONS} <= names
    assert {name.split("/")[0] for name in names} == {"README.md", "requirements.txt", "scripts", "grader",
                                                      "datasets", "assignments"}
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
    planted = {"grader/helpers.py": ("def update(self, actions, rewards):\n" + region.replace("        ", "    ")).encode()}
    assert [(path, solution) for path, solution, _ in make_handout.leaks(planted)] == [
        ("grader/helpers.py", "bandits.py")] * 2
    assert make_handout.problems(dict(make_handout.handout_files()[0], **planted))


def test_the_handout_grader_runs_on_its_templates(handout, tmp_path):
    _, _, root = handout
    def grader(*args):
        return subprocess.run([sys.executable, "-m", "grader", *args], cwd=root, capture_output=True, text=True,
                              timeout=300)
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
    result = subprocess.run([sys.executable, "tools/make_handout.py", "-o", str(tmp_path / "h.rar")], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2 and ".zip or .tar.gz" in result.stderr
