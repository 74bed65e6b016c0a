"""The package's layers point only down, and no module imports another in a cycle.

Every import is read from the source (module level and function-local alike, so a lazy
import cannot hide an upward edge). A checkout's ``programs/``, ``signatures/`` and
``evals/`` are the installed ``clinsynth.programs``, ``clinsynth.signatures`` and
``clinsynth.evals`` (pyproject.toml), so they are read under those names.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "clinsynth": ROOT / "src" / "clinsynth",
    "clinsynth.signatures": ROOT / "signatures",
    "clinsynth.programs": ROOT / "programs",
    "clinsynth.evals": ROOT / "evals",
}
# Bottom to top: a module may import its own layer and the layers before it.
LAYERS = [
    # foundation: errors, paths, the environment, text tables, progress bars, hashes
    {"clinsynth", "clinsynth.errors", "clinsynth.paths", "clinsynth.env", "clinsynth.report",
     "clinsynth.progress", "clinsynth.fingerprint"},
    {"clinsynth.data"},  # records, task, taxonomy, rules, gold, corpus, privacy labels, mixes
    {"clinsynth.llm"},  # the LM boundary: the embedded model, the session and its privacy gate, meter, cost
    {"clinsynth.model"},  # the classifier: SetFit student, hybrid with the rules, metrics, predict, train
    {"clinsynth.jobs"},  # running work: retries, resume, the Ray engine, shared command-line options
    {"clinsynth.signatures"},  # DSPy signatures
    {"clinsynth.programs"},  # DSPy modules, optimizers, and the steps that run them (label, bronze, compile)
    {"clinsynth.evals"},  # eval suites and the cross-validated experiment
    {"clinsynth.app", "clinsynth.__main__"},  # the clinsynth command, the main job, check, init, review
]  # fmt: skip
GENERIC = ("programs", "signatures", "evals")


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            if name in known:
                out.add(name)
            elif name.split(".")[0] in GENERIC:
                out.add(name)  # a generic top-level name: reported by its own test
    return out


def layer_of(module: str) -> int:
    for rank in range(len(LAYERS) - 1, -1, -1):
        if any(module == p or module.startswith(p + ".") for p in LAYERS[rank] if p != "clinsynth"):
            return rank
    assert module.count(".") <= 1 and module in LAYERS[0], f"{module} belongs to no layer: add it to LAYERS"
    return 0


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: {d for d in imports(p, known) if d != m} for m, p in known.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
        for m, deps in edges.items()
        for d in deps
        if d in edges and layer_of(d) > layer_of(m)
    )


def cycles(edges: dict[str, set[str]]) -> list[str]:
    found, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for d in sorted(edges.get(m, ())):
            if d not in edges:
                continue
            if state.get(d) == "open":
                found.append(" -> ".join([*stack[stack.index(d):], d]))
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    return found


def test_every_import_points_down_or_sideways():
    upward = upward_imports(graph())
    assert not upward, "\n".join(upward)


def test_no_module_imports_itself_through_a_cycle():
    found = cycles(graph())
    assert not found, "\n".join(found)


def test_nothing_imports_a_generic_top_level_name():
    edges = graph()
    generic = sorted(f"{m} imports {d}" for m, deps in edges.items() for d in deps if d.split(".")[0] in GENERIC)
    assert not generic, "\n".join(generic)


def test_the_distribution_installs_only_clinsynth():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert all(p == "clinsynth" or p.startswith("clinsynth.") for p in setuptools["packages"])
    assert set(setuptools["package-dir"]) == set(FOLDERS)
    # every package folder is listed, so none is left out of a wheel
    listed = set(setuptools["packages"])
    for module, path in modules().items():
        if path.name == "__init__.py":
            assert module in listed, f"{module} ({path}) is missing from [tool.setuptools] packages"


def test_the_layer_test_sees_a_planted_upward_import(tmp_path, monkeypatch):
    """The checks above cannot pass vacuously: an upward import in a copied tree is reported."""
    low = tmp_path / "src" / "clinsynth" / "data"
    low.mkdir(parents=True)
    (low.parent / "__init__.py").write_text("")
    (low / "__init__.py").write_text("")
    (low / "records.py").write_text("from clinsynth.app import cli\n")
    app = low.parent / "app"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "cli.py").write_text("from clinsynth.data import records\n")
    monkeypatch.setitem(FOLDERS, "clinsynth", low.parent)
    for name in ("clinsynth.signatures", "clinsynth.programs", "clinsynth.evals"):
        monkeypatch.setitem(FOLDERS, name, tmp_path / "absent")
    edges = graph()
    assert "clinsynth.app.cli" in edges["clinsynth.data.records"]
    assert "clinsynth.data.records (layer 1) imports clinsynth.app.cli (layer 8)" in upward_imports(edges)
    assert cycles(edges) == ["clinsynth.app.cli -> clinsynth.data.records -> clinsynth.app.cli"]


def _environment_after(code: str) -> dict[str, str | None]:
    import json
    import os
    import subprocess
    import sys

    from clinsynth.env import OFFLINE_DEFAULTS

    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_DEFAULTS}
    script = f"import json, os\n{code}\nprint(json.dumps({{k: os.environ.get(k) for k in {list(OFFLINE_DEFAULTS)}}}))"
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_library_leaves_the_environment_alone():
    seen = _environment_after(
        "import clinsynth, clinsynth.programs, clinsynth.evals, clinsynth.signatures, clinsynth.app.cli"
    )
    assert seen == dict.fromkeys(seen)


def test_the_commands_set_the_offline_environment_before_loading_dspy():
    from clinsynth.env import OFFLINE_DEFAULTS

    # the clinsynth command (console script and python -m clinsynth)
    seen = _environment_after(
        "import sys\nfrom clinsynth.__main__ import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "assert 'dspy' in sys.modules"
    )
    assert seen == OFFLINE_DEFAULTS
    # python -m programs.X / evals.run from a checkout: the package is loaded first, as "programs"
    for package in ("programs", "evals"):
        code = f"import sys\nimport {package}\nassert 'dspy' not in sys.modules"
        assert _environment_after(code) == OFFLINE_DEFAULTS
