"""Argo output parameters: one file per value under the step's outputs directory (Argo's `valueFrom.path`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from steps.errors import BadInput, InfrastructureError


class Outputs:
    """Argo reads output parameters from files (`valueFrom.path`); one file per value."""

    def __init__(self, directory: str | None):
        self.directory = Path(directory) if directory else None

    def check(self) -> None:
        """Refuse, before anything changes, a directory that cannot be made; create nothing yet (bad input
        leaves no trace). Its parents need not exist: in a fresh steps container nothing below /tmp does,
        and `created()` (or the first `write`) makes them."""
        if self.directory is None:
            return
        probe = self.directory
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if probe == self.directory and not probe.is_dir():
            raise BadInput(f"outputs directory {self.directory} exists and is not a directory")
        if not probe.is_dir():
            raise BadInput(f"outputs directory {self.directory} cannot be created: {probe} is not a directory")
        if not os.access(probe, os.W_OK):
            raise BadInput(f"outputs directory {self.directory} is not writable")

    def write(self, name: str, value: Any) -> None:
        if self.directory is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            (self.directory / name).write_text(text)
        except OSError as error:
            raise InfrastructureError(f"cannot write output {name}: {error.strerror}") from None

    def created(self) -> Path:
        """The directory, created now (parents too): for the files a step writes itself (a stream, a plot)."""
        if self.directory is None:
            raise BadInput("no outputs directory given")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InfrastructureError(f"cannot create outputs directory {self.directory}: {error.strerror}") from None
        return self.directory
