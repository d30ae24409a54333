"""tools/gen_schemas.py (maintainers): up to date, deterministic, network-agnostic, faithful to
TAO Core; plus the wheel that ships the generated bank.

Tests marked ``maintainer`` need TAO Core (``nvidia-tao-core==7.3.0`` + omegaconf) and are
skipped without it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tao_sdk.bank import SkillBank

REPO = Path(__file__).resolve().parents[1]
GEN = REPO / "tools" / "gen_schemas.py"
SOURCES = yaml.safe_load((REPO / "tools" / "bank_sources.yaml").read_text(encoding="utf-8"))["skills"]
SEED_SKILLS = sorted(n for n, s in SOURCES.items() if s.get("prose") == "hand-written")
CATALOG = sorted(SOURCES)  # every skill the bank ships: the seeds + the rest of TAO Core's catalog
ALL_SKILLS = sorted(["tao-run-automl", *CATALOG])


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


_HAVE_TAO = _importable("nvidia_tao_core") and _importable("omegaconf")
needs_tao = pytest.mark.skipif(
    not _HAVE_TAO,
    reason="TAO Core is not installed (maintainers: pip install omegaconf requests && "
           "pip install --no-deps nvidia-tao-core==7.3.0)")


def _gen(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GEN), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _network_config_dir() -> Path:
    import nvidia_tao_core

    return Path(nvidia_tao_core.__file__).parent / "microservices" / "handlers" / "network_configs"


# --------------------------------------------------------------------------- every network
_CHECK_BANK = ("import json, sys; from tao_sdk import SkillBank, check_bank; "
               "print(json.dumps([str(p) for p in check_bank(SkillBank(sys.argv[1]))]))")


@pytest.fixture(scope="module")
def all_networks(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """``gen_schemas.py --all-networks --out DIR``, once per module.

    Checking ~30 generated skills takes check_bank() ~15 s (Draft 2020-12 meta-schema validation
    of ~200 schemas), so it starts here in a subprocess and runs while the rest of this module
    does; test_all_networks_bank_passes_the_checker (the last test) collects its result.
    """
    if not _HAVE_TAO:
        pytest.skip("TAO Core is not installed")
    out = tmp_path_factory.mktemp("all-networks")
    proc = _gen("--all-networks", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checker = subprocess.Popen([sys.executable, "-c", _CHECK_BANK, str(out)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield SimpleNamespace(root=out, checker=checker, stdout=proc.stdout)
    if checker.poll() is None:
        checker.kill()
        checker.communicate()


def _generator():
    """tools/gen_schemas.py as a module (its experiment-config lookup is the one under test)."""
    if "gen_schemas" not in sys.modules:
        sys.path.insert(0, str(REPO / "tools"))
        importlib.import_module("gen_schemas")
    return sys.modules["gen_schemas"]


def _expected_network_skills() -> dict[str, str]:
    """{network_config: network} for every TAO Core network config with actions and a dataclass config."""
    out = {}
    for path in sorted(_network_config_dir().glob("*.config.json")):
        name = path.name[: -len(".config.json")]
        cfg = json.loads(path.read_text())
        network = ((cfg.get("actions_mapping") or {}).get("*") or {}).get("network", name)
        if not cfg.get("api_params", {}).get("actions"):
            continue
        try:
            _ = _generator().experiment_config(network)
        except _generator().NoDataclassConfig:  # no dataclass config: not generated
            continue
        out[name] = network
    return out


@pytest.mark.maintainer
@needs_tao
def test_all_networks_generates_every_tao_core_network(all_networks):
    bank = SkillBank(all_networks.root)
    names = bank.names()
    assert len(names) > 20
    expected = _expected_network_skills()
    got = {bank.get(n).info["network_config"]: bank.get(n).network for n in names}
    assert got == expected
    for name in names:
        skill = bank.get(name)
        assert skill.manifest["actions"], name
        assert skill.has_schema(skill.actions[0]), name
    # the bank ships exactly this catalog: same skill names, generated files equal the shipped ones
    # (generated-prose SKILL.md included; seed SKILL.md prose is hand-written around its blocks)
    assert names == CATALOG
    for skill in CATALOG:
        for rel in ("schemas", "references"):
            generated = _snapshot(all_networks.root / "skills" / skill / rel)
            shipped = {k: v for k, v in _snapshot(REPO / "skills" / skill / rel).items() if k in generated}
            assert generated == shipped, skill
        if skill not in SEED_SKILLS:
            assert (all_networks.root / "skills" / skill / "SKILL.md").read_bytes() == \
                (REPO / "skills" / skill / "SKILL.md").read_bytes(), skill


# --------------------------------------------------------------------------- determinism
@pytest.mark.maintainer
@needs_tao
def test_generation_is_deterministic(tmp_path, all_networks):
    # the first run is the module's (`--all-networks --out`, into an empty folder); a copy of its
    # output is what an independent second run (plain `--out`, another process) must leave as is
    out = tmp_path / "bank"
    shutil.copytree(all_networks.root, out)
    snap = _snapshot(out)
    # every skill got its schemas, templates, skill_info, manifest and a SKILL.md (minimal for seeds)
    assert sorted({k.split("/")[1] for k in snap}) == CATALOG
    for skill in CATALOG:
        action = SkillBank(out).get(skill).actions[0]
        for rel in ("SKILL.md", "schemas/manifest.json", f"schemas/{action}.schema.json",
                    f"references/spec_template_{action}.yaml", "references/skill_info.yaml"):
            assert f"skills/{skill}/{rel}" in snap, (skill, rel)
    assert f"wrote {len(snap)} of {len(snap)} generated files" in all_networks.stdout

    # reads the SKILL.md files the first run wrote and generates byte-identical files: nothing
    # written, and it generates exactly the first run's files (no more, no fewer)
    second = _gen("--out", str(out))
    assert second.returncode == 0, second.stderr
    assert f"wrote 0 of {len(snap)} generated files" in second.stdout
    assert _snapshot(out) == snap

    check = _gen("--check", "--out", str(out))
    assert check.returncode == 0, check.stdout
    assert f"generated files are up to date ({len(snap)} files, {len(CATALOG)} skills)" in check.stdout


@pytest.mark.maintainer
@needs_tao
def test_check_reports_stale_files(tmp_path):
    shutil.copytree(REPO / "skills", tmp_path / "skills")
    skill = tmp_path / "skills" / "tao-train-rtdetr"
    schema = skill / "schemas" / "evaluate.schema.json"
    schema.write_text(schema.read_text().replace('"minimum": 1', '"minimum": 2', 1))
    (skill / "references" / "spec_template_export.yaml").unlink()
    md = skill / "SKILL.md"
    md.write_text(md.read_text().replace("(higher is better; direction `max`)", "(hand edit)", 1))
    before = _snapshot(tmp_path)

    proc = _gen("--check", "--out", str(tmp_path))
    assert proc.returncode == 1, proc.stdout
    assert "3 generated file(s) are stale" in proc.stdout
    assert "python tools/gen_schemas.py" in proc.stdout
    lines = proc.stdout.splitlines()
    assert any(line.strip().startswith("skills/tao-train-rtdetr/schemas/evaluate.schema.json: ") and "differ" in line
               for line in lines), proc.stdout
    assert "  skills/tao-train-rtdetr/references/spec_template_export.yaml: missing" in lines
    assert any(line.strip().startswith("skills/tao-train-rtdetr/SKILL.md:") for line in lines)
    assert _snapshot(tmp_path) == before  # --check writes nothing

    fix = _gen("--out", str(tmp_path))
    assert fix.returncode == 0 and fix.stdout.startswith("wrote 3 of ")
    # the generator rewrote exactly the shipped files (hand-written SKILL.md prose kept). This also
    # proves the repo's generated files are up to date: a stale one would have been stale in the
    # copy too, so the generator would have written it as a 4th file and the copy would differ.
    # (`make test` runs `gen_schemas.py --check` on the repo itself; the --check message of an
    # up-to-date bank is asserted by test_generation_is_deterministic.)
    assert _snapshot(tmp_path) == _snapshot_of_repo_skills()


def _snapshot_of_repo_skills() -> dict[str, bytes]:
    return {f"skills/{k}": v for k, v in _snapshot(REPO / "skills").items()}


# --------------------------------------------------------------------------- faithful to TAO Core
@pytest.mark.maintainer
@needs_tao
def test_every_shipped_template_loads_into_tao_core_experiment_config():
    """All 32 skills, every (TensorRT) action template: OmegaConf.merge into TAO Core's ExperimentConfig
    (raises on unknown keys / wrong types). One structured config per network, merged per template."""
    from omegaconf import OmegaConf

    bank = SkillBank(REPO)
    bases: dict[str, object] = {}
    loaded = 0
    for name in CATALOG:
        skill = bank.get(name)
        if skill.network not in bases:
            exp = _generator().experiment_config(skill.network)
            bases[skill.network] = OmegaConf.structured(exp)
        for deploy in (False, True):
            for action in skill.manifest["deploy_actions" if deploy else "actions"]:
                template = skill.template(action, deploy)
                try:
                    merged = OmegaConf.merge(bases[skill.network], template)
                except Exception as exc:  # noqa: BLE001 - name the template that TAO Core rejects
                    raise AssertionError(f"{skill.template_path(action, deploy)}: {exc}") from None
                if "train" in template and "num_epochs" in (template["train"] or {}):
                    assert merged.train.num_epochs == template["train"]["num_epochs"]
                if skill.info.get("model_type"):
                    assert merged.model.model_type == skill.info["model_type"]
                loaded += 1
    ffs = OmegaConf.merge(bases["depth_net"], bank.get("tao-train-fast-foundation-stereo").template("train"))
    assert ffs.model.model_type == "FastFoundationStereo" and ffs.model.volume_dim == 28
    assert loaded == sum(len(bank.get(n).manifest["actions"]) + len(bank.get(n).manifest["deploy_actions"])
                         for n in CATALOG) > 200


def _left_out_rows(skill) -> set[tuple[str, str]]:
    """(action, spec key) rows of the generated "What the Tables Leave Out" section of a SKILL.md."""
    text = skill.doc.text
    if "## What the Tables Leave Out" not in text:
        return set()
    rows = set()
    for line in text.split("## What the Tables Leave Out", 1)[1].splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 3 and cells[0] not in ("Action",):
            rows.add((cells[0], cells[1]))
    return rows


@pytest.mark.maintainer
@needs_tao
def test_skill_md_tables_carry_every_network_config_field():
    """All 32 skills: every spec_params row of the network config is in the skill's inference table,
    except the rows tools/bank_sources.yaml records (with why) as not in the dataclass; every
    data_sources entry is in the dataset table or named in the "What the Tables Leave Out" section."""
    bank = SkillBank(REPO)
    for name in CATALOG:
        skill = bank.get(name)
        cfg = json.loads((_network_config_dir() / f"{skill.info['network_config']}.config.json").read_text())
        left_out = _left_out_rows(skill)
        recorded = {tuple(k.split(" ", 1)) for k in SOURCES[name].get("spec_params_left_out") or {}}
        assert recorded <= left_out, name  # every recorded exception is told to the reader
        for action in sorted(set(cfg.get("data_sources", {})) | set(cfg.get("spec_params", {})) | set(skill.actions)):
            sources = cfg.get("data_sources", {}).get(action, {})
            rows = {r.spec_key: r for r in skill.dataset_requirements(action)}
            assert set(rows) <= set(sources), f"{name} {action} data sources"
            for key in set(sources) - set(rows):
                assert (action, key) in left_out, f"{name} {action} data source {key} neither in the table nor listed"
            for key, row in rows.items():
                assert row.source == sources[key]["source"]
                assert row.multiple == bool(sources[key].get("multiple_sources"))
            want = {k: v for k, v in cfg.get("spec_params", {}).get(action, {}).items() if (action, k) not in recorded}
            mappings = {m.spec_field: m for m in skill.inference_mappings(action)}
            assert sorted(mappings) == sorted(want), f"{name} {action} spec params"
            for key, value in want.items():
                m = mappings[key]
                if m.function is not None:
                    assert m.function == value, (name, action, key)
                elif key == "model.model_type":
                    assert m.literal == skill.info["model_type"]  # the bank pins the model type
                else:
                    assert m.literal == value or str(m.literal) == str(value), (name, action, key)


@pytest.mark.maintainer
@needs_tao
def test_skill_info_matches_tao_core_network_config():
    for name in CATALOG:
        skill = SkillBank(REPO).get(name)
        cfg = json.loads((_network_config_dir() / f"{skill.info['network_config']}.config.json").read_text())
        assert skill.actions == cfg["api_params"]["actions"]
        assert skill.info["formats"] == cfg["api_params"]["formats"]
        assert skill.info["dataset_type"] == cfg["api_params"]["dataset_type"]
        if "metrics" in cfg:  # TAO's image-validation service declares none
            assert skill.metric[0] == cfg["metrics"]["monitoring_metric"]


# --------------------------------------------------------------------------- without TAO Core
_BLOCK_TAO = r"""
import runpy, sys
class _NoTao:
    def find_spec(self, name, path=None, target=None):
        if name == "nvidia_tao_core" or name.startswith("nvidia_tao_core."):
            raise ImportError("No module named 'nvidia_tao_core' (hidden by the test)")
        return None
sys.meta_path.insert(0, _NoTao())
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_without_tao_core_prints_install_recipe():
    proc = subprocess.run([sys.executable, "-c", _BLOCK_TAO, str(GEN), "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "TAO Core is not installed" in proc.stderr
    assert "pip install --no-deps nvidia-tao-core==7.3.0" in proc.stderr


def test_help_works_without_running_tao_core():
    proc = _gen("--help")
    assert proc.returncode == 0
    assert "--all-networks" in proc.stdout and "nvidia-tao-core==7.3.0" in proc.stdout


# --------------------------------------------------------------------------- the wheel
@pytest.mark.slow
def test_wheel_ships_the_bank_and_finds_it_installed(tmp_path):
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.append("--no-build-isolation")
    proc = subprocess.run([*cmd, str(REPO)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = tmp_path.glob("tao_skill_bank-*.whl")
    # 32 skills (~14 MB of JSON/YAML unpacked) compress to ~2.4 MB; a jump means something unwanted ships
    assert wheel.stat().st_size < 5_000_000, wheel.stat().st_size
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for required in ("tao_sdk/_bank/skills/tao-train-rtdetr/SKILL.md",
                     "tao_sdk/_bank/skills/tao-train-rtdetr/schemas/train.schema.json",
                     "tao_sdk/_bank/schemas/skill_info.schema.json",
                     "tao_sdk/_bank/skills/tao-train-fast-foundation-stereo/references/spec_template_train.yaml",
                     "tao_sdk/_bank/skills/tao-run-automl/SKILL.md",
                     "tao_sdk/bank.py"):
        assert required in names, required

    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("TAO_SKILLS_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    probe = ("import json, tao_sdk; from tao_sdk import SkillBank; b = SkillBank(); "
             "print(json.dumps({'file': tao_sdk.__file__, 'root': str(b.root), 'names': b.names(), "
             "'metric': b.get('rtdetr').metric, 'train': b.get('rtdetr').schema('train')['x-tao']}))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert Path(out["file"]).resolve().is_relative_to(site.resolve()), out["file"]
    assert Path(out["root"]) == (site / "tao_sdk" / "_bank").resolve()
    assert out["names"] == ALL_SKILLS
    assert out["metric"] == ["val_mAP50", "max"]
    assert out["train"]["action"] == "train"


# --------------------------------------------------------------------------- collected last
@pytest.mark.maintainer
@needs_tao
def test_all_networks_bank_passes_the_checker(all_networks):
    """check_bank(SkillBank(DIR)) == [] for the --all-networks bank (started by the fixture)."""
    stdout, stderr = all_networks.checker.communicate(timeout=600)
    assert all_networks.checker.returncode == 0, stderr
    problems = json.loads(stdout)
    assert problems == [], "\n".join(problems)


def test_experiment_config_is_found_whatever_its_name_and_fails_loudly(monkeypatch):
    """TAO Core 7.3.0 names clip's config CLIPExperimentConfig: found; none or two candidates is an
    error naming them; a network without a default_config module is not generated."""
    import dataclasses
    import types

    gen = _generator()

    def fake(network: str, *classes: str) -> None:
        module = types.ModuleType(f"nvidia_tao_core.config.{network}.default_config")
        for name in classes:
            cls = dataclasses.make_dataclass(name, [("x", int, 0)])
            cls.__module__ = module.__name__
            setattr(module, name, cls)
        monkeypatch.setitem(sys.modules, module.__name__, module)

    fake("fake_one", "FakeExperimentConfig")
    assert gen.experiment_config("fake_one").__name__ == "FakeExperimentConfig"
    fake("fake_two", "AExperimentConfig", "BExperimentConfig")
    with pytest.raises(SystemExit, match="AExperimentConfig, BExperimentConfig"):
        gen.experiment_config("fake_two")
    fake("fake_none", "ModelConfig")
    with pytest.raises(SystemExit, match="none"):
        gen.experiment_config("fake_none")
    monkeypatch.setitem(sys.modules, "nvidia_tao_core.config.fake_absent", None)
    with pytest.raises(gen.NoDataclassConfig):
        gen.experiment_config("fake_absent")
