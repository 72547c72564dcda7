"""``fakepeer demo``, run as a user runs it, against its golden file tests/demo_output.txt.

What changes from run to run (times, ports, durations, asyncio's task numbers) is normalised
first. After a deliberate change to the demo, regenerate the golden file and read its diff:

    FAKEPEER_REGENERATE=1 python -m pytest tests/test_demo.py
    git diff tests/demo_output.txt
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fakepeer import _demo

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "demo_output.txt"
SEED_FILE = HERE / "watchdog_seed.py"
REGENERATE = "FAKEPEER_REGENERATE"
#: About two screens.
MAX_LINES = 100
MAX_WIDTH = 100

#: (pattern, replacement), applied in order: what differs between two runs of the demo.
NORMALISE: list[tuple[re.Pattern[str], str]] = [
    # The transcript's time column (10 wide), and the ports of the peer and the client.
    (re.compile(r"^ +\d+\.\d{3} ms  ", re.MULTILINE), "            t.ttt ms  "),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    # How long the loop was blocked, pytest's durations, asyncio's task names.
    (re.compile(r"blocked for \d+\.\d+ s"), "blocked for N.NN s"),
    (re.compile(r" in \d+\.\d+s$", re.MULTILINE), " in N.NNs"),
    (re.compile(r"Task-\d+"), "Task-N"),
    # The seed's port 12346 was taken on this machine (another run of the demo, say): said
    # on the command's line, so the demo keeps its length.
    (re.compile(r"   # port 12346 is taken here: it runs on \d+$", re.MULTILINE), ""),
]


def normalise(text: str) -> str:
    for pattern, replacement in NORMALISE:
        text = pattern.sub(replacement, text)
    return text


def run_demo(**extra: str) -> subprocess.CompletedProcess[str]:
    """``fakepeer demo`` as a user runs it from a shell (no trace of the pytest run this test
    is in), with ``extra`` in its environment."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTEST_", "FAKEPEER_"))
    }
    env.update(extra)
    return subprocess.run(
        [sys.executable, "-m", "fakepeer", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess[str]:
    return run_demo()


def test_the_demo_reads_the_same_where_colour_is_forced() -> None:
    """CI services set FORCE_COLOR or PY_COLORS; the demo reads pytest's output back, so the
    pytest it runs must write plain text whatever they say."""
    coloured = run_demo(FORCE_COLOR="1", PY_COLORS="1")
    assert coloured.returncode == 0, coloured.stderr + coloured.stdout[-3000:]
    assert "\x1b[" not in coloured.stdout
    assert normalise(coloured.stdout) == GOLDEN.read_text(encoding="utf-8")


def test_the_demo_succeeds_quietly(demo: subprocess.CompletedProcess[str]) -> None:
    assert demo.returncode == 0, demo.stderr + demo.stdout[-3000:]
    assert demo.stderr == ""


def test_the_demo_output_matches_the_golden_file(demo: subprocess.CompletedProcess[str]) -> None:
    actual = normalise(demo.stdout)
    if os.environ.get(REGENERATE):
        GOLDEN.write_text(actual, encoding="utf-8")
    expected = GOLDEN.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile="tests/demo_output.txt (golden)",
                tofile="fakepeer demo (now, normalised)",
            )
        )
        pytest.fail(
            "`fakepeer demo` no longer prints what tests/demo_output.txt says. If the change is "
            f"meant, regenerate it and review its diff:\n\n    {REGENERATE}=1 python -m pytest "
            f"tests/test_demo.py\n    git diff tests/demo_output.txt\n\n{diff}",
            pytrace=False,
        )


def test_the_demo_fits_in_two_screens(demo: subprocess.CompletedProcess[str]) -> None:
    lines = demo.stdout.splitlines()
    assert len(lines) <= MAX_LINES, f"{len(lines)} lines, over {MAX_LINES}"
    wide = [line for line in lines if len(line) > MAX_WIDTH]
    assert wide == [], f"lines over {MAX_WIDTH} columns"
    assert all(line.isascii() and "\t" not in line for line in lines)


def test_the_demo_keeps_its_length_when_the_seeds_port_is_taken() -> None:
    """Another demo (or anything) on port 12346: the seed's test runs on another port, said
    on the command's line, and the demo still fits (it once grew to 102 lines in CI)."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("localhost", _demo.SEED_PORT))
        holder.listen()
        held = True
    except OSError:  # taken already, by another worker's demo: the case itself
        held = False
    try:
        result = run_demo()
    finally:
        holder.close()
    assert result.returncode == 0, result.stderr + result.stdout[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) <= MAX_LINES, f"{len(lines)} lines, over {MAX_LINES}"
    assert all(len(line) <= MAX_WIDTH for line in lines)
    if held:
        taken = [line for line in lines if "is taken here" in line]
        assert len(taken) == 1
        assert re.fullmatch(
            r"   \$ python -m pytest -q test_seed.py   # port 12346 is taken here: it runs on \d+",
            taken[0],
        )
    assert normalise(result.stdout) == GOLDEN.read_text(encoding="utf-8")


def test_the_demo_says_what_a_newcomer_needs(demo: subprocess.CompletedProcess[str]) -> None:
    out = demo.stdout
    # What the issue found confusing is gone: no upper-cased value that looks like a bug, no
    # captured prints of the seed, no path into a deleted scratch folder.
    assert "COLOUR" not in out
    assert "Server:" not in out
    assert "fakepeer-demo-" not in out
    assert tempfile.gettempdir() not in out
    # Each act ends on what to take from it; the demo ends on where to go next.
    assert out.count("   Take away: ") == 3
    assert out.splitlines()[-1].startswith('Next: the README\'s "Ten lines" example')
    # Act 3: the excerpt's numbers are the file's, and the watchdog names the same line.
    accept = next(line for line in _demo.seed_excerpt() if "server_socket.accept()" in line)
    number = int(accept.split()[0])
    assert SEED_FILE.read_text(encoding="utf-8").splitlines()[number - 1].strip() == (
        "client, _ = server_socket.accept()"
    )
    assert f"blocked at:  test_seed.py:{number} in handle_client" in out
    assert "E   fakepeer.LoopBlocked: the event loop was blocked for" in out
    assert re.search(r"^       1 error in [\d.]+s$", out, re.MULTILINE)
    assert re.search(r"^       1 passed in [\d.]+s$", out, re.MULTILINE)


def _code(source: str) -> list[str]:
    """``source``'s lines with every string literal emptied and comments dropped."""
    emptied = (re.sub(r'"[^"\n]*"', '""', line) for line in source.splitlines())
    return [re.sub(r"\s*#.*$", "", line) for line in emptied]


def test_the_demo_quotes_the_seed_line_for_line() -> None:
    # The demo ships its own copy (it runs from an installed package, without tests/): the
    # seed's file, translated. Same lines, same code; only strings and comments differ.
    shipped = SEED_FILE.read_text(encoding="utf-8")
    assert _code(_demo.SEED) == _code(shipped)
    # And the translation did touch them (this comparison can fail).
    assert shipped != _demo.SEED


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("short", ["short"]),
        (
            "      hint:        " + "word " * 20 + "the end",
            ["      hint:        " + "word " * 15 + "word", " " * 19 + "word " * 4 + "the end"],
        ),
        (
            "E   LoopBlocked: " + "x" * 74 + " for 0.5 s",
            ["E   LoopBlocked: " + "x" * 74 + " for", "    0.5 s"],
        ),
    ],
)
def test_long_lines_wrap_under_their_label_and_keep_numbers_whole(
    line: str, expected: list[str]
) -> None:
    assert _demo._fit(line) == expected
