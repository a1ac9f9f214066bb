"""Finding, importing and validating seed files.

``load([paths], group)`` never raises for a bad seed: each file's problems go into the report with the
file's name and what to fix, and the other files load regardless.

A file is imported (which runs it) only when its source shows it is a seed: a ``###START-CONF`` manifest,
or, found by parsing it with ``ast``, a class deriving a ``Seed`` (or declaring ``consumes``/``emits``) or a
function decorated with ``@seed``. Any other file in a folder (a helper script such as the original's
``tracer_gen.py``) is reported as skipped and never run.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import logging
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from . import PmkSeed
from .errors import ManifestError, SeedLoadError
from .manifest import LegacyManifest, declared_joins, parse_declared, parse_legacy
from .seed import SEED_FAULTS, Seed, SeedSpec

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What loading found: seeds ready to run, files skipped on purpose, and files that failed."""

    seeds: list[SeedSpec] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    errors: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.errors


class NotASeed(Exception):
    """The file's source shows no seed: it is left alone, never imported."""


def seed_files(directory: Path) -> list[Path]:
    """The candidate seed files in ``directory`` (``*.py`` not starting with '_' or '.'), sorted."""
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith(("_", ".")) and p.is_file())


def load(paths: list[Path], group: str, explicit: bool = False) -> LoadReport:
    """Load every seed in ``paths`` (files or folders). ``explicit`` loads files even if auto-load is off."""
    report = LoadReport()
    seen: dict[str, Path] = {}
    for path in paths:
        if path.is_dir():
            files = seed_files(path)
            if not files:
                report.errors.append((path, "the folder holds no seed files (*.py)"))
        elif path.is_file():
            files = [path]
        else:
            report.errors.append((path, "no such file or folder"))
            continue
        for file in files:
            try:
                specs = load_file(file, group, explicit=explicit or path.is_file())
            except NotASeed as exc:
                report.skipped.append((file, str(exc)))
                continue
            except SeedLoadError as exc:
                report.errors.append((file, str(exc)))
                continue
            if not specs:
                report.skipped.append((file, "auto-load is false"))
            for spec in specs:
                if spec.name in seen:
                    report.errors.append(
                        (file, f"a seed named {spec.name!r} was already loaded from {seen[spec.name]}")
                    )
                    continue
                seen[spec.name] = file
                report.seeds.append(spec)
    return report


def load_file(path: Path, group: str, explicit: bool = False) -> list[SeedSpec]:
    """The seeds in one file; an empty list when auto-load keeps it back; SeedLoadError says what is wrong."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedLoadError(f"{path}: cannot read the file: {exc}") from None
    try:
        manifest = parse_legacy(source, group)
    except ManifestError as exc:
        raise SeedLoadError(f"{path}: bad manifest: {exc}") from None
    if manifest is not None and not manifest.auto_load and not explicit:
        return []
    if manifest is None and not looks_like_seed(source, path):
        raise NotASeed(
            f"not a seed (no {'###START-CONF'} manifest, no Seed class or @seed function in its source): not run"
        )
    module = _import(path)
    if manifest is not None:
        return [_legacy_spec(module, manifest, path)]
    specs = _modern_specs(module, path, group)
    if not specs:
        raise SeedLoadError(
            f"{path}: found nothing that looks like a seed: define a class deriving pumpkin.Seed (or use "
            f"@pumpkin.seed), or a legacy class deriving PmkSeed.Seed with a {'###START-CONF'} manifest"
        )
    kept = [s for s in specs if explicit or getattr(s.factory, "auto_load", True)]
    return kept


def _import(path: Path) -> ModuleType:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    name = f"pumpkin_seed_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SeedLoadError(f"{path}: Python cannot import this file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SEED_FAULTS as exc:  # a broken seed (even one calling sys.exit()) is reported, never fatal
        sys.modules.pop(name, None)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        raise SeedLoadError(f"{path}: importing the seed raised {type(exc).__name__}: {exc}\n{tb}") from None
    return module


def _legacy_spec(module: ModuleType, manifest: LegacyManifest, path: Path) -> SeedSpec:
    classes = [
        c for c in vars(module).values() if inspect.isclass(c) and issubclass(c, PmkSeed.Seed) and c is not PmkSeed.Seed
    ]
    chosen = next((c for c in classes if c.__name__ == manifest.name), None)
    if chosen is None and len(classes) == 1:
        chosen = classes[0]
    if chosen is None:
        found = ", ".join(c.__name__ for c in classes) or "none"
        raise SeedLoadError(
            f"{path}: the manifest names object_name {manifest.name!r} but no class of that name derives "
            f"PmkSeed.Seed (classes deriving it: {found})"
        )
    return SeedSpec(
        name=manifest.name,
        inputs=manifest.inputs,
        outputs=manifest.outputs,
        joins=manifest.joins,
        factory=chosen,
        path=path,
        legacy=True,
        description=manifest.description,
        manifest=manifest.raw,
    )


def _modern_specs(module: ModuleType, path: Path, group: str) -> list[SeedSpec]:
    specs = []
    for cls in vars(module).values():
        if not (inspect.isclass(cls) and issubclass(cls, Seed) and cls is not Seed):
            continue
        if cls.__module__ != module.__name__ or not (cls.consumes or cls.emits):
            continue  # imported from elsewhere, or an abstract base of the file's seeds
        name = cls.name or cls.__name__
        where = f"{path}: seed {name!r}"
        try:
            inputs = parse_declared(cls.consumes, group, "consumes")
            outputs = parse_declared(cls.emits, group, "emits")
            joins = declared_joins(cls.consumes, group)
        except ManifestError as exc:
            raise SeedLoadError(f"{where}: {exc}") from None
        if cls.run is Seed.run:
            raise SeedLoadError(f"{where}: the class defines no run() method")
        if not isinstance(cls.workers, int) or cls.workers < 1:
            raise SeedLoadError(f"{where}: 'workers' must be a whole number >= 1, not {cls.workers!r}")
        if cls.every_s is not None and (not isinstance(cls.every_s, (int, float)) or cls.every_s <= 0):
            raise SeedLoadError(f"{where}: 'every_s' must be a positive number of seconds, not {cls.every_s!r}")
        processes = cls.processes
        if not isinstance(processes, int) or processes < 0:
            raise SeedLoadError(f"{where}: 'processes' must be a whole number >= 0, not {processes!r}")
        if processes and (not inputs or cls.inline or cls.workers != 1):
            raise SeedLoadError(
                f"{where}: 'processes' is for a consuming seed, without 'inline' or 'workers' (each process is one)"
            )
        if cls.inline and (not inputs or cls.workers != 1):
            raise SeedLoadError(f"{where}: 'inline' is for a consuming seed with one worker (it runs on the loop)")
        if cls.durable and inputs:
            raise SeedLoadError(
                f"{where}: 'durable' is for injectors (what a consuming seed makes is covered by its input's custody)"
            )
        if cls.every_s is not None and inputs:
            raise SeedLoadError(f"{where}: 'every_s' is for injectors, but the seed consumes {inputs[0]}")
        specs.append(
            SeedSpec(
                name=name,
                inputs=inputs,
                outputs=outputs,
                joins=joins,
                factory=cls,
                path=path,
                legacy=False,
                workers=processes or cls.workers,
                processes=processes,
                every_s=cls.every_s,
                inline=bool(cls.inline),
                durable=bool(cls.durable),
                description=(cls.__doc__ or "").strip().split("\n")[0],
            )
        )
    return specs


def looks_like_seed(source: str, path: Path) -> bool:
    """True when parsing ``source`` (never running it) finds a class deriving a ``Seed`` or declaring
    ``consumes``/``emits``, or a function decorated with ``@seed``. SeedLoadError when it does not parse."""
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError) as exc:
        raise SeedLoadError(f"{path}: not valid Python, so not imported: {exc}") from None
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    seeds: set[str] = set()
    changed = True
    while changed:  # a class deriving a seed class of the same file is one too
        changed = False
        for cls in classes:
            if cls.name not in seeds and (
                any(_last_name(b) == "Seed" or _last_name(b) in seeds for b in cls.bases) or _declares_states(cls)
            ):
                seeds.add(cls.name)
                changed = True
    if seeds:
        return True
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    decorators = [d.func if isinstance(d, ast.Call) else d for f in functions for d in f.decorator_list]
    return any(_last_name(d) == "seed" for d in decorators)


def _last_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _declares_states(cls: ast.ClassDef) -> bool:
    for stmt in cls.body:
        targets: list[ast.expr] = []
        if isinstance(stmt, ast.Assign):
            targets = stmt.targets
        elif isinstance(stmt, ast.AnnAssign):
            targets = [stmt.target]
        if any(isinstance(t, ast.Name) and t.id in ("consumes", "emits") for t in targets):
            return True
    return False
