"""One seed folder in ``pmk sim`` and on real namespace hosts: the same outputs at the sink."""

from __future__ import annotations

from pathlib import Path

from pumpkin import simrun
from tests.multihost.conftest import FAST

HELLO = Path(__file__).resolve().parents[2] / "seeds" / "helloworld"


def test_the_hello_world_over_three_hosts_prints_what_the_simulation_prints(hosts):
    scenario = {
        "duration": 10,
        "nodes": {"A": [HELLO / "inject.py"], "B": [HELLO / "greet.py"], "C": [HELLO / "extract.py"]},
        "inject": [{"node": "A", "seed": "inject", "count": 1}],
    }
    simulated = {line for r in simrun.run(scenario).history.notes("printed") for line in r.data["text"].splitlines()}
    assert simulated == {"Greeting: Hello World"}
    c = hosts.pmk("C", "--seed", str(HELLO / "extract.py"), *FAST)
    hosts.pmk("B", "--seed", str(HELLO / "greet.py"), *FAST)
    hosts.pmk("A", "--seed", str(HELLO / "inject.py"), *FAST)
    c.wait_for("Greeting: Hello World", 30)
    real = {line.strip() for line in c.out if line.strip().startswith("Greeting:")}
    assert real == simulated
