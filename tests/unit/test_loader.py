from pathlib import Path

import pytest

from pumpkin import cli, loader

ROOT = Path(__file__).resolve().parents[2]
LEGACY = (ROOT / "seeds/helloworld/greet.py").read_text()


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_packaged_hello_world_loads_as_legacy_seeds():
    report = loader.load([ROOT / "seeds/helloworld"], "default")
    assert report.ok and sorted(s.name for s in report.seeds) == ["extract", "greet", "inject"]
    assert all(s.legacy for s in report.seeds)
    inject = next(s for s in report.seeds if s.name == "inject")
    assert inject.is_injector and not inject.is_extractor


def test_modern_class_and_decorated_function(tmp_path):
    write(
        tmp_path,
        "a.py",
        "from pumpkin import Seed\nclass Up(Seed):\n    '''Upper-case.'''\n"
        "    consumes = 'A'\n    emits = ['B', 'C']\n    workers = 3\n    def run(self, x):\n        return x\n",
    )
    write(tmp_path, "b.py", "from pumpkin import seed\n@seed(consumes='B')\ndef sink(x):\n    pass\n")
    report = loader.load([tmp_path], "g")
    assert report.ok
    up = next(s for s in report.seeds if s.name == "Up")
    assert [str(t) for t in up.outputs] == ["g:*:B", "g:*:C"] and up.workers == 3 and up.description == "Upper-case."
    assert next(s for s in report.seeds if s.name == "sink").is_extractor


def test_auto_load_false_is_skipped_unless_named(tmp_path):
    f = write(tmp_path, "greet.py", LEGACY.replace('"auto-load" : true', '"auto-load" : false'))
    report = loader.load([tmp_path], "default")
    assert report.ok and not report.seeds and report.skipped == [(f, "auto-load is false")]
    assert [s.name for s in loader.load([f], "default").seeds] == ["greet"]


def test_one_broken_seed_does_not_stop_the_others(tmp_path):
    write(tmp_path, "good.py", LEGACY)
    write(tmp_path, "badjson.py", LEGACY.replace('"object_poi": "my-greet-1234",', '"object_poi": "x"'))
    write(tmp_path, "noclass.py", "x = 1\n")
    seed_class = "from pumpkin import Seed\nclass S(Seed):\n    consumes = 'A'\n    def run(self, x): pass\n"
    write(tmp_path, "boom.py", "import no_such_module_here\n" + seed_class)
    write(tmp_path, "exits.py", "import sys\nsys.exit(3)\n" + seed_class)
    write(tmp_path, "interrupts.py", "from pumpkin import Seed\nclass I(Seed):\n    raise KeyboardInterrupt\n")
    write(tmp_path, "nostate.py", LEGACY.replace('"state" : "GREETING"', '"note": "x"'))
    write(
        tmp_path,
        "wrongname.py",
        LEGACY.replace('"object_name": "greet"', '"object_name": "nothere"')
        + "\nclass second(PmkSeed.Seed):\n    pass\n",
    )
    write(tmp_path, "norun.py", "from pumpkin import Seed\nclass N(Seed):\n    consumes = 'A'\n")
    write(
        tmp_path,
        "badtag.py",
        "from pumpkin import Seed\nclass N(Seed):\n    consumes = 'a b'\n    def run(self, x): pass\n",
    )
    report = loader.load([tmp_path], "default")
    assert [s.name for s in report.seeds] == ["greet"]
    errors = {p.name: why for p, why in report.errors}
    assert "manifest is not valid JSON" in errors["badjson.py"] and "badjson.py" in errors["badjson.py"]
    assert "noclass.py" not in errors and "not a seed" in dict((p.name, w) for p, w in report.skipped)["noclass.py"]
    assert "ModuleNotFoundError" in errors["boom.py"] and "Traceback" in errors["boom.py"]
    assert "importing the seed raised SystemExit: 3" in errors["exits.py"]
    assert "importing the seed raised KeyboardInterrupt" in errors["interrupts.py"]
    assert "has no 'state'" in errors["nostate.py"]
    assert "no class of that name derives PmkSeed.Seed" in errors["wrongname.py"]
    assert "defines no run()" in errors["norun.py"]
    assert "state tag" in errors["badtag.py"]


def test_duplicate_names_are_reported(tmp_path):
    write(tmp_path, "a.py", LEGACY)
    write(tmp_path, "b.py", LEGACY)
    report = loader.load([tmp_path], "default")
    assert len(report.seeds) == 1 and "already loaded" in report.errors[0][1]


def test_missing_path_and_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    report = loader.load([tmp_path / "nope", tmp_path / "empty"], "default")
    assert [why for _, why in report.errors] == ["no such file or folder", "the folder holds no seed files (*.py)"]


def test_inline_is_for_one_worker_of_a_consuming_seed(tmp_path):
    seed = (
        "from pumpkin import Seed\nclass S(Seed):\n    {decl}\n    inline = True\n{extra}    def run(self, *a): pass\n"
    )
    write(tmp_path, "ok.py", seed.format(decl="consumes = 'A'", extra=""))
    write(tmp_path, "injector.py", seed.format(decl="emits = 'A'", extra=""))
    write(tmp_path, "workers.py", seed.format(decl="consumes = 'A'", extra="    workers = 2\n"))
    report = loader.load([tmp_path / "ok.py"], "default")
    assert [(s.name, s.inline) for s in report.seeds] == [("S", True)]
    for name in ("injector.py", "workers.py"):
        errors = loader.load([tmp_path / name], "default").errors
        assert len(errors) == 1 and "'inline' is for a consuming seed with one worker" in errors[0][1], errors


def test_processes_is_for_a_consuming_seed_without_inline_or_workers(tmp_path):
    seed = (
        "from pumpkin import Seed\nclass S(Seed):\n    {decl}\n    processes = {n}\n{extra}"
        "    def run(self, *a): pass\n"
    )
    write(tmp_path, "ok.py", seed.format(decl="consumes = 'A'", n=3, extra=""))
    report = loader.load([tmp_path / "ok.py"], "default")
    assert [(s.processes, s.workers) for s in report.seeds] == [(3, 3)]
    bad = {
        "injector.py": seed.format(decl="emits = 'A'", n=2, extra=""),
        "inline.py": seed.format(decl="consumes = 'A'", n=2, extra="    inline = True\n"),
        "workers.py": seed.format(decl="consumes = 'A'", n=2, extra="    workers = 2\n"),
        "negative.py": seed.format(decl="consumes = 'A'", n=-1, extra=""),
    }
    for name, text in bad.items():
        write(tmp_path, name, text)
        errors = loader.load([tmp_path / name], "default").errors
        assert len(errors) == 1 and "'processes'" in errors[0][1], (name, errors)


BAD_SEEDS = """
from pumpkin import Seed
class Fine(Seed):
    consumes = "A"
    def run(self, x): pass
class NoConfig(Seed):
    consumes = "A"
    def __init__(self):
        raise ValueError("no config")
    def run(self, x): pass
class Exits(Seed):
    consumes = "A"
    def on_load(self):
        import sys
        sys.exit(4)
    def run(self, x): pass
"""


def test_seeds_check_makes_each_seed_and_names_the_ones_that_raise(tmp_path, capsys):
    f = write(tmp_path, "bad.py", BAD_SEEDS)
    legacy = write(tmp_path, "legacy.py", LEGACY.replace("PmkSeed.Seed.__init__(self, context, poi)", "1 / 0"))
    assert cli.main(["seeds", "check", str(f), str(legacy)]) == 1
    out = capsys.readouterr().out
    assert "ok       Fine:" in out and "ok       Exits:" in out  # on_load is not called by default
    assert f"error    {f}: seed NoConfig: __init__ raised ValueError: no config; a daemon would disable it" in out
    assert f"error    {legacy}: seed greet: __init__ raised ZeroDivisionError: division by zero" in out
    assert 'raise ValueError("no config")' in out  # the seed's traceback, without Pumpkin's own frames
    assert "runner.py" not in out and "on_load not called" in out
    assert out.strip().endswith("2 seed(s) ok, 0 skipped, 2 error(s)")
    assert cli.main(["seeds", "check", "--on-load", str(f)]) == 1
    out = capsys.readouterr().out
    assert "seed Exits: on_load raised SystemExit: 4" in out and "called its on_load, then its on_unload" in out
    assert out.strip().endswith("1 seed(s) ok, 0 skipped, 2 error(s)")
    assert cli.main(["seeds", "check", str(ROOT / "seeds/helloworld")]) == 0


def test_a_script_that_is_not_a_seed_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    write(tmp_path, "tracer_gen.py", f"open({str(marker)!r}, 'w').write('ran')\n")
    write(tmp_path, "helper.py", "class Seed:\n    pass\nclass NotOne:\n    pass\n")  # defines, derives nothing
    write(tmp_path, "good.py", LEGACY)
    report = loader.load([tmp_path], "default")
    assert [s.name for s in report.seeds] == ["greet"] and report.ok
    skipped = {p.name: why for p, why in report.skipped}
    assert set(skipped) == {"tracer_gen.py", "helper.py"} and "not run" in skipped["tracer_gen.py"]
    assert not marker.exists()


@pytest.mark.parametrize(
    "source",
    [
        "from pumpkin import Seed\nclass A(Seed):\n    consumes = 'X'\n    def run(self, x): pass\n",
        "import pumpkin\nclass A(pumpkin.Seed):\n    consumes = 'X'\n    def run(self, x): pass\n",
        "from pumpkin import Seed\nclass Base(Seed):\n    pass\nclass A(Base):\n    consumes = 'X'\n"
        "    def run(self, x): pass\n",
        "from mylib import Base\nclass A(Base):\n    consumes = 'X'\n",
        "from pumpkin import seed\n@seed(consumes='X')\ndef a(x):\n    return x\n",
    ],
)
def test_seeds_are_recognised_from_their_source(tmp_path, source):
    assert loader.looks_like_seed(source, tmp_path / "x.py")


def test_a_file_that_does_not_parse_is_an_error_and_not_run(tmp_path):
    write(tmp_path, "broken.py", "def (:\n")
    report = loader.load([tmp_path], "default")
    assert "not valid Python" in report.errors[0][1]
