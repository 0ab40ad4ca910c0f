"""Success rate over the last N completed requests: the recovery criterion, live and in the report.

One definition for both so `verify-inference --mode recover` and the report agree on when inference
recovered. The window must be full: three lucky requests after an outage are not a recovery.
"""

from __future__ import annotations

from collections import deque


class SuccessWindow:
    def __init__(self, size: int):
        if size < 1:
            raise ValueError("window size must be at least 1")
        self._outcomes: deque[bool] = deque(maxlen=size)
        self._ok = 0

    def add(self, ok: bool) -> None:
        if len(self._outcomes) == self._outcomes.maxlen and self._outcomes[0]:
            self._ok -= 1
        self._outcomes.append(ok)
        self._ok += ok

    @property
    def full(self) -> bool:
        return len(self._outcomes) == self._outcomes.maxlen

    @property
    def rate(self) -> float:
        return self._ok / len(self._outcomes) if self._outcomes else 0.0

    def satisfied(self, threshold: float) -> bool:
        # Compare counts, not floats: 9/10 >= 0.9 must hold exactly.
        return self.full and self._ok >= threshold * len(self._outcomes) - 1e-9
