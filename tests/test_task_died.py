"""TaskDied, end to end: a task that dies and that nobody awaits fails its test at once, naming
the task; an exception someone retrieves fails nothing; a late one names the test that left it;
the switch. Real sessions (pytester, in a subprocess where a test would hang without it)."""

from __future__ import annotations

import re
import time

import pytest

pytest_plugins = ["pytester"]

INI = (
    "[pytest]\n"
    "asyncio_default_fixture_loop_scope = function\n"
    "addopts = -p no:hypothesispytest -p no:cacheprovider\n"
    "timeout = 30\n"
)

# A client whose reader task dies on the first bad line, and whose ask() waits for a reply
# that only that task would deliver: without TaskDied, such a test hangs until a timeout.
CLIENT = """\
import asyncio

import anyio
import pytest
import pytest_asyncio

from fakepeer import Lines


class Client:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.replies = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self.read_replies(), name="reader")

    async def read_replies(self):
        while True:
            line = await self.reader.readline()
            if not line.startswith(b"OK"):
                raise ValueError(f"not a reply: {line!r}")  # RAISE_LINE
            await self.replies.put(line)

    async def ask(self, question):
        self.writer.write(question + b"\\n")
        return await self.replies.get()


async def connect(address):
    return Client(*await asyncio.open_connection(*address))


@pytest.mark.asyncio
@pytest.mark.fakepeer(framing=Lines())
async def test_in_the_body(fake_peer):
    fake_peer.expect(b"PING").reply(b"garbage")
    client = await connect(fake_peer.address)
    assert await client.ask(b"PING") == b"OK"


@pytest_asyncio.fixture
async def client(fake_peer):
    yield await connect(fake_peer.address)


@pytest.mark.asyncio
@pytest.mark.fakepeer(framing=Lines())
async def test_made_by_a_fixture(fake_peer, client):
    fake_peer.expect(b"PING").reply(b"garbage")
    assert await client.ask(b"PING") == b"OK"


@pytest.fixture(
    params=[("asyncio", {}), ("asyncio", {"use_uvloop": True})], ids=["asyncio", "uvloop"]
)
def anyio_backend(request):
    if request.param[1]:
        pytest.importorskip("uvloop")
    return request.param


@pytest.mark.anyio
@pytest.mark.fakepeer(framing=Lines())
async def test_anyio(fake_peer):
    fake_peer.expect(b"PING").reply(b"garbage")
    client = await connect(fake_peer.address)
    assert await client.ask(b"PING") == b"OK"


@pytest.mark.anyio
async def test_anyio_runs_on():
    await anyio.sleep(0)
"""


def line_of(source: str, tag: str) -> int:
    for number, line in enumerate(source.splitlines(), 1):
        if tag in line:
            return number
    raise AssertionError(tag)


@pytest.fixture
def session(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    return pytester


def session_seconds(result: pytest.RunResult) -> float:
    """How long the inner session says it took (its last line: "... in 1.23s ...")."""
    match = re.search(r" in (\d+\.\d+)s", result.outlines[-1])
    assert match is not None, result.outlines[-1]
    return float(match[1])


def durations(output: str) -> dict[str, float]:
    """The time of each test's call phase, from ``--durations=0``."""
    return {
        match[2]: float(match[1])
        for match in re.finditer(r"^(\d+\.\d+)s call\s+(\S+)$", output, re.MULTILINE)
    }


def test_a_dead_reader_fails_its_test_at_once(session: pytest.Pytester) -> None:
    session.makepyfile(test_client=CLIENT)
    started = time.monotonic()
    result = session.runpytest_subprocess(
        "-p", "anyio", "-p", "timeout", "-rf", "-vv", "--durations=0", "--durations-min=0"
    )
    elapsed = time.monotonic() - started
    outcomes = result.parseoutcomes()
    skipped = outcomes.get("skipped", 0)  # the uvloop case, where uvloop is not installed
    result.assert_outcomes(failed=4 - skipped, passed=2, skipped=skipped)
    out = result.stdout.str()
    raise_line = line_of(CLIENT, "RAISE_LINE")
    for test in ["test_in_the_body", "test_made_by_a_fixture", "test_anyio[asyncio]"]:
        assert f"FAILED test_client.py::{test} - fakepeer.TaskDied" in out, test
    result.stdout.fnmatch_lines(
        [
            "E   fakepeer.TaskDied: a task died during call of test_client.py::test_in_the_body "
            "and nobody retrieved its exception within 0.5 s",
            "    task:        reader running Client.read_replies() (defined at *test_client.py:*)",
            "    made:        during call of test_client.py::test_in_the_body",
            "    exception:   ValueError: not a reply: b'garbage\\n'",
            "    stopped:     the test body, which may be waiting for what the dead task would "
            "have done",
            "    Traceback (most recent call last):",
            f'      File "*test_client.py", line {raise_line}, in read_replies',
            "    ValueError: not a reply: b'garbage\\n'",
        ]
    )
    result.stdout.fnmatch_lines(
        ["    made:        during setup of test_client.py::test_made_by_a_fixture"]
    )
    calls = durations(out)
    failed = [test for test in calls if "runs_on" not in test]
    assert len(failed) == 4 - skipped, calls
    for test in failed:
        assert 0.5 <= calls[test] < 1.0, (test, calls[test])
    # Nothing waited for the inner pytest-timeout (30 s a test): the session took seconds
    # (its own count leaves out the interpreter's start, which a loaded machine slows).
    assert session_seconds(result) < 10
    assert elapsed < 30
    assert "Timeout" not in out


RETRIEVED = """\
import asyncio

import anyio
import pytest
import pytest_asyncio


async def boom():
    raise ValueError("seen in time")


async def died():
    task = asyncio.create_task(boom())
    await asyncio.wait([task])  # done, and its exception not retrieved yet
    # Still within the limit: the loop's timers fire in order, so this one (0.1 s) comes
    # before TaskDied's look at the dead task (0.5 s after it died).
    await asyncio.sleep(0.1)
    return task


@pytest.mark.asyncio
async def test_awaited():
    task = await died()
    with pytest.raises(ValueError, match="seen in time"):
        await task


@pytest.mark.asyncio
async def test_gathered():
    task = await died()
    [error] = await asyncio.gather(task, return_exceptions=True)
    assert isinstance(error, ValueError)


@pytest.mark.asyncio
async def test_exception_called():
    task = await died()
    assert isinstance(task.exception(), ValueError)


@pytest.mark.asyncio
async def test_done_callback_retrieves():
    task = asyncio.create_task(boom())
    task.add_done_callback(lambda task: task.exception())
    await asyncio.wait([task])
    await asyncio.sleep(0.6)  # past the limit: the callback saw it


@pytest.mark.asyncio
async def test_task_group():
    with pytest.raises(ExceptionGroup):
        async with asyncio.TaskGroup() as group:
            group.create_task(boom())
            await asyncio.Event().wait()


@pytest.mark.asyncio
async def test_cancelled_is_not_died():
    task = asyncio.create_task(asyncio.Event().wait())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait([task])
    await asyncio.sleep(0.6)


@pytest_asyncio.fixture
async def background():
    task = asyncio.create_task(boom())
    yield task
    with pytest.raises(ValueError):
        await task  # the fixture's teardown retrieves it


@pytest.mark.asyncio
async def test_retrieved_by_a_fixture_teardown(background):
    await asyncio.wait([background])


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_anyio_task_group():
    with pytest.raises(ExceptionGroup):
        async with anyio.create_task_group() as group:
            group.start_soon(boom)
            await anyio.Event().wait()
"""


def test_an_exception_someone_retrieves_fails_nothing(session: pytest.Pytester) -> None:
    session.makepyfile(test_retrieved=RETRIEVED)
    result = session.runpytest_subprocess("-p", "anyio", "-p", "timeout", "-W", "error")
    result.assert_outcomes(passed=8)
    assert "TaskDied" not in result.stdout.str()


def test_a_test_that_swallows_the_cancellation_is_stopped_again(
    session: pytest.Pytester,
) -> None:
    session.makepyfile(
        """
        import asyncio
        import pytest

        async def boom():
            raise ValueError("dead")

        @pytest.mark.asyncio
        async def test_stubborn():
            task = asyncio.create_task(boom(), name="kept")
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                pass  # swallowed: TaskDied cancels again after the limit
            await asyncio.Event().wait()
        """
    )
    started = time.monotonic()
    result = session.runpytest_subprocess("-p", "timeout")
    assert session_seconds(result) < 10
    assert time.monotonic() - started < 30
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*fakepeer.TaskDied: a task died during call of *", "*kept*"])


def test_a_task_that_died_in_an_earlier_test_names_it(session: pytest.Pytester) -> None:
    session.makepyfile(
        test_shared_loop="""
        import asyncio
        import pytest

        kept = []

        async def boom():
            raise KeyError("left behind")

        @pytest.mark.asyncio(loop_scope="module")
        @pytest.mark.loop_watchdog(2)  # so that it outlives this test for sure
        async def test_leaves_a_task():
            kept.append(asyncio.create_task(boom(), name="leftover"))
            await asyncio.wait(kept)

        @pytest.mark.asyncio(loop_scope="module")
        async def test_next():
            await asyncio.Event().wait()  # stopped by TaskDied, 2 s after the task died
        """
    )
    result = session.runpytest_subprocess("-p", "timeout", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_next _*",
            "E   fakepeer.TaskDied: a task died during call of "
            "test_shared_loop.py::test_leaves_a_task and nobody retrieved its exception "
            "within 2 s (found during call of test_shared_loop.py::test_next)",
            "    task:        leftover running boom() *",
            "    made:        during call of test_shared_loop.py::test_leaves_a_task",
            "    exception:   KeyError: 'left behind'",
            "    note:        test_shared_loop.py::test_next may have nothing to do with it: "
            "the task comes from an earlier test, test_shared_loop.py::test_leaves_a_task",
        ]
    )


def test_a_task_collected_in_a_later_sync_test_names_the_test_that_made_it(
    session: pytest.Pytester,
) -> None:
    session.makepyfile(
        test_late="""
        import asyncio
        import gc
        import pytest

        async def boom():
            raise KeyError("collected late")

        @pytest.mark.asyncio(loop_scope="module")
        @pytest.mark.loop_watchdog(60)  # its TaskDied would come long after the next test
        async def test_leaves_a_cycle():
            gc.disable()  # the cycle is collected in the next test, not before
            task = asyncio.create_task(boom(), name="in-a-cycle")
            await asyncio.wait([task])
            cycle = [task]
            cycle.append(cycle)

        @pytest.fixture
        def collect():
            gc.enable()
            gc.collect()

        def test_sync(collect):
            pass

        @pytest.mark.asyncio
        async def test_a_future_collected_later():
            gc.disable()
            future = asyncio.get_running_loop().create_future()
            future.set_exception(OSError("nobody looked"))
            cycle = [future]
            cycle.append(cycle)

        def test_sync_again(collect):
            pass
        """
    )
    result = session.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_sync _*",
            "E   fakepeer.TaskDied: an exception in the event loop went unseen during setup of "
            "test_late.py::test_sync: asyncio only logged it",
            "    Task exception was never retrieved",
            "*KeyError: 'collected late'",
            "    It may come from an earlier test: the last task named 'in-a-cycle' that "
            "fakepeer saw die unseen was created by test_late.py::test_leaves_a_cycle "
            "(during call of test_late.py::test_leaves_a_cycle) and died during call of "
            "test_late.py::test_leaves_a_cycle; asyncio logged it only now, when it was "
            "collected.",
            "*_ ERROR at setup of test_sync_again _*",
            "*Future exception was never retrieved",
            "*OSError: nobody looked",
            "    fakepeer cannot tell which test made it *PYTHONASYNCIODEBUG=1 (with "
            "pytest-asyncio: --asyncio-debug) makes asyncio show where it was created; run "
            "with -p no:randomly to keep the order, or run this test alone.",
        ]
    )


def test_a_failing_test_shows_the_dead_task_too(session: pytest.Pytester) -> None:
    session.makepyfile(
        """
        import asyncio
        import pytest

        async def boom():
            raise ValueError("the reader died")

        @pytest.mark.asyncio
        async def test_gives_up_first():
            task = asyncio.create_task(boom(), name="reader")
            await asyncio.wait_for(asyncio.Event().wait(), 0.01)
        """
    )
    result = session.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E*TimeoutError",
            "E*fakepeer: also, TaskDied: a task died during call of *test_gives_up_first and "
            "nobody retrieved its exception before the phase failed",
            "E*task:        reader running boom() *",
            "E*ValueError: the reader died",
        ]
    )


def test_asyncio_debug_shows_where_the_task_was_made(session: pytest.Pytester) -> None:
    source = """\
import asyncio
import pytest

async def boom():
    raise ValueError("dead")

@pytest.mark.asyncio
async def test_debug():
    task = asyncio.create_task(boom(), name="traced")  # MADE_LINE
    await asyncio.Event().wait()
"""
    session.makepyfile(test_debug=source)
    result = session.runpytest_subprocess("-p", "timeout", "--asyncio-debug")
    result.assert_outcomes(failed=1)
    made = line_of(source, "MADE_LINE")
    result.stdout.fnmatch_lines(
        [
            "    task:        traced running boom() *",
            "    made:        during call of test_debug.py::test_debug, at *test_debug.py:"
            f"{made} in test_debug",
        ]
    )


FORGETS = """\
import asyncio
import pytest

async def boom():
    raise ValueError("forgotten")

@pytest.mark.asyncio
async def test_forgets():
    task = asyncio.create_task(boom())
    await asyncio.wait([task])
    del task  # collected: asyncio logs "Task exception was never retrieved"
    await asyncio.sleep(0)
"""


# In-process sessions: the inner one's asyncio log reaches this process's logger too.
@pytest.mark.task_died(False)
@pytest.mark.parametrize(
    ("ini", "args", "marker", "died", "header"),
    [
        (None, [], None, True, False),
        ("false", [], None, False, True),
        ("off", ["--task-died=on"], None, True, False),
        (None, ["--task-died=off"], None, False, True),
        ("true", ["--task-died=false"], None, False, True),
        (None, [], "False", False, False),
        (None, ["--task-died=off"], "True", True, True),
        ("no", [], "'on'", True, True),
        (None, [], "0", False, False),
        (None, ["--task-died=off"], "1", True, True),
    ],
)
def test_the_switch(
    pytester: pytest.Pytester,
    *,
    ini: str | None,
    args: list[str],
    marker: str | None,
    died: bool,
    header: bool,
) -> None:
    pytester.makeini(INI + (f"task_died = {ini}\n" if ini is not None else ""))
    source = FORGETS
    if marker is not None:
        source = source.replace(
            "@pytest.mark.asyncio\n", f"@pytest.mark.asyncio\n@pytest.mark.task_died({marker})\n"
        )
    pytester.makepyfile(test_switch=source)
    result = pytester.runpytest(*args)
    if died:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "E   fakepeer.TaskDied: an exception in the event loop went unseen during call "
                "of test_switch.py::test_forgets: asyncio only logged it",
                "*ValueError: forgotten",
                "    fakepeer saw this task made during call of test_switch.py::test_forgets, "
                "and die during call of test_switch.py::test_forgets.",
            ]
        )
    else:
        result.assert_outcomes(passed=1)
        assert "TaskDied" not in result.stdout.str()
    line = next(line for line in result.outlines if line.startswith("fakepeer: "))
    assert ("task_died=off, fault seed=" in line) == header, line
    assert re.search(r", loop watchdog=[^,]+, (task_died=off, )?fault seed=\d+$", line), line


@pytest.mark.parametrize(
    ("ini", "args", "message"),
    [
        ("maybe", [], "*ini task_died: expected on or off (true or false), got 'maybe'"),
        (None, ["--task-died=2"], "*--task-died: expected on or off (true or false), got '2'"),
    ],
)
def test_bad_switch_values_name_their_source(
    pytester: pytest.Pytester, ini: str | None, args: list[str], message: str
) -> None:
    pytester.makeini(INI + (f"task_died = {ini}\n" if ini is not None else ""))
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            "task_died('sometimes')",
            "*test_marker.py::test_x: @pytest.mark.task_died: expected on or off (true or "
            "false), got 'sometimes'*",
        ),
        (
            "task_died()",
            "*test_marker.py::test_x: @pytest.mark.task_died takes one switch, e.g. "
            "task_died(False)*",
        ),
    ],
)
def test_a_bad_marker_is_a_usage_error(session: pytest.Pytester, marker: str, message: str) -> None:
    session.makepyfile(
        test_marker=f"""
        import pytest

        @pytest.mark.{marker}
        def test_x():
            pass
        """
    )
    result = session.runpytest()
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines([message])


def test_trio_tests_are_left_alone(session: pytest.Pytester) -> None:
    pytest.importorskip("trio")
    session.makepyfile(
        """
        import pytest
        import trio

        @pytest.fixture
        def anyio_backend():
            return "trio"

        @pytest.mark.anyio
        async def test_trio():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep, 0)
        """
    )
    result = session.runpytest("-p", "anyio")
    result.assert_outcomes(passed=1)
