"""Where log lines go: request lines kept on the event loop, rendered and written every 50 ms."""

from __future__ import annotations

import asyncio
import atexit
import io
import threading
from collections.abc import Callable
from typing import BinaryIO, Generic, TextIO, TypeVar

FLUSH_INTERVAL = 0.05  # seconds a gathered line may wait on the event loop before it is written
FLUSH_LINES = 256  # written at once past this many (about 64 KB of request lines)

Entry = TypeVar("Entry")


def _binary_layer(stream: TextIO) -> BinaryIO | None:
    """The byte stream under ``stream`` when writing to it costs a system call, else None."""
    try:
        stream.fileno()
    except (io.UnsupportedOperation, AttributeError, ValueError):
        return None
    buffer: BinaryIO | None = getattr(stream, "buffer", None)
    return buffer


class LineSink(Generic[Entry]):
    """Writes log lines to ``stream``; the per-request ones rendered and written in batches.

    With PYTHONUNBUFFERED (our Dockerfile's setting) every write to stdout is a system call:
    one per request line cost ~10 us of a ~55 us request under load. So an entry given to
    `gather` while an event loop runs is kept as it is, and ``render`` turns it into its UTF-8
    line only when the batch is written, with one write and one flush, at most
    ``FLUSH_INTERVAL`` later or at once past ``FLUSH_LINES``. Rendering a batch in one loop
    costs a third of rendering each line between the steps of its request, where the code and
    data of everything else the request ran have pushed the renderer's out of the CPU caches
    (measured: 8.7 us a line in the app, 2.8 us in a batch).

    Every other line (`write_line`: start-up, warnings, shutdown, a driver's thread) is written
    at once, after whatever is pending, so the order never changes and a server stopped by a
    signal, which exits without running atexit hooks, still writes its last request lines with
    its shutdown lines. What is pending at interpreter exit is written then; SIGKILL loses at
    most 50 ms. A stream without a file descriptor (a StringIO) costs no system call, so every
    line is rendered and written to it at once. Structlog's loggers and the stdlib handler
    share one sink, so lines never interleave.
    """

    def __init__(self, stream: TextIO, render: Callable[[Entry], bytes]) -> None:
        self.stream = stream
        self._render = render
        self._binary = _binary_layer(stream)
        self._lock = threading.Lock()
        self._pending: list[Entry] = []
        # The loop a flush is scheduled on, and its thread: a loop that stopped never runs it,
        # so the next line gathered on another loop schedules its own.
        self._flush_loop: asyncio.AbstractEventLoop | None = None
        self._flush_thread = 0
        atexit.register(self.flush)

    def write_line(self, line: str) -> None:
        """Write ``line`` and a newline now, after any gathered line still pending."""
        with self._lock:
            if self._binary is None:
                self.stream.write(line + "\n")
                return
            self._write_pending(line.encode("utf-8", "backslashreplace") + b"\n")

    def gather(self, entry: Entry) -> None:
        """Write ``entry``'s line within ``FLUSH_INTERVAL`` when an event loop runs in this
        thread (with the other lines gathered meanwhile), else now."""
        with self._lock:
            if self._binary is None:
                self.stream.write(self._render(entry).decode() + "\n")
                return
            pending = self._pending
            pending.append(entry)
            if len(pending) < FLUSH_LINES:
                scheduled = self._flush_loop
                # The loop running in this thread has the flush scheduled. Asked before
                # get_running_loop, which costs a getpid system call on every request.
                if (
                    scheduled is not None
                    and self._flush_thread == threading.get_ident()
                    and scheduled.is_running()
                ):
                    return
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = None
                if loop is not None:
                    self._flush_loop = loop
                    self._flush_thread = threading.get_ident()
                    loop.call_later(FLUSH_INTERVAL, self.flush)
                    return
            self._write_pending()

    def flush(self) -> None:
        """Write what is pending and flush the stream (also called at exit)."""
        with self._lock:
            self._flush_loop = None
            if self._binary is None:
                if not self.stream.closed:
                    self.stream.flush()
                return
            self._write_pending()

    def close(self) -> None:
        """Write what is pending; from now on the stream is no longer this sink's to flush."""
        self.flush()
        atexit.unregister(self.flush)

    def _write_pending(self, then: bytes = b"") -> None:
        binary = self._binary
        assert binary is not None
        pending = self._pending
        if binary.closed or self.stream.closed:
            # Nowhere to write them any more (a test's stream, a detached stdout).
            pending.clear()
            return
        # Whatever was written to the text layer by others goes first.
        self.stream.flush()
        lines = [self._render(entry) for entry in pending]
        pending.clear()
        lines.append(then)
        data = b"\n".join(lines) if len(lines) > 1 else then
        # Under PYTHONUNBUFFERED the byte layer is a raw file, whose write may take part.
        while data:
            data = data[binary.write(data) :]
        binary.flush()
