"""deploy/: the systemd unit passes systemd-analyze (verify, and security below a bound), the compose file validates
and splits the hello world over three hosts, and the image definition is small, non-root and has a health check.

Not here: building the image (its base comes from a container registry, which this suite's network namespace
cannot reach); README's "In a container" says how it was built and run by hand.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pumpkin import config as configuration
from tests.netns import CI

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
HELLO = ROOT / "seeds" / "helloworld"
#: systemd-analyze security's exposure score (0 = locked down, 10 = fully exposed); 1.5 when written.
MAX_EXPOSURE = 2.0


def tool(name: str) -> str:
    """The path of ``name``; skips where it is missing (a failure under CI=true: .ci/run installs it)."""
    path = shutil.which(name)
    if path is None:
        if CI:
            pytest.fail(f"CI=true but {name} is not installed (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return path


def directives(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit, with ExecStart pointing at this venv's pmk (verify checks that the command exists)."""
    pmk = Path(sys.executable).with_name("pmk")
    text = (DEPLOY / "pumpkin.service").read_text().replace("/opt/pumpkin/bin/pmk", str(pmk))
    path = tmp_path / "pumpkin.service"
    path.write_text(text)
    return path


def test_the_unit_verifies_and_is_hardened(unit: Path) -> None:
    analyze = tool("systemd-analyze")
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "pumpkin.service" not in r.stdout + r.stderr, r.stdout + r.stderr
    r = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)], capture_output=True, text=True, timeout=60
    )
    score = re.search(r"Overall exposure level for pumpkin.service: ([\d.]+)", r.stdout)
    assert score, r.stdout + r.stderr
    assert float(score.group(1)) <= MAX_EXPOSURE, r.stdout
    d = directives(unit.read_text())
    assert d["User"] == ["pumpkin"] and d["Restart"] == ["on-failure"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "StateDirectory": "pumpkin",
        "ConfigurationDirectory": "pumpkin",
    }.items():
        assert d[key] == [value], key
    assert set(d["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    start = d["ExecStart"][0].split()
    assert start[1:] == ["-c", "/etc/pumpkin/pumpkin.cfg", "--workdir", "/var/lib/pumpkin/node"]


def test_the_shipped_config_and_sysusers_file_are_valid() -> None:
    cfg = configuration.load(DEPLOY / "pumpkin.cfg", env={})
    assert cfg.endpoint.tcp_port == 7900 and cfg.discovery.bcport == 7700 and cfg.http.host == "127.0.0.1"
    assert (DEPLOY / "pumpkin.sysusers").read_text().splitlines()[-1].split()[:2] == ["u", "pumpkin"]


def test_the_compose_file_splits_the_hello_world_over_three_hosts() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert sorted(services) == ["extract", "greet", "inject"]
    for name, service in services.items():
        seed = service["command"][service["command"].index("--seed") + 1]
        assert seed == f"/usr/share/pumpkin/seeds/helloworld/{name}.py"
        assert (HELLO / f"{name}.py").exists()
        assert service["networks"] == ["lan"]
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert "lan" in compose["networks"]
    assert "COPY seeds/helloworld /usr/share/pumpkin/seeds/helloworld" in (DEPLOY / "Dockerfile").read_text()


def test_docker_compose_accepts_the_compose_file() -> None:
    compose = tool("docker-compose")  # Debian's docker-compose validates without a Docker daemon
    r = subprocess.run(
        [compose, "-f", str(DEPLOY / "compose.yaml"), "config", "-q"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_image_is_non_root_with_a_health_check_that_asks_the_daemon() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM "))]
    stage = lines[lines.index(final) :]
    user = [line.split()[1] for line in stage if line.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    health = next(i for i, line in enumerate(stage) if line.startswith("HEALTHCHECK"))
    assert '["pmk", "stats", "--timeout", "4"]' in " ".join(stage[health : health + 2])
    assert 'ENTRYPOINT ["pmk"]' in stage
    for line in lines:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
