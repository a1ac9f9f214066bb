"""Files between two namespace hosts: the original's file:// form, pumpkin.File, and a link cut mid-transfer."""

from __future__ import annotations

import re
import subprocess
import time

from tests.helpers import wait_until
from tests.multihost.conftest import FAST, SEEDS

FILES = SEEDS / "files"
CHUNK = 1 << 20


def nft(lan, host: str, script: str) -> None:  # type: ignore[no-untyped-def]
    subprocess.run(["ip", "netns", "exec", lan.ns(host), "nft", "-f", "-"], input=script, text=True, check=True)


def nft_delete(lan, host: str, table: str) -> None:  # type: ignore[no-untyped-def]
    subprocess.run(["ip", "netns", "exec", lan.ns(host), "nft", "delete", "table", "ip", table], capture_output=True)


def test_legacy_and_modern_files_move_to_the_host_of_the_next_seed(hosts, lan, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = {"FILES_LEGACY_DIR": str(out), "FILES_OUT": str(out / "blob.bin"), "FILES_SIZE": str(3 * CHUNK + 77)}
    b = hosts.pmk("B", "--seed", str(FILES / "receiver.py"), "--seed", str(FILES / "check.py"), *FAST)
    b.wait_for("Seed loaded: CheckFile", stream="err")
    a = hosts.pmk("A", "--seed", str(FILES / "producer.py"), "--seed", str(FILES / "make.py"), *FAST, env=env)
    a.wait_for("made blob.bin")
    b.wait_for("FILE DATA FROM: file://", timeout_s=30)
    b.wait_for("got blob.bin", timeout_s=30)
    legacy = next(line for line in b.out if line.startswith("FILE DATA FROM"))
    assert legacy.endswith("/testfile.txt: some data for the receiver")
    assert f"file://{b.workdir}/files/" in legacy  # type: ignore[attr-defined]  # on B's own disk
    made = next(line for line in a.out if line.startswith("made ")).split()
    got = next(line for line in b.out if line.startswith("got ")).split()
    assert got[1:4] == made[1:4]  # name, size, sha256
    assert got[4].startswith(f"{b.workdir}/files/")  # type: ignore[attr-defined]
    # Both copies go once the receiver's seed has run (its ACK reaches A).
    stores = [p.workdir / "files" for p in (a, b)]  # type: ignore[attr-defined]
    wait_until(lambda: not any(any(s.iterdir()) for s in stores), 15, interval_s=0.1, what="both copies removed")


def test_a_link_cut_mid_transfer_resumes_and_the_file_arrives_whole(hosts, lan, tmp_path):
    chunks = 40
    env = {"FILES_OUT": str(tmp_path / "big.bin"), "FILES_SIZE": str(chunks * CHUNK)}
    b_ip = lan.ip("B")
    # Slow A -> B down to a few MB/s so that the cut lands mid-transfer.
    nft(
        lan,
        "A",
        f"table ip pmkrate {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n"
        f"  ip daddr {b_ip} tcp sport != 22 limit rate over 6 mbytes/second drop\n }}\n}}\n",
    )
    try:
        b = hosts.pmk("B", "--seed", str(FILES / "check.py"), *FAST)
        b.wait_for("Seed loaded: CheckFile", stream="err")
        a = hosts.pmk("A", "--seed", str(FILES / "make.py"), *FAST, env=env)
        a.wait_for("made big.bin")
        files = b.workdir / "files"  # type: ignore[attr-defined]

        def had() -> int:
            return sum(len(p.read_text().splitlines()) for p in files.glob("*/.have"))

        wait_until(lambda: had() >= 5, 30, interval_s=0.05, what="B to have some chunks")
        nft(
            lan,
            "A",
            f"table ip pmkcut {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n"
            f"  ip daddr {b_ip} drop\n }}\n chain in {{\n  type filter hook input priority 0; policy accept;\n"
            f"  ip saddr {b_ip} drop\n }}\n}}\n",
        )
        at_cut = had()
        time.sleep(3.0)  # the cut itself: long enough for both sides to take the other for gone
        nft_delete(lan, "A", "pmkcut")
        assert at_cut < chunks, "the file arrived before the cut: slow the link down further"
        b.wait_for("got big.bin", timeout_s=90)
    finally:
        nft_delete(lan, "A", "pmkcut")
        nft_delete(lan, "A", "pmkrate")
    made = next(line for line in a.out if line.startswith("made ")).split()
    got = next(line for line in b.out if line.startswith("got ")).split()
    assert got[1:4] == made[1:4]
    done = next(line for line in b.err if "File big.bin" in line and "is here" in line)
    received = int(re.search(r"(\d+) chunks received", done).group(1))  # type: ignore[union-attr]
    asked_again = int(re.search(r"(\d+) asked again", done).group(1))  # type: ignore[union-attr]
    # Every chunk written once: nothing that had arrived before the cut was fetched again.
    assert received == chunks, done
    assert asked_again <= 2 * 8  # only the window lost in the cut (twice at most), never the file again
    assert a.stderr_has("Peer nodeB0 is evasive")  # the cut was long enough for A to take B for gone
