"""The sink writes every line at once and flushes once per event-loop iteration."""

from __future__ import annotations

import asyncio
import io
import threading

from colima_ref.observability.line_sink import LineSink


class CountingStream(io.StringIO):
    """A stream that counts its flushes (each one is a system call on a real file)."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0
        self.flushed_text = ""

    def flush(self) -> None:
        self.flushes += 1
        self.flushed_text = self.getvalue()


def test_without_a_running_loop_each_line_is_flushed_at_once() -> None:
    stream = CountingStream()
    sink = LineSink(stream)

    sink.write_line("one")
    sink.write_line("two")

    assert stream.flushed_text == "one\ntwo\n"
    assert stream.flushes == 2
    sink.close()


async def test_lines_written_in_one_loop_iteration_leave_in_one_flush() -> None:
    stream = CountingStream()
    sink = LineSink(stream)

    for n in range(100):
        sink.write_line(f"line {n}")
    written_before_the_flush = stream.getvalue()
    await asyncio.sleep(0)

    assert written_before_the_flush.count("\n") == 100
    assert stream.flushes == 1
    assert stream.flushed_text.splitlines() == [f"line {n}" for n in range(100)]
    sink.close()


async def test_a_line_written_after_a_flush_is_flushed_in_the_next_iteration() -> None:
    stream = CountingStream()
    sink = LineSink(stream)

    sink.write_line("first")
    await asyncio.sleep(0)
    sink.write_line("second")
    await asyncio.sleep(0)

    assert stream.flushes == 2
    assert stream.flushed_text == "first\nsecond\n"
    sink.close()


async def test_a_line_from_another_thread_is_flushed_by_that_thread() -> None:
    stream = CountingStream()
    sink = LineSink(stream)

    worker = threading.Thread(target=sink.write_line, args=("from a worker",))
    worker.start()
    worker.join()

    assert stream.flushed_text == "from a worker\n"
    sink.close()


def test_closing_flushes_and_a_closed_stream_is_left_alone() -> None:
    stream = CountingStream()
    sink = LineSink(stream)
    sink.close()
    stream.close()

    sink.flush()

    assert stream.flushes == 1
