"""Whose fault a failure is: the configuration's, or the machine's.

A trial that fails because of its configuration (a NaN loss, a model too big for any batch)
stays failed. One that fails because of the machine (Ctrl-C, a SIGTERM from `scancel` or a
preemption, an out-of-memory caused by a neighbour, a tracking server or database that did not
answer) was never judged: it is marked interrupted and its configuration runs once more, after
an out-of-memory at half the batch size.
Types are recognised by name and module, so importing this costs nothing.
"""

from __future__ import annotations

OUT_OF_MEMORY = "out of memory"  # retried at half the batch size
UNREACHABLE_MODULES = ("mlflow", "requests", "urllib3", "sqlalchemy", "psycopg", "http.client")


def out_of_memory(exc: BaseException) -> bool:
    """A CPU or GPU allocation that failed (torch says so in its message, or in its type)."""
    text = str(exc)
    return (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or "can't allocate memory" in text
        or "out of memory" in text.lower()
    )


def infrastructure(exc: BaseException) -> str | None:
    """What of the machine failed behind `exc`, however deep the libraries wrapped it; None
    when the configuration is to blame."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return "interrupted"
        if out_of_memory(seen):
            return OUT_OF_MEMORY
        module = type(seen).__module__ or ""
        if isinstance(seen, ConnectionError | TimeoutError) or module.startswith(
            UNREACHABLE_MODULES
        ):
            return "a store did not answer"
        seen = seen.__cause__ or seen.__context__
    return None
