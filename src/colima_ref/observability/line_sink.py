"""Where log lines go: written at once, flushed once per event-loop iteration."""

from __future__ import annotations

import asyncio
import atexit
import threading
from typing import TextIO


class LineSink:
    """Writes each line to ``stream`` at once and flushes the stream once per loop iteration.

    A flush is a system call: once per line it cost about 5 us of a request's ~50 us on the
    event loop. On the loop's thread the flush is deferred with ``call_soon``, so every line
    written while the loop runs its current batch of ready callbacks leaves in one flush, before
    the loop waits for I/O again: a line is never held longer than that. A line written with
    no running loop (start-up, shutdown, a driver's worker thread) is flushed at once, taking
    anything pending with it, and whatever is left at interpreter exit is flushed then.

    Structlog's loggers and the stdlib handler share one sink, so their lines never interleave.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._flush_scheduled = False
        atexit.register(self.flush)

    def write_line(self, line: str) -> None:
        """Write ``line`` and a newline; flush now, or later in this loop iteration."""
        with self._lock:
            self.stream.write(line + "\n")
            if self._flush_scheduled:
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.stream.flush()
                return
            self._flush_scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Flush what was written (also called at exit; a closed stream is left alone)."""
        with self._lock:
            self._flush_scheduled = False
            if not self.stream.closed:
                self.stream.flush()

    def close(self) -> None:
        """Flush, and stop flushing at exit: the stream is no longer this sink's to write."""
        self.flush()
        atexit.unregister(self.flush)
