"""``with`` for the things the tooling starts: the block runs between ``start`` and ``close``."""

from __future__ import annotations

from types import TracebackType
from typing import Self


__all__ = ["Started"]


class Started:
    """A base whose ``with`` block starts the object and closes it however the block ends."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop for good, at the end of a ``with`` block: :meth:`stop` unless overridden."""
        self.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
