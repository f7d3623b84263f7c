"""The sink gathers request lines written on an event loop into one write, renders them only
then, writes every other line at once, and never reorders them."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from colima_ref.observability.line_sink import FLUSH_INTERVAL, FLUSH_LINES, LineSink


class CountingFile(io.FileIO):
    """A real file (each write is a system call) that counts its writes."""

    writes = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes += 1
        return super().write(data)


def as_line(entry: str) -> bytes:
    return entry.encode()


def written(path: Path) -> str:
    """What reached the file (a small local read, fine inside the async tests)."""
    return path.read_text()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "log.jsonl"


@pytest.fixture
def raw(path: Path) -> Iterator[CountingFile]:
    file = CountingFile(path, "w")
    yield file
    file.close()


@pytest.fixture
def stream(raw: CountingFile) -> io.TextIOWrapper:
    return io.TextIOWrapper(raw, encoding="utf-8", write_through=True)  # type: ignore[type-var]


async def test_lines_written_on_the_loop_leave_together_within_the_flush_interval(
    stream: io.TextIOWrapper, raw: CountingFile, path: Path
) -> None:
    sink = LineSink(stream, render=as_line)

    for n in range(100):
        sink.gather(f"line {n}")
    before = written(path)
    await asyncio.sleep(FLUSH_INTERVAL * 2)

    assert before == ""
    assert written(path).splitlines() == [f"line {n}" for n in range(100)]
    assert raw.writes == 1
    sink.close()


async def test_lines_past_the_count_bound_are_written_at_once(
    stream: io.TextIOWrapper, path: Path
) -> None:
    sink = LineSink(stream, render=as_line)

    for n in range(FLUSH_LINES - 1):
        sink.gather(f"line {n}")
    before = written(path)
    sink.gather("the last one")

    assert before == ""
    assert len(written(path).splitlines()) == FLUSH_LINES
    sink.close()


async def test_an_entry_is_rendered_when_its_batch_is_written_not_when_gathered(
    stream: io.TextIOWrapper, path: Path
) -> None:
    rendered: list[dict[str, int]] = []

    def render(entry: dict[str, int]) -> bytes:
        rendered.append(entry)
        return b"n=%d" % entry["n"]

    sink: LineSink[dict[str, int]] = LineSink(stream, render=render)
    entry = {"n": 1}
    sink.gather(entry)
    rendered_at_once = list(rendered)
    await asyncio.sleep(FLUSH_INTERVAL * 2)

    assert rendered_at_once == []
    assert rendered == [entry]
    assert written(path) == "n=1\n"
    sink.close()


def test_without_a_running_loop_each_line_is_written_at_once(
    stream: io.TextIOWrapper, path: Path
) -> None:
    sink = LineSink(stream, render=as_line)

    sink.gather("one")
    sink.gather("two")

    assert written(path) == "one\ntwo\n"
    sink.close()


async def test_a_line_from_another_thread_takes_the_pending_ones_first(
    stream: io.TextIOWrapper, path: Path
) -> None:
    sink = LineSink(stream, render=as_line)
    sink.gather("on the loop")

    worker = threading.Thread(target=sink.gather, args=("from a worker",))
    worker.start()
    worker.join()

    assert written(path) == "on the loop\nfrom a worker\n"
    sink.close()


async def test_a_line_from_a_loop_in_another_thread_is_flushed_by_that_loop(
    stream: io.TextIOWrapper, path: Path
) -> None:
    sink = LineSink(stream, render=as_line)
    sink.gather("on this loop")

    async def gather_and_wait() -> None:
        sink.gather("on the worker's loop")
        await asyncio.sleep(FLUSH_INTERVAL * 2)

    worker = threading.Thread(target=asyncio.run, args=(gather_and_wait(),))
    worker.start()
    worker.join()

    # This loop never ran while the worker waited: the worker's loop wrote both lines.
    assert written(path) == "on this loop\non the worker's loop\n"
    sink.close()


async def test_closing_writes_what_is_pending(stream: io.TextIOWrapper, path: Path) -> None:
    sink = LineSink(stream, render=as_line)
    sink.gather("last words")

    sink.close()

    assert written(path) == "last words\n"


def test_a_line_left_by_a_stopped_loop_goes_out_with_the_next_loops_flush(
    stream: io.TextIOWrapper, path: Path
) -> None:
    sink = LineSink(stream, render=as_line)

    async def write(line: str, wait: float) -> None:
        sink.gather(line)
        await asyncio.sleep(wait)

    asyncio.run(write("from a loop that stopped", 0))
    asyncio.run(write("from the next loop", FLUSH_INTERVAL * 2))

    assert written(path) == "from a loop that stopped\nfrom the next loop\n"
    sink.close()


def test_a_stream_without_a_descriptor_is_written_at_once() -> None:
    text = io.StringIO()
    sink = LineSink(text, render=as_line)

    async def write() -> str:
        sink.gather("at once")
        return text.getvalue()

    assert asyncio.run(write()) == "at once\n"
    sink.close()


async def test_an_ordinary_line_is_written_at_once_after_the_gathered_ones(
    stream: io.TextIOWrapper, path: Path
) -> None:
    # A server stopped by SIGTERM exits without atexit hooks: its shutdown lines must carry
    # the last request lines out with them.
    sink = LineSink(stream, render=as_line)
    sink.gather("request line")

    sink.write_line("Application shutdown complete.")

    assert written(path) == "request line\nApplication shutdown complete.\n"
    sink.close()


class HalfWritingFile(io.FileIO):
    """A raw file that takes at most half of what it is given, as a raw write may."""

    def write(self, data: bytes) -> int:  # type: ignore[override]
        return super().write(bytes(data)[: max(1, len(data) // 2)])


def test_a_raw_stream_that_writes_in_parts_still_gets_every_byte(path: Path) -> None:
    raw = HalfWritingFile(path, "w")
    stream = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)  # type: ignore[type-var]
    sink = LineSink(stream, render=as_line)

    sink.gather("a line long enough to be written in several parts")
    sink.write_line("and another")

    assert written(path) == "a line long enough to be written in several parts\nand another\n"
    sink.close()
    stream.close()
