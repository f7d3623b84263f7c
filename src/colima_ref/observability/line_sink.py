"""Where log lines go: request lines gathered on the event loop and written every 50 ms."""

from __future__ import annotations

import asyncio
import atexit
import io
import threading
from typing import BinaryIO, TextIO

FLUSH_INTERVAL = 0.05  # seconds a gathered line may wait on the event loop before it is written
FLUSH_BYTES = 64 * 1024  # written at once past this much, however recent


def _binary_layer(stream: TextIO) -> BinaryIO | None:
    """The byte stream under ``stream`` when writing to it costs a system call, else None."""
    try:
        stream.fileno()
    except (io.UnsupportedOperation, AttributeError, ValueError):
        return None
    buffer: BinaryIO | None = getattr(stream, "buffer", None)
    return buffer


class LineSink:
    """Writes log lines to ``stream``; the per-request ones gathered into one write.

    With PYTHONUNBUFFERED (our Dockerfile's setting) every write to stdout is a system call:
    one per request line cost ~10 us of a ~55 us request under load. Lines given to `gather`
    while an event loop runs are kept and written together, with one write and one flush, at
    most ``FLUSH_INTERVAL`` later, or at once when they pass ``FLUSH_BYTES``. Every other line
    (`write_line`: start-up, warnings, shutdown, a driver's thread) is written at once, after
    whatever is pending, so the order never changes and a server stopped by a signal, which
    exits without running atexit hooks, still writes its last request lines with its shutdown
    lines. What is pending at interpreter exit is written then; SIGKILL loses at most 50 ms.

    Gathered lines are UTF-8 bytes (orjson's output), copied into one bytearray and written to
    the stream's byte layer, so they are never decoded and encoded again; keeping the lines
    themselves in a list until the write cost 1.3 us more a line. A stream without a file
    descriptor (a StringIO) costs no system call, so every line is written to it at once.
    Structlog's loggers and the stdlib handler share one sink, so lines never interleave.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._binary = _binary_layer(stream)
        self._lock = threading.Lock()
        self._pending = bytearray()
        # The loop a flush is scheduled on: a loop that stopped never runs it, so the next
        # line gathered on another loop schedules its own.
        self._flush_loop: asyncio.AbstractEventLoop | None = None
        atexit.register(self.flush)

    def write_line(self, line: str) -> None:
        """Write ``line`` and a newline now, after any gathered line still pending."""
        with self._lock:
            if self._binary is None:
                self.stream.write(line + "\n")
                return
            pending = self._pending
            pending += line.encode("utf-8", "backslashreplace")
            pending += b"\n"
            self._write_pending()

    def gather(self, line: bytes) -> None:
        """Write the UTF-8 ``line`` and a newline within ``FLUSH_INTERVAL`` when an event loop
        runs in this thread (with the other lines gathered meanwhile), else now."""
        with self._lock:
            if self._binary is None:
                self.stream.write(line.decode() + "\n")
                return
            pending = self._pending
            pending += line
            pending += b"\n"
            if len(pending) < FLUSH_BYTES:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = None
                if loop is not None:
                    if self._flush_loop is not loop:
                        self._flush_loop = loop
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

    def _write_pending(self) -> None:
        binary = self._binary
        assert binary is not None
        pending = self._pending
        if binary.closed or self.stream.closed:
            # Nowhere to write them any more (a test's stream, a detached stdout).
            pending.clear()
            return
        # Whatever was written to the text layer by others goes first.
        self.stream.flush()
        if pending:
            data = bytes(pending)
            pending.clear()
            # Under PYTHONUNBUFFERED the byte layer is a raw file, whose write may take part.
            while data:
                data = data[binary.write(data) :]
        binary.flush()
