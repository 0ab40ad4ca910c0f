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
        if self.directory is None:
            return
        probe = self.directory if self.directory.exists() else self.directory.parent
        if (self.directory.exists() and not self.directory.is_dir()) or not os.access(probe, os.W_OK):
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
