"""The original seed API (PmkSeed.Seed and its context), called as the original's seeds call it (pure, no daemon)."""

from __future__ import annotations

import io
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

import pumpkin
from pumpkin import PmkSeed, legacy, tags
from pumpkin.packet import IdMaker, Packet
from pumpkin.seed import MAX_REMEMBERED_STATES, SeedSpec

MANIFEST = {
    "object_name": "worker",
    "parameters": [{"name": "x", "type": "String", "state": "RAW"}],
    "return": [{"name": "y", "type": "String", "state": "DONE|SKIP"}],
}


class worker(PmkSeed.Seed):  # noqa: N801 - the original's naming
    def __init__(self, context: Any, poi: Any = None) -> None:
        PmkSeed.Seed.__init__(self, context, poi)
        self.wd = context.getWorkingDir()  # the context works in __init__
        self.group = context.get_group()


def make(tmp_path: Path) -> tuple[Any, list[tuple[Any, ...]], legacy.LegacyEnv]:
    spec = SeedSpec(
        "worker",
        (tags.parse("String:RAW"),),
        (tags.parse("String:DONE"), tags.parse("String:SKIP")),
        worker,
        None,
        True,
        manifest=dict(MANIFEST),
    )
    env = legacy.LegacyEnv(tmp_path / "work", "default", "node-1", "5eed0000")
    legacy.prepare_workdir(env.root, [])
    ctx = legacy.LegacyContext(spec, env)
    sent: list[tuple[Any, ...]] = []
    ctx.emit = lambda state, data, **kw: sent.append(("outside", state, data, kw))
    seed = worker(ctx, "poi")
    seed.conf = spec.manifest
    return seed, sent, env


def running(seed: Any, env: legacy.LegacyEnv, data: Any, header: dict[str, Any] | None = None) -> tuple[Any, list]:
    """Call ``run``-time code with a packet, as the runner does; what it emitted."""
    got: list[tuple[Any, ...]] = []
    packet = Packet(IdMaker("5eed0000").root(), tags.parse("String:RAW"), data, meta={"legacy_header": header or {}})
    view = legacy.view_of(packet, "worker", env)
    emit = lambda s, d, **kw: got.append((s, d, kw))  # noqa: E731
    seed._pmk_tls.run = legacy.RunState(emit, view[0]["container"], "x", own_ship=packet.id.split(":")[0])
    return view, got


def test_the_context_and_the_star_import_give_what_the_originals_seeds_used(tmp_path):
    seed, _, env = make(tmp_path)
    assert seed.wd == str(env.root) + "/" and seed.group == "default" and seed.getpoi() == "poi"
    assert seed.context.getFileDir() == seed.wd + "tx/" and Path(seed.wd, "tx").is_dir()
    assert seed.get_group() == "default" and seed.get_fullname() == "default:worker"
    ns: dict[str, Any] = {}
    exec("from pumpkin import *", ns)  # noqa: S102 - what every original seed starts with
    for name in ("time", "os", "json", "threading", "shutil", "copy", "TRACER_BIT", "FORCE_BIT", "PmkSeed", "nx"):
        assert name in ns, name
    assert ns["TRACK_BIT"] == 2 and ns["Seed"] is pumpkin.Seed


def test_text_data_is_the_string_and_the_originals_list_of_inputs():
    one = legacy.run_argument("30")
    assert one[0] == "30" and "x" + one == "x30" and one.split("0") == ["3", ""] and one[1:] == "0"
    two = legacy.run_argument("0.3|,|job3")
    assert (two[0], two[1], two.parts) == ("0.3", "job3", ["0.3", "job3"])
    with pytest.raises(IndexError):
        one[1]
    assert legacy.run_argument(None) == [] and legacy.run_argument([1, 2]) == [1, 2]


def test_dispatch_returns_the_packet_and_honours_type_and_stop_func(tmp_path):
    seed, _, env = make(tmp_path)
    view, got = running(seed, env, "a")
    sent = seed.dispatch(view, "done a", "DONE")
    assert (
        sent[0]["last_func"] == "worker" and sent[0]["c_tag"] == "default:String:DONE" and sent[-1]["data"] == "done a"
    )
    assert view[-2]["data"] == "a"  # the caller's packet is left as it was
    assert got == [
        ("default:String:DONE", "done a", {"forked": False, "header": legacy.carried_header(sent[0], "5eed0000")})
    ]
    assert seed.dispatch(view, "built", "SKIP", dispatch=False)[-1]["data"] == "built" and len(got) == 1
    view, got = running(seed, env, "b", {"stop_func": "worker", "ttl": "D"})
    assert seed.dispatch(view, "x", "DONE") is None and got == [] and seed.is_final(view)
    assert view[0]["ttl"] == "D" and seed.get_last_stag(view) == "RAW" and seed.get_pkt_data(view) == "b"


def test_the_packet_dispatch_returns_shares_nothing_with_the_callers(tmp_path):
    seed, _, env = make(tmp_path)
    view, _ = running(seed, env, {"rows": [[1, 2], {"k": "v"}]}, {"notes": ["seen"], "aux": 0})
    sent = seed.dispatch(view, "x", "DONE")
    view[0]["notes"].append("later")  # the caller changes its packet after dispatching it
    view[-2]["data"]["rows"][0].append(3)
    view[-2]["data"]["rows"][1]["k"] = "changed"
    assert sent[0]["notes"] == ["seen"] and sent[-2]["data"] == {"rows": [[1, 2], {"k": "v"}]}
    sent[0]["aux"] = 5  # ... and the other way round
    assert view[0]["aux"] == 0


def test_an_undeclared_state_or_type_raises_and_is_recorded_for_the_router(tmp_path):
    seed, _, env = make(tmp_path)
    view, got = running(seed, env, "a")
    with pytest.raises(PmkSeed.UndeclaredState, match="ELSEWHERE"):
        seed.dispatch(view, "x", "ELSEWHERE")
    with pytest.raises(PmkSeed.UndeclaredState):
        seed.dispatch(view, "x", "DONE", type="Number")
    assert [g[0] for g in got] == ["default:String:ELSEWHERE", "default:Number:DONE"]


def test_fork_dispatch_is_a_new_lineage_and_re_dispatch_sends_the_input_again(tmp_path):
    seed, _, env = make(tmp_path)
    view, got = running(seed, env, "a")
    seed.fork_dispatch(view, "f", "DONE")
    seed.broadcast(view, "b", "DONE")
    seed.dispatch(seed.duplicate_pkt_new_container(view), "d", "DONE")
    assert [g[2]["forked"] for g in got] == [True, True, True]
    seed.re_dispatch(view)
    assert got[-1][1] == "a" and got[-1][2]["again"] is True


def test_dispatch_outside_run_goes_out_as_an_injection(tmp_path):
    seed, sent, _ = make(tmp_path)
    t = threading.Thread(target=lambda: seed.dispatch(seed._blankpacket() + [{}], "late", "DONE"))
    t.start()
    t.join()
    assert sent[0][:3] == ("outside", "default:String:DONE", "late") and sent[0][3]["forked"] is True


def test_file_helpers_work_in_the_working_directory(tmp_path):
    seed, _, env = make(tmp_path)
    wd = seed.wd
    (env.root / "sample.txt").write_text("7")
    moved = seed.move_data_file("sample.txt", "/out_data/s1")
    assert Path(moved).read_text() == "7" and Path(moved) == env.root / "out_data/s1/sample.txt"
    tar = seed._tar_to_gz("/out_data/s1", suffix="001")
    assert tar.endswith("out_data/s1-001.tar.gz") and seed.ifFile("file://" + tar)
    prot, path, name, apath, rpath = seed.fileparts("file://" + tar)
    assert (prot, name, apath) == ("file", "s1-001.tar.gz", tar) and rpath == "/out_data/s1-001.tar.gz"
    members = seed._untar_to_wd(apath, destination=wd + "runs/")
    assert [m.name for m in members] == ["s1", "s1/sample.txt"] and (env.root / "runs/s1/sample.txt").read_text() == "7"
    (env.root / "extra.csv").write_text("x")
    out = seed._add_to_tar("extra.csv", "out_data/s1-001.tar.gz", rename="bigger")
    with tarfile.open(out) as t:
        assert sorted(t.getnames()) == ["s1", "s1/extra.csv", "s1/sample.txt"]
    (tmp_path / "outside.txt").write_text("o")
    assert seed.copy_file_to_wd(str(tmp_path / "outside.txt")) == "outside.txt" and Path(wd + "outside.txt").exists()
    assert seed.get_relative_path("/data/x") == "./data/x"


def test_an_archive_cannot_write_outside_its_destination(tmp_path):
    seed, _, env = make(tmp_path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    (env.root / "evil.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(tarfile.TarError):
        seed._untar_to_wd("evil.tar.gz")
    assert not (tmp_path / "escaped.txt").exists()


def test_the_taskdirs_other_files_are_copied_into_the_working_directory(tmp_path):
    task = tmp_path / "task"
    (task / "nltk_data" / "corpora").mkdir(parents=True)
    (task / "nltk_data" / "corpora" / "english").write_text("the\n")
    (task / "seed.py").write_text("x = 1\n")
    (task / "model.sh").write_text("#!/bin/sh\n")
    (task / "model.sh").chmod(0o755)
    root = tmp_path / "work"
    assert legacy.prepare_workdir(root, [task]) == []
    assert (root / "nltk_data/corpora/english").read_text() == "the\n" and not (root / "seed.py").exists()
    assert (root / "model.sh").stat().st_mode & 0o111 and (root / "logs").is_dir()
    assert legacy.prepare_workdir(root, [task]) == []  # again: kept as it is


def test_track_get_stat_and_the_no_op_acks(tmp_path, caplog):
    seed, _, env = make(tmp_path)
    with caplog.at_level("INFO"):
        seed.track({"ship_id": "s"})
    assert "track: " in caplog.text
    view, got = running(seed, env, "a", {"aux": pumpkin.TRACK_BIT})
    with caplog.at_level("INFO"):
        seed.dispatch(view, "t", "DONE")
    assert caplog.text.count("track: ") == 2
    assert seed.ack_pkt(view) is None and seed.is_duplicate(view) is False
    assert '"host_id": "node-1"' in seed.context.get_stat()


def test_pre_run_can_skip_a_packet_and_error_finalize_only_mark_the_header(tmp_path):
    seed, _, env = make(tmp_path)
    ran: list[Any] = []
    seed.run = lambda pkt, data: ran.append(data)
    seed.pre_run = lambda pkt, args: args != ("skip",)
    packet = Packet(IdMaker("5eed0000").root(), tags.parse("String:RAW"), "skip")
    legacy.invoke(seed, seed.context.spec, env, packet, lambda *a, **k: None)
    packet.data = "go"
    legacy.invoke(seed, seed.context.spec, env, packet, lambda *a, **k: None)
    assert ran == ["go"]
    view, got = running(seed, env, "a")
    seed.error(view, "bad")
    assert view[0]["state"] == "ERROR" and view[-1]["data"] == "bad"
    seed.finalize(view, "end")
    assert view[0]["state"] == "DONE" and got == []


def test_without_type_a_state_the_manifest_returns_under_another_type_is_found(tmp_path):
    seed, _, env = make(tmp_path)
    seed.context.spec = SeedSpec(
        "worker",
        (tags.parse("String:RAW"),),
        (tags.parse("String:DONE"), tags.parse("Int:COUNT")),
        worker,
        None,
        True,
    )
    view, got = running(seed, env, "a")
    assert seed.dispatch(view, 3, "COUNT")[0]["c_tag"] == "default:Int:COUNT" and got[0][0] == "default:Int:COUNT"


class echo(PmkSeed.Seed):  # noqa: N801 - the original's naming; split and merge as its examples/echo
    def split(self, pkt: Any, data: Any) -> bool:
        n = 0
        for n, ch in enumerate(data, 1):
            self.dispatch(self.fragment_pkt(pkt, n), ch, "RAW", type="String")  # RAW: not a return state
        self.dispatch(self.last_fragment_pkt(pkt, n + 1), str(n), "RAW", type="String")
        return True

    def merge(self, pkt: Any, data: Any) -> None:
        self.merged = [*getattr(self, "merged", []), (self.get_fragment_id(pkt), self.get_pkt_data(pkt), data)]
        if self.is_last_fragment(pkt):
            self.dispatch(self.clean_header(pkt), "".join(d for _, d, _ in self.merged[:-1]), "DONE")


def test_split_dispatches_fragments_and_merge_gets_each_result_in_order(tmp_path):
    from pumpkin import gather, splitmerge
    from pumpkin.runner import Emission

    _, _, env = make(tmp_path)
    spec = SeedSpec(
        "echo",
        (tags.parse("String:RAW"),),
        (tags.parse("String:DONE"),),
        echo,
        None,
        True,
        manifest={**MANIFEST, "object_name": "echo"},
    )
    seed = echo(legacy.LegacyContext(spec, env), None)
    seed.conf = spec.manifest
    packet = Packet(IdMaker("5eed0000").root(), tags.parse("String:RAW"), "ab")
    got: list[Emission] = []
    splitmerge.invoke(spec, seed, packet, 1, True, got.append, env)
    assert [(e.state, e.data, e.fragment) for e in got] == [
        ("default:String:RAW", "a", ("1", False)),
        ("default:String:RAW", "b", ("2", False)),
        ("default:String:RAW", "2", ("3", True)),
    ]
    marks = [{"no": n, "last": last} for n, last in (("1", False), ("2", False), ("3", True))]
    meta = {
        gather.GATHERED: {
            "kind": gather.MERGE,
            "seed": "echo",
            "labels": [m["no"] for m in marks],
            "last": [m["last"] for m in marks],
            "states": ["default:String:DONE"] * 3,
        }
    }
    merged = Packet(IdMaker("5eed0000").root(), tags.parse("String:RAW"), ["A", "B", "2"], meta=meta)
    got.clear()
    splitmerge.invoke(spec, seed, merged, 1, True, got.append, env)
    assert seed.merged == [(1, "A", "A"), (2, "B", "B"), (3, "2", "2")]
    assert [(e.state, e.data, e.fragment) for e in got] == [("default:String:DONE", "AB", None)]
    assert got[0].header is not None and got[0].header["fragment"] == "0"


def test_output_for_finds_a_declared_state_however_written_and_remembers_a_bounded_number(tmp_path):
    spec = make(tmp_path)[0].context.spec
    done = tags.parse("String:DONE")
    for asked in ("default:String:DONE", "String:DONE", "DONE", "DONE"):
        assert spec.output_for(asked) == done
    assert spec.output_for("NOPE") is None and spec.output_for("default:Int:DONE") is None
    for i in range(MAX_REMEMBERED_STATES + 50):  # a seed inventing states: answered, not all kept
        assert spec.output_for(f"NEW{i}") is None
    assert len(spec._outputs_by_state) == MAX_REMEMBERED_STATES
    assert spec.output_for("SKIP") == tags.parse("String:SKIP")  # past the bound: still the right answer


# -- AND-joins in the original's format ---------------------------------------------------------------------

JOIN_MANIFEST = {
    "object_name": "barrier",
    "parameters": [{"name": "pair", "type": "Text", "state": "LEFT&RIGHT"}],
    "return": [{"name": "both", "type": "Text", "state": "BOTH"}],
}


class barrier(PmkSeed.Seed):  # noqa: N801
    """As the original's tracula: ``run(self, pkt, data)`` once per packet, its own barrier per ship."""

    def __init__(self, context: Any, poi: Any = None) -> None:
        PmkSeed.Seed.__init__(self, context, poi)
        self.seen: list[tuple[str, str, str]] = []
        self.waiting: dict[str, dict[str, str]] = {}

    def run(self, pkt: Any, data: Any) -> None:
        ship, stag = self.get_ship_id(pkt), self.get_last_stag(pkt)
        self.seen.append((stag, str(data), pkt[0]["c_tag"]))
        parts = self.waiting.setdefault(ship, {})
        parts[stag] = str(data)
        if len(parts) == 2:
            del self.waiting[ship]
            self.dispatch(pkt, parts["LEFT"] + "+" + parts["RIGHT"], "BOTH")


class pair(barrier):  # noqa: N801
    """Written for this framework: one value per state of the join, once per lineage."""

    def run(self, pkt: Any, left: Any, right: Any) -> None:  # type: ignore[override]
        self.seen.append(("both", f"{left}+{right}", pkt[0]["c_tag"]))
        self.dispatch(pkt, f"{left}+{right}", "BOTH")


@pytest.mark.parametrize("kind", [barrier, pair])
def test_a_legacy_join_seed_gets_each_part_when_its_run_takes_one_value_else_all_at_once(tmp_path, kind):
    from pumpkin import splitmerge
    from pumpkin.gather import joined
    from pumpkin.runner import Emission

    join = (tags.parse("Text:LEFT"), tags.parse("Text:RIGHT"))
    spec = SeedSpec(
        kind.__name__, join, (tags.parse("Text:BOTH"),), kind, None, True, manifest=dict(JOIN_MANIFEST), joins=(join,)
    )
    env = legacy.LegacyEnv(tmp_path / "work", "default", "node-1", "5eed0000")
    legacy.prepare_workdir(env.root, [])
    seed = kind(legacy.LegacyContext(spec, env), "poi")
    ids = IdMaker("5eed0000")
    parts = [
        Packet(ids.root(), join[0], "L", meta={"legacy_header": {"ship": "patient_X", "c_tag": "from-left"}}),
        Packet(ids.root(), join[1], "R", meta={"legacy_header": {"ship": "patient_X", "c_tag": "from-right"}}),
    ]
    made = joined(spec.name, ("LEFT", "RIGHT"), parts)
    emitted: list[Emission] = []
    splitmerge.invoke(spec, seed, made, 0, False, emitted.append, env)
    if kind is barrier:  # each part in turn, as it came: its state, its data, its own header
        assert seed.seen == [("LEFT", "L", "from-left"), ("RIGHT", "R", "from-right")]
    else:
        assert seed.seen == [("both", "L+R", "from-left")]
    assert [(e.state, e.data) for e in emitted] == [("default:Text:BOTH", "L+R")]


def test_a_ship_the_packet_was_given_is_what_seeds_see_and_travels_on_with_what_they_dispatch(tmp_path):
    seed, _, env = make(tmp_path)
    view, got = running(seed, env, "scan", {"ship": "patient_X", "ttl": "D"})  # as a .pkt names it
    assert seed.get_ship_id(view) == "patient_X"
    seed.dispatch(view, "done", "DONE")
    seed.fork_dispatch(view, "forked", "DONE")
    assert [kw["header"]["ship"] for _, _, kw in got] == ["patient_X", "patient_X"]  # the original kept it too
    view, got = running(seed, env, "plain")  # no ship given: its id's, which is not carried (nor a lineage)
    assert seed.get_ship_id(view) == "5eed0000"
    seed.dispatch(view, "done", "DONE")
    assert "ship" not in got[0][2]["header"]
