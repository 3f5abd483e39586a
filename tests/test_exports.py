"""Every public function and class of a chapter package that another module or a notebook uses is
reachable from the package itself (issue 16): listed in its __init__'s __all__ and bound there to the very
object its module defines, so `from labcore.<chapter> import name` is the one way in."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ("autodeco", "kda", "hybrid", "calm", "rae", "thinkmorph")


def public_defs(chapter: str) -> dict[str, set[str]]:
    """submodule -> names of its top-level public functions and classes."""
    out = {}
    for f in sorted((ROOT / "labcore" / chapter).glob("*.py")):
        if f.name != "__init__.py":
            body = ast.parse(f.read_text(), str(f)).body
            out[f.stem] = {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                           and not n.name.startswith("_")}
    return out


def outside_uses(chapter: str) -> dict[str, set[str]]:
    """name -> files outside labcore/<chapter>/ (labcore, kernels, notebooks) that use it, either as
    `from labcore.<chapter>.<module> import name` or as `<module>.name` after importing the module."""
    defs, pkg = public_defs(chapter), f"labcore.{chapter}"
    files = [*(ROOT / "labcore").rglob("*.py"), *(ROOT / "kernels").rglob("*.py"), *(ROOT / "notebooks").glob("*.py")]
    uses: dict[str, set[str]] = {}
    for f in files:
        if f.parent == ROOT / "labcore" / chapter:
            continue
        tree, alias = ast.parse(f.read_text(), str(f)), {}
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith(pkg + "."):
                sub = n.module[len(pkg) + 1:]
                for a in n.names:
                    if a.name in defs.get(sub, ()):
                        uses.setdefault(a.name, set()).add(str(f.relative_to(ROOT)))
            elif isinstance(n, ast.ImportFrom) and n.module == pkg:
                alias |= {a.asname or a.name: a.name for a in n.names if a.name in defs}
            elif isinstance(n, ast.Import):
                alias |= {a.asname: a.name[len(pkg) + 1:] for a in n.names
                          if a.asname and a.name[len(pkg) + 1:] in defs and a.name.startswith(pkg + ".")}
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in alias \
                    and n.attr in defs[alias[n.value.id]]:
                uses.setdefault(n.attr, set()).add(str(f.relative_to(ROOT)))
    return uses


def test_scanner_sees_both_forms():
    assert "notebooks/02_kda.py" in outside_uses("kda")["init_A_log"]  # from labcore.kda.gate import ...
    assert "notebooks/01_autodeco.py" in outside_uses("autodeco")["train_heads"]  # ex.train_heads(...)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_used_names_are_exported(chapter):
    pkg = importlib.import_module(f"labcore.{chapter}")
    exported = set(getattr(pkg, "__all__", ()))
    missing = {name: sorted(fs) for name, fs in outside_uses(chapter).items() if name not in exported}
    assert not missing, f"used outside labcore/{chapter}/ but not in labcore.{chapter}.__all__: {missing}"
    defs = public_defs(chapter)
    for name in exported:
        assert hasattr(pkg, name), f"labcore.{chapter}.__all__ lists {name!r}, which the package lacks"
        home = [m for m, names in defs.items() if name in names]
        if home:  # bound to the defining module's object, not a same-named one from elsewhere
            mod = importlib.import_module(f"labcore.{chapter}.{home[0]}")
            assert getattr(pkg, name) is getattr(mod, name), (chapter, name)
