#!/usr/bin/env python3
"""Generate and check the agent plugin manifests: the repository installs as a Claude Code plugin
and as a Codex plugin, with the skill bank's skills and the ``tao-skills mcp`` MCP server (stdio).

Written from the bank (every ``skills/<name>/SKILL.md``) and pyproject.toml (name, version,
description, license):

- ``.claude-plugin/plugin.json``       Claude Code plugin: lists every skill folder, MCP servers in ``.mcp.json``
- ``.claude-plugin/marketplace.json``  a one-plugin marketplace (``/plugin marketplace add <repo>``)
- ``.codex-plugin/plugin.json``        Codex plugin: ``skills/`` and ``.mcp.json``, install-surface ``interface``
- ``.mcp.json``                        the MCP server both load: ``tao-skills mcp`` over stdio

``--check`` also validates what is on disk (JSON, required fields, kebab-case names, semantic
versions, relative ``./`` paths that exist, every listed skill exists and keeps to the Agent Skills
format, every skill is listed, the MCP server is registered) and exits 1 naming each problem.

Usage:
  python tools/gen_plugin.py           write the manifests
  python tools/gen_plugin.py --check   exit 1 when a manifest is stale or invalid (make test runs it)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from _generated import ROOT, sync

sys.path.insert(0, str(ROOT))

from tao_sdk.skillmd import agent_skill_problems, parse_front_matter  # noqa: E402

CLAUDE, MARKETPLACE = ".claude-plugin/plugin.json", ".claude-plugin/marketplace.json"
CODEX, MCP = ".codex-plugin/plugin.json", ".mcp.json"
#: The MCP server the plugins register (``tao-skills mcp``: stdio by default).
MCP_SERVER = {"tao-skills": {"command": "tao-skills", "args": ["mcp"]}}
AUTHOR = {"name": "TAO Skill Bank maintainers"}
KEYWORDS = ["nvidia-tao", "computer-vision", "training", "automl", "tensorrt", "mcp", "agent-skills"]
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
SEMVER = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


def project() -> dict[str, str]:
    """name, version, description, license of pyproject.toml's [project] table."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    table = text.split("[project]", 1)[1].split("\n[", 1)[0]
    out = {k: re.search(rf'^{k}\s*=\s*"([^"]*)"', table, re.M).group(1) for k in ("name", "version", "description")}
    out["license"] = re.search(r'^license\s*=\s*\{\s*text\s*=\s*"([^"]*)"', table, re.M).group(1)
    return out


def skill_names() -> list[str]:
    """Every skill folder of the bank (``skills/<name>/SKILL.md``), sorted."""
    return sorted(p.parent.name for p in (ROOT / "skills").glob("*/SKILL.md"))


def manifests() -> dict[str, dict[str, Any]]:
    """Path -> the JSON content of each manifest."""
    meta, skills = project(), skill_names()
    common = {"name": meta["name"], "version": meta["version"], "description": meta["description"],
              "author": AUTHOR, "license": meta["license"], "keywords": KEYWORDS}
    summary = (f"{len(skills)} skills (RT-DETR, Deformable DETR, OneFormer, FastFoundationStereo with a built-in "
               "worker; every other TAO Core network through NVIDIA's TAO containers) and the tao-skills MCP server: "
               "validate specs, plan (dry run), submit, follow and chain TAO jobs, AutoML included.")
    return {
        CLAUDE: {**common, "skills": [f"./skills/{s}" for s in skills], "mcpServers": f"./{MCP}"},
        MARKETPLACE: {"name": meta["name"], "owner": AUTHOR,
                      "metadata": {"description": meta["description"], "version": meta["version"]},
                      "plugins": [{"name": meta["name"], "source": "./", "description": summary,
                                   "version": meta["version"], "category": "machine-learning", "keywords": KEYWORDS}]},
        CODEX: {**common, "skills": "./skills/", "mcpServers": f"./{MCP}",
                "interface": {"displayName": "TAO Skill Bank", "shortDescription": meta["description"],
                              "longDescription": summary, "developerName": AUTHOR["name"], "category": "Coding",
                              "capabilities": ["Interactive", "Write"],
                              "defaultPrompt": ["Fine-tune RT-DETR on my COCO dataset (dry run first, tiny preset on CPU)",
                                                "Show the status, KPIs and ETA of my TAO training jobs",
                                                "Export the best checkpoint of my last train job to ONNX"]}},
        MCP: {"mcpServers": MCP_SERVER},
    }


def render() -> dict[str, str]:
    """Path -> file text (2-space JSON, trailing newline)."""
    return {path: json.dumps(data, indent=2) + "\n" for path, data in manifests().items()}


# --------------------------------------------------------------------------- validation
def _load(path: str, problems: list[str]) -> dict[str, Any]:
    try:
        data = json.loads((ROOT / path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{path}: missing; run `python tools/gen_plugin.py`")
        return {}
    except json.JSONDecodeError as exc:
        problems.append(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}: must be a JSON object")
        return {}
    return data


def _identity(path: str, data: dict[str, Any], problems: list[str]) -> None:
    """name (kebab-case), version (semantic), description (non-empty)."""
    if not isinstance(data.get("name"), str) or not KEBAB.match(data["name"]):
        problems.append(f"{path}: 'name' must be kebab-case (lowercase letters, digits, hyphens), got {data.get('name')!r}")
    if "version" in data and not (isinstance(data["version"], str) and SEMVER.match(data["version"])):
        problems.append(f"{path}: 'version' must be a semantic version (1.2.3), got {data.get('version')!r}")
    if not isinstance(data.get("description"), str) or not data["description"].strip():
        problems.append(f"{path}: 'description' must be a non-empty string")


def _relative(path: str, key: str, value: Any, problems: list[str]) -> bool:
    """A ``./`` path of the plugin that exists."""
    if not isinstance(value, str) or not value.startswith("./") or ".." in value.split("/"):
        problems.append(f"{path}: '{key}' must be a path inside the plugin starting with './', got {value!r}")
        return False
    if not (ROOT / value).exists():
        problems.append(f"{path}: '{key}' names {value}, which does not exist")
        return False
    return True


def _skill_problems(path: str, listed: list[str], problems: list[str]) -> None:
    """Every listed skill exists and keeps to the Agent Skills format; every skill is listed."""
    bank = skill_names()
    for name in listed:
        md = ROOT / "skills" / name / "SKILL.md"
        if not md.exists():
            problems.append(f"{path}: lists skill {name!r}, but skills/{name}/SKILL.md does not exist")
            continue
        problems += [f"skills/{name}/SKILL.md: {m}" for m in
                     agent_skill_problems(parse_front_matter(md.read_text(encoding="utf-8"), md), name)]
    problems += [f"{path}: skill {name!r} (skills/{name}/SKILL.md) is not listed" for name in bank if name not in listed]


def _mcp_problems(problems: list[str]) -> None:
    servers = _load(MCP, problems).get("mcpServers")
    server = servers.get("tao-skills") if isinstance(servers, dict) else None
    if not isinstance(server, dict) or server.get("command") != "tao-skills" or server.get("args") != ["mcp"]:
        problems.append(f"{MCP}: mcpServers must register 'tao-skills' as {json.dumps(MCP_SERVER['tao-skills'])}")


def validate() -> list[str]:
    """Every problem of the manifests on disk (empty: valid)."""
    problems: list[str] = []
    claude, market, codex = (_load(p, problems) for p in (CLAUDE, MARKETPLACE, CODEX))
    for path, data in ((CLAUDE, claude), (CODEX, codex)):
        if data:
            _identity(path, data, problems)
            _relative(path, "mcpServers", data.get("mcpServers"), problems)
    if claude:
        paths = claude.get("skills")
        if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("./skills/") for p in paths):
            problems.append(f"{CLAUDE}: 'skills' must list './skills/<name>' folders")
        else:
            _skill_problems(CLAUDE, [p[len("./skills/"):].rstrip("/") for p in paths], problems)
    if codex and _relative(CODEX, "skills", codex.get("skills"), problems):
        folder = ROOT / codex["skills"]
        _skill_problems(CODEX, sorted(p.parent.name for p in folder.glob("*/SKILL.md")), problems)
        if not isinstance((codex.get("interface") or {}).get("displayName"), str):
            problems.append(f"{CODEX}: 'interface.displayName' must be a string (the install surface shows it)")
    if market:
        _identity(MARKETPLACE, {"description": "-", **market}, problems)
        entries = market.get("plugins")
        if not isinstance(market.get("owner"), dict) or not market["owner"].get("name"):
            problems.append(f"{MARKETPLACE}: 'owner.name' is required")
        if not isinstance(entries, list) or not entries:
            problems.append(f"{MARKETPLACE}: 'plugins' must list the plugin")
        else:
            for entry in entries:
                _identity(MARKETPLACE, entry, problems)
                _relative(MARKETPLACE, "source", entry.get("source"), problems)
            if claude and claude.get("name") not in [e.get("name") for e in entries]:
                problems.append(f"{MARKETPLACE}: no plugin entry named {claude.get('name')!r} ({CLAUDE})")
    _mcp_problems(problems)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when a manifest is stale or invalid")
    args = parser.parse_args(argv)
    code = sync(render(), check=args.check, what="plugin manifests", tool="tools/gen_plugin.py")
    problems = validate()
    for p in problems:
        print(f"  {p}")
    return 1 if problems else code


if __name__ == "__main__":
    sys.exit(main())
