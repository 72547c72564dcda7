"""The loop watchdog's diagnosis (``_diagnosis``), pure: hand-made samples in, report text out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakepeer._diagnosis import (
    CPU_BOUND_HINT,
    CPU_BOUND_HINT_TRIO,
    HUB_HINT,
    Place,
    Sample,
    describe,
    hint,
)

TEST_FILE = "/suite/tests/test_client.py"
WHERE = "during call of test_client.py::test_get"


def call(
    line: str = "    s.recv(10)",
    expression: str = "s.recv(10)",
    *,
    lineno: int = 12,
    function: str = "test_get",
    filename: str = TEST_FILE,
    opname: str = "CALL",
) -> Place:
    """A frame that waits in ``expression`` on ``line`` (its columns found in the line)."""
    start = line.index(expression) if expression else 0
    columns = (start, start + len(expression)) if expression else None
    return Place(filename, lineno, function, line, expression, columns, opname)


def report(samples: list[Sample], **options: str) -> str:
    return describe(samples, blocked_for=0.5123, limit=0.5, where=WHERE, **options)


def sample(user: Place | None, *stack: Place, task: str = "Task-1 running test_get()") -> Sample:
    return Sample(user, task, stack or ((user,) if user else ()))


# -- the verdict -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expression", "advice"),
    [
        (
            "    data = s.recv(10)",
            "s.recv(10)",
            "a blocking socket read or write stops the event loop; use "
            "asyncio.open_connection() streams, or loop.sock_recv() / loop.sock_sendall(); "
            "to test a blocking client, call it with await asyncio.to_thread(...) or from a "
            "plain def test",
        ),
        (
            "    client, _ = server.accept()",
            "server.accept()",
            "socket.accept() blocks the whole event loop; use loop.sock_accept() or "
            "asyncio.start_server(), or, for a server in a test, fakepeer's fake_peer fixture",
        ),
        (
            "    sock = socket.create_connection(address)",
            "socket.create_connection(address)",
            "a blocking connect() stops the event loop; use asyncio.open_connection() or "
            "loop.sock_connect()",
        ),
        (
            "    time.sleep(5)",
            "time.sleep(5)",
            "time.sleep() blocks the event loop; use await asyncio.sleep()",
        ),
        (
            "    out = subprocess.run(['ls'])",
            "subprocess.run(['ls'])",
            "a blocking subprocess call stops the event loop; use asyncio.create_subprocess_exec()",
        ),
        (
            "    page = urlopen(url)",
            "urlopen(url)",
            "a blocking HTTP call stops the event loop; use an async client or "
            "await asyncio.to_thread(...)",
        ),
        ("    name = input()", "input()", "input() blocks the event loop"),
    ],
)
def test_one_call_in_every_sample_does_not_return_and_gets_its_hint(
    line: str, expression: str, advice: str
) -> None:
    place = call(line, expression)
    text = report([sample(place)] * 3)
    assert "  samples:     3 of 3 in the same call: one call that does not return\n" in text
    assert f"  call:        {expression}\n" in text
    assert f"  hint:        {advice}\n" in text
    assert "CPU-bound" not in text


def test_a_call_no_hint_knows_is_still_one_call_without_a_hint() -> None:
    place = call("    result = compute(data)", "compute(data)")
    text = report([sample(place)] * 3)
    assert "one call that does not return" in text
    assert "hint:" not in text


def test_different_lines_are_cpu_bound() -> None:
    lines = [
        call("        total += 1", "total += 1", lineno=20, opname="BINARY_OP"),
        call("        total %= 7", "total %= 7", lineno=21, opname="BINARY_OP"),
        call("    while True:", "", lineno=19, opname="JUMP_BACKWARD"),
    ]
    text = report([sample(place) for place in lines])
    assert (
        "  samples:     3 at 3 different lines, running Python code: code that runs without "
        "ever awaiting (CPU-bound)\n"
    ) in text
    assert f"  hint:        {CPU_BOUND_HINT}\n" in text
    assert "one call that does not return" not in text


def test_one_line_but_not_in_a_call_is_cpu_bound_too() -> None:
    place = call("    while not done: n += 1", "n += 1", opname="BINARY_OP")
    text = report([sample(place)] * 3)
    assert "  samples:     3 at the same line, running Python code: code that runs" in text
    assert f"  hint:        {CPU_BOUND_HINT}\n" in text


def test_a_sample_on_the_way_into_the_call_still_makes_one_call() -> None:
    # On a loaded machine the first sample may catch the thread at the same line, before the
    # call (3.12: LOAD_ATTR of server.accept): the freshest sample is in the call.
    before = call("    client, _ = server.accept()", "server.accept", opname="LOAD_ATTR")
    inside = call("    client, _ = server.accept()", "server.accept()")
    text = report([sample(before), sample(inside), sample(inside)])
    assert "  samples:     2 of 3 in the same call: one call that does not return\n" in text
    assert "  hint:        socket.accept() blocks the whole event loop" in text
    assert "CPU-bound" not in text


def test_a_call_left_for_other_code_on_the_same_line_is_cpu_bound() -> None:
    inside = call("    while sock.recv(1): n += 1", "sock.recv(1)")
    after = call("    while sock.recv(1): n += 1", "n += 1", opname="BINARY_OP")
    text = report([sample(inside), sample(after)])
    assert "  samples:     2 at the same line, running Python code" in text


def test_calls_on_different_lines_are_not_one_call() -> None:
    text = report([sample(call(lineno=12)), sample(call(lineno=13))])
    assert "2 at 2 different lines" in text
    assert "one call that does not return" not in text


def test_without_the_tests_own_code_it_says_so_and_judges_by_the_innermost_frame() -> None:
    library = call(
        "        return self._sock.recv_into(b)",
        "self._sock.recv_into(b)",
        filename="/usr/lib/python3.12/socket.py",
        function="readinto",
        lineno=720,
    )
    text = report([sample(None, library)] * 3, loop="the event loop on thread 'worker'")
    assert "  blocked at:  no code of the test's own on the stack: see the stack\n" in text
    assert "one call that does not return" in text
    assert "hint:" not in text  # advice is for the test's own code
    assert "  call:" not in text
    assert text.endswith("    socket.py:720 in readinto: return self._sock.recv_into(b)")


def test_without_any_frame_it_is_not_one_call() -> None:
    text = report([sample(None)] * 2)
    assert "no code of the test's own on the stack" in text
    assert "2 at the same line, running Python code" in text


def test_no_samples_leave_the_first_line_alone() -> None:
    assert report([]) == (
        "the event loop was blocked for 0.51 s (the loop watchdog allows 0.5 s) " + WHERE
    )


# -- the text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expression", "caret"),
    [
        ("    s.recv(10)", "s.recv(10)", "      ^^^^^^^^^^"),
        ("    assert s.recv(100) == b'x'", "s.recv(100)", "             ^^^^^^^^^^^"),
        ("\tdata = sock.recv(1)", "sock.recv(1)", "             ^^^^^^^^^^^^"),
        ("x = f()", "f()", "          ^^^"),
    ],
)
def test_the_caret_stands_under_the_expression(line: str, expression: str, caret: str) -> None:
    lines = report([sample(call(line, expression))]).splitlines()
    shown = lines.index(f"      {line.strip()}")
    assert lines[shown + 1] == caret


def test_without_columns_there_is_no_caret() -> None:
    place = Place(TEST_FILE, 12, "test_get", "    s.recv(10)", "s.recv(10)", None, "CALL")
    lines = report([sample(place)]).splitlines()
    assert lines[2:5] == [
        f"  blocked at:  {TEST_FILE}:12 in test_get",
        "      s.recv(10)",
        "  call:        s.recv(10)",
    ]


@given(
    indent=st.text(" \t", max_size=12),
    before=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
    expression=st.from_regex(r"[a-z_]{1,8}\([a-z0-9, ]{0,10}\)", fullmatch=True),
    after=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)
def test_the_caret_marks_exactly_the_expression(
    indent: str, before: str, expression: str, after: str
) -> None:
    line = f"{indent}{before.lstrip()}{expression}{after}"
    start = len(indent) + len(before.lstrip())
    place = Place(TEST_FILE, 1, "f", line, expression, (start, start + len(expression)), "CALL")
    lines = report([sample(place)]).splitlines()
    shown, caret = lines[3], lines[4]
    assert shown == "      " + line.strip()
    marked = [i for i, char in enumerate(caret) if char == "^"]
    assert shown[marked[0] : marked[-1] + 1] == expression
    assert len(marked) == len(expression)


def test_the_whole_report() -> None:
    outer = Place("/usr/lib/python3.12/asyncio/events.py", 80, "_run", "        self._run()")
    place = call()
    text = report([sample(place, outer, place)] * 3)
    assert text == "\n".join(
        [
            "the event loop was blocked for 0.51 s (the loop watchdog allows 0.5 s) " + WHERE,
            "  task:        Task-1 running test_get()",
            f"  blocked at:  {TEST_FILE}:12 in test_get",
            "      s.recv(10)",
            "      ^^^^^^^^^^",
            "  call:        s.recv(10)",
            "  samples:     3 of 3 in the same call: one call that does not return",
            "  hint:        a blocking socket read or write stops the event loop; use "
            "asyncio.open_connection() streams, or loop.sock_recv() / loop.sock_sendall(); "
            "to test a blocking client, call it with await asyncio.to_thread(...) or from a "
            "plain def test",
            "  stack (innermost last):",
            "    events.py:80 in _run: self._run()",
            "    test_client.py:12 in test_get: s.recv(10)",
        ]
    )


def test_the_stack_shows_the_innermost_eight_frames() -> None:
    frames = [call(f"    f{n}()", f"f{n}()", lineno=n, function=f"f{n}") for n in range(1, 13)]
    text = report([sample(frames[-1], *frames)])
    shown = text.split("  stack (innermost last):\n")[1].splitlines()
    assert shown == [f"    test_client.py:{n} in f{n}: f{n}()" for n in range(5, 13)]


@pytest.mark.parametrize(
    "loop",
    [
        "the event loop",
        "the event loop on thread 'side-loop'",
        "the event loop (uvloop)",
        "the trio run",
        "the fakepeer hub's event loop (it serves this test's fake peers)",
    ],
)
def test_the_loop_label_opens_the_report(loop: str) -> None:
    text = report([sample(call())], loop=loop)
    assert text.splitlines()[0] == (
        f"{loop} was blocked for 0.51 s (the loop watchdog allows 0.5 s) {WHERE}"
    )


def test_the_freshest_sample_names_the_task_and_the_place() -> None:
    first = sample(call(lineno=12), task="Task-1 running spin()")
    last = sample(call("    t += 1", "t += 1", lineno=30, opname="BINARY_OP"), task="Task-2")
    text = report([first, last])
    assert "  task:        Task-2\n" in text
    assert f"  blocked at:  {TEST_FILE}:30 in test_get\n" in text


# -- the advice for each kind of loop -------------------------------------------------------


@pytest.mark.parametrize(
    ("library", "expression", "advice"),
    [
        (
            "asyncio",
            "time.sleep(1)",
            "time.sleep() blocks the event loop; use await asyncio.sleep()",
        ),
        ("trio", "time.sleep(1)", "time.sleep() blocks the trio run; use await trio.sleep()"),
        (
            "trio",
            "s.recv(10)",
            "a blocking socket read or write stops the trio run; use trio.open_tcp_stream() "
            "streams, or trio.socket",
        ),
        (
            "trio",
            "subprocess.run(x)",
            "a blocking subprocess call stops the trio run; use trio.run_process()",
        ),
        ("hub", "time.sleep(1)", HUB_HINT),
        ("hub", "compute(x)", HUB_HINT),
        ("asyncio", "compute(x)", None),
        ("trio", "compute(x)", None),
    ],
)
def test_hint_per_library(library: str, expression: str, advice: str | None) -> None:
    assert hint(expression, f"    {expression}", library) == advice


def test_hint_reads_the_line_when_there_is_no_expression() -> None:
    assert hint("", "    time.sleep(1)") == (
        "time.sleep() blocks the event loop; use await asyncio.sleep()"
    )
    assert hint("", "    x = 1") is None


@pytest.mark.parametrize(
    ("library", "advice"),
    [("asyncio", CPU_BOUND_HINT), ("trio", CPU_BOUND_HINT_TRIO), ("hub", HUB_HINT)],
)
def test_the_cpu_bound_advice_per_library(library: str, advice: str) -> None:
    spin = [call("  a()", "a()", lineno=1, opname="BINARY_OP"), call("  b()", "b()", lineno=2)]
    text = report([sample(place) for place in spin], library=library)
    assert f"  hint:        {advice}\n" in text


def test_the_hub_advice_is_about_the_script() -> None:
    text = report([sample(call("    time.sleep(1)", "time.sleep(1)"))] * 3, library="hub")
    assert "asyncio.sleep" not in text
    assert (
        "  hint:        a fake peer's reply callable runs in the fakepeer hub's event loop, "
        "which serves every peer: it must return at once; to answer late, script it "
        "(.after(seconds)), or use an async handler that awaits\n"
    ) in text
