"""What a product Dockerfile says about its final image, read from the file itself.

The lab builds images/steps and images/shim without Docker (lab.images.product); the Dockerfiles stay
what a registry build uses. So the lab builder never restates the facts a Dockerfile holds: it takes
the final stage's user, entry point, environment, the paths it copies to and the user it creates from
here. Only the instructions these Dockerfiles use are understood; anything else in the final
stage is refused, so a new instruction cannot be silently left out of the lab's image.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

# Final-stage instructions the lab builder reproduces (FROM names the base the lab replaces with its own).
UNDERSTOOD = {"FROM", "COPY", "RUN", "ENV", "USER", "ENTRYPOINT", "ARG", "WORKDIR"}


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    destination: str
    stage: str = ""  # --from=<stage>, "" for the build context


@dataclass(frozen=True)
class Account:
    """`useradd --uid N … NAME` in a RUN line: the image's non-root user."""

    name: str
    uid: int
    shell: str


@dataclass(frozen=True)
class FinalStage:
    base: str
    user: str
    entrypoint: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    copies: tuple[Copy, ...]
    accounts: tuple[Account, ...]

    @property
    def env_list(self) -> tuple[str, ...]:
        return tuple(f"{k}={v}" for k, v in self.env)

    def copy_to(self, source_name: str) -> str:
        """Where the final stage copies the file named `source_name` (a basename) to."""
        for item in self.copies:
            if any(Path(s).name == source_name for s in item.sources):
                return item.destination if not item.destination.endswith("/") else item.destination + source_name
        raise KeyError(f"the final stage copies no {source_name}")


def _logical_lines(text: str) -> list[str]:
    """Instructions with their continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def _accounts(command: str) -> list[Account]:
    found = []
    for part in command.split("&&"):
        words = shlex.split(part)
        if not words or words[0] != "useradd":
            continue
        uid, shell, name = None, "/bin/sh", words[-1]
        for flag, value in zip(words, words[1:], strict=False):
            if flag in ("--uid", "-u"):
                uid = int(value)
            elif flag in ("--shell", "-s"):
                shell = value
        if uid is None:
            raise ValueError(f"useradd without --uid: {part.strip()}")
        found.append(Account(name, uid, shell))
    return found


def final_stage(dockerfile: Path) -> FinalStage:
    stages: list[list[tuple[str, str]]] = []
    for line in _logical_lines(dockerfile.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest.strip()))
    if not stages:
        raise ValueError(f"{dockerfile}: no FROM")
    base, user, entrypoint = "", "", ()
    env: dict[str, str] = {}
    copies: list[Copy] = []
    accounts: list[Account] = []
    for keyword, rest in stages[-1]:
        if keyword not in UNDERSTOOD:
            raise ValueError(f"{dockerfile}: the lab builder does not reproduce {keyword} (final stage)")
        if keyword == "FROM":
            base = rest.split()[0]
        elif keyword == "USER":
            user = rest
        elif keyword == "ENTRYPOINT":
            entrypoint = tuple(json.loads(rest))
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
        elif keyword == "COPY":
            words = rest.split()
            stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), "")
            plain = [w for w in words if not w.startswith("--")]
            copies.append(Copy(tuple(plain[:-1]), plain[-1], stage))
        elif keyword == "RUN":
            accounts += _accounts(rest)
    return FinalStage(base, user, entrypoint, tuple(env.items()), tuple(copies), tuple(accounts))
