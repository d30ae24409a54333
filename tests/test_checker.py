"""The bank checker (``check_bank`` / ``tao-skills check``) on the real bank and on corrupted copies.

Every corruption is made in a copy of skills/ and schemas/ under tmp_path; the real bank is never
touched. Each corrupted copy is checked through the real CLI (a subprocess; ``--json`` gives the
check_bank() problems as data), which must exit 1 with precise problems and no traceback. A few
cases also compare with an in-process check_bank() and the human-readable output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tao_sdk import skillmd
from tao_sdk.bank import SkillBank
from tao_sdk.checker import AUTOML_NOT_RUNNABLE, Problem, check_bank
from tao_sdk.errors import BankFormatError, SkillNotFoundError

REPO = Path(__file__).resolve().parents[1]
# The cheapest model skill to check; every corruption below is made in it.
SKILL = "tao-train-deformable-detr"
REGEN = "python tools/gen_schemas.py"


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def bank_copy(tmp_path: Path) -> Path:
    """A bank root with the skill under test and the AutoML skill (the corruptions touch only them)."""
    root = tmp_path / "bank"
    for name in (SKILL, "tao-run-automl"):
        shutil.copytree(REPO / "skills" / name, root / "skills" / name)
    shutil.copytree(REPO / "schemas", root / "schemas")
    return root


def _cli_start(root: Path | None, *args: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("TAO_SKILLS_DIR", None)
    if root is not None:
        env["TAO_SKILLS_DIR"] = str(root)
    return subprocess.Popen([sys.executable, "-m", "tao_sdk.cli", "check", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cli_finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    assert "Traceback" not in stdout, stdout
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _cli(root: Path | None, *args: str) -> subprocess.CompletedProcess:
    return _cli_finish(_cli_start(root, *args))


def _problems(root: Path, skill: str = SKILL) -> list[Problem]:
    """Check one skill of a (corrupted) bank through the real CLI (``check SKILL --json``): it must
    fail cleanly (exit 1, no traceback) and list the problems check_bank() found."""
    proc = _cli(root, skill, "--json")
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    problems = [Problem(**p) for p in json.loads(proc.stdout)]
    assert problems, "exit 1 but no problem listed"
    return problems


def _md(root: Path) -> Path:
    return root / "skills" / SKILL / "SKILL.md"


def _line_of(path: Path, needle: str) -> int:
    """1-based number of the first line of ``path`` containing ``needle``."""
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def _edit_line(path: Path, line_no: int, new: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[line_no - 1] = new + "\n"
    path.write_text("".join(lines), encoding="utf-8")


def _only(problems: list[Problem], pattern: str) -> Problem:
    hits = [p for p in problems if re.search(pattern, p.message)]
    assert len(hits) == 1, (pattern, [str(p) for p in problems])
    return hits[0]


# --------------------------------------------------------------------------- the real bank
def test_real_bank_is_healthy_api_and_cli():
    cli = _cli_start(None)  # `tao-skills check` on the packaged bank, concurrently
    try:
        problems = check_bank(SkillBank(REPO))
    finally:
        proc = _cli_finish(cli)
    assert problems == [], "\n".join(map(str, problems))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bank OK" in proc.stdout
    assert f"{len(SkillBank(REPO).names())} skill(s) checked" in proc.stdout
    assert len(SkillBank(REPO).names()) == 33  # tao-run-automl + every TAO Core network (tools/bank_sources.yaml)
    assert proc.stderr == ""


def test_unknown_skill_is_a_problem_not_a_crash():
    (problem,) = check_bank(SkillBank(REPO), ["tao-train-rtdeter"])
    assert problem.skill == "tao-train-rtdeter"
    assert "did you mean" in problem.message and "tao-train-rtdetr" in problem.message


# --------------------------------------------------------------------------- corruptions
def test_a_skill_md_without_front_matter(bank_copy):
    md = _md(bank_copy)
    text = md.read_text(encoding="utf-8")
    md.write_text(text.split("\n---\n", 1)[1].lstrip("\n"), encoding="utf-8")
    problems = _problems(bank_copy)
    assert problems == check_bank(SkillBank(bank_copy), [SKILL])  # the CLI lists the API's problems
    (p,) = problems
    assert p.where == f"{md}:1"
    assert "missing YAML front matter" in p.message
    assert "name: <skill-folder-name>" in p.message and "description:" in p.message  # the fix


def test_b_front_matter_name_differs_from_folder(bank_copy):
    md = _md(bank_copy)
    md.write_text(md.read_text(encoding="utf-8").replace(f"name: {SKILL}\n", "name: tao-train-ddetr\n", 1),
                  encoding="utf-8")
    problems = _problems(bank_copy)
    p = _only(problems, "front matter name")
    assert p.where == f"{md}:2"
    assert "'tao-train-ddetr'" in p.message and f"must equal the folder name '{SKILL}'" in p.message
    assert len(problems) == 1


def test_c_schema_invalid_json_and_invalid_json_schema(bank_copy):
    path = bank_copy / "skills" / SKILL / "schemas" / "export.schema.json"
    _edit_line(path, 5, '  "title": oops no quotes,')
    # and a schema that parses but is not a valid Draft 2020-12 schema
    other = bank_copy / "skills" / SKILL / "schemas" / "evaluate.schema.json"
    schema = json.loads(other.read_text())
    schema["properties"]["evaluate"]["properties"]["checkpoint"]["type"] = "str"
    other.write_text(json.dumps(schema, indent=2))

    problems = _problems(bank_copy)
    p = _only(problems, "invalid JSON")
    assert p.where == f"{path}:5"
    assert REGEN in p.message
    bad = _only(problems, "not a valid JSON Schema")
    assert bad.where.startswith(f"{other}#properties/evaluate/properties/checkpoint")
    assert "'str' is not valid" in bad.message

    # the loader names file and line too
    skill = SkillBank(bank_copy).get(SKILL)
    with pytest.raises(BankFormatError) as exc:
        skill.schema("export")
    assert f"{path}:5:" in str(exc.value)
    assert "invalid JSON" in str(exc.value) and REGEN in str(exc.value)
    assert skill.schema("train")["x-tao"]["action"] == "train"  # the other schemas still load


def test_d_template_values_invalid(bank_copy):
    path = bank_copy / "skills" / SKILL / "references" / "spec_template_train.yaml"
    lines = path.read_text().splitlines()
    train = lines.index("train:")  # the top-level train section; its keys follow, indented by 2
    epochs = next(i for i in range(train, len(lines)) if lines[i].startswith("  num_epochs:")) + 1
    interval = next(i for i in range(train, len(lines)) if lines[i].startswith("  checkpoint_interval:")) + 1
    _edit_line(path, epochs, "  num_epochs: -5")
    _edit_line(path, interval, "  checkpoint_interval: ten")
    problems = {p.where: p for p in _problems(bank_copy)}
    assert set(problems) == {f"{path}#train.num_epochs", f"{path}#train.checkpoint_interval"}
    epochs_problem = problems[f"{path}#train.num_epochs"].message
    assert "does not validate against train.schema.json" in epochs_problem
    assert "-5 is less than the minimum of 1" in epochs_problem
    assert "'ten' is not of type 'integer'" in problems[f"{path}#train.checkpoint_interval"].message


def test_e_dataset_row_spec_key_does_not_exist(bank_copy):
    md = _md(bank_copy)
    line = _line_of(md, "| train | `dataset.train_data_sources` |")
    row = md.read_text().splitlines()[line - 1]
    _edit_line(md, line, row.replace("dataset.train_data_sources", "dataset.train_data_sourcez"))
    problems = _problems(bank_copy)
    key = _only(problems, "spec key")
    assert key.where == f"{md}:{line}"
    assert "'dataset.train_data_sourcez' does not exist in the train schema" in key.message
    assert "fix the key or regenerate" in key.message
    stale = _only(problems, "generated block 'dataset-requirements' differs")
    assert stale.where == f"{md}:{_line_of(md, skillmd.begin_marker('dataset-requirements')) + 1}"
    assert len(problems) == 2


def test_f_generated_block_hand_edited(bank_copy):
    md = _md(bank_copy)
    text = md.read_text()
    md.write_text(text.replace("(higher is better; direction `max`)", "(higher is better; direction `max`) !!", 1))
    (p,) = _problems(bank_copy)
    assert p.where == f"{md}:{_line_of(md, skillmd.begin_marker('training-requirements')) + 1}"
    assert "generated block 'training-requirements' differs" in p.message
    assert "hand-edited or stale" in p.message and REGEN in p.message


def test_g_skill_info_bad_direction(bank_copy):
    path = bank_copy / "skills" / SKILL / "references" / "skill_info.yaml"
    path.write_text(path.read_text().replace("  direction: max\n", "  direction: up\n", 1))
    # a bank root holding only skills/ (gen_schemas.py --out, TAO_SKILLS_DIR) is checked against
    # the SDK's own copy of schemas/skill_info.schema.json
    shutil.rmtree(bank_copy / "schemas")
    cli = _cli_start(bank_copy, SKILL)  # human-readable output, concurrently with the API call
    try:
        problems = check_bank(SkillBank(bank_copy), [SKILL])
    finally:
        proc = _cli_finish(cli)
    (p,) = problems
    assert p.where == f"{path}#monitoring_metric/direction"
    assert "'up' is not one of ['max', 'min']" in p.message
    assert "schemas/skill_info.schema.json" in p.message
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == ["1 problem(s):", f"  {p.where}: {p.message}"]
    with pytest.raises(BankFormatError, match="direction"):
        _ = SkillBank(bank_copy).get(SKILL).metric


def test_h_automl_skill_without_train_schema(bank_copy):
    info = SkillBank(bank_copy).get(SKILL).info
    assert info["automl_enabled"] is True
    path = bank_copy / "skills" / SKILL / "schemas" / "train.schema.json"
    path.unlink()
    problems = _problems(bank_copy)
    p = _only(problems, AUTOML_NOT_RUNNABLE)
    assert p.where == str(path)
    assert REGEN in p.message
    missing = _only(problems, "schema of action 'train' listed in the manifest is missing")
    assert missing.where == str(path)
    assert not SkillBank(bank_copy).get(SKILL).automl_runnable()


def test_i_markers_removed(bank_copy):
    md = _md(bank_copy)
    text = md.read_text()
    text = text.replace(skillmd.begin_marker("inference-mappings") + "\n", "")
    text = text.replace(skillmd.end_marker("inference-mappings") + "\n", "")
    md.write_text(text)
    (p,) = _problems(bank_copy)
    assert p.where == str(md)
    assert "generated block 'inference-mappings' is missing" in p.message
    assert skillmd.begin_marker("inference-mappings") in p.message  # says what to add
    assert skillmd.end_marker("inference-mappings") in p.message
    assert REGEN in p.message


def test_j_table_row_with_wrong_cell_count(bank_copy):
    md = _md(bank_copy)
    line = _line_of(md, "| train | `dataset.val_data_sources` |")
    _edit_line(md, line, md.read_text().splitlines()[line - 1] + " extra |")
    (p,) = _problems(bank_copy)
    assert p.where == f"{md}:{line}"
    assert "row has 6 cells, the table has 5 columns" in p.message
    assert "fix the row" in p.message

    with pytest.raises(BankFormatError) as exc:
        _ = SkillBank(bank_copy).get(SKILL).doc
    assert str(exc.value).startswith(f"{md}:{line}: row has 6 cells")


def test_bad_table_header_names_line(bank_copy):
    md = _md(bank_copy)
    line = _line_of(md, "| Action | Spec Key | Source | Files | List? |")
    _edit_line(md, line, "| Action | Key | Source | Files | List? |")
    (p,) = _problems(bank_copy)
    assert p.where == f"{md}:{line}" and "expected columns" in p.message


# --------------------------------------------------------------------------- bank root errors
def test_bank_without_skills_dir(tmp_path):
    with pytest.raises(SkillNotFoundError) as exc:
        SkillBank(tmp_path)
    assert str(tmp_path) in str(exc.value) and "TAO_SKILLS_DIR" in str(exc.value)
    proc = _cli(tmp_path)
    assert proc.returncode == 2
    assert "error: no skills/ folder" in proc.stderr
