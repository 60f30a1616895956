"""The README's terminal sessions, as fenced blocks of one of its sections.

A section of the README (``## Bidding from wscat``) holds fenced blocks; a block whose first
line starts with ``$ `` is one terminal's transcript:

- ``$ <command>``: a shell command; the lines up to the next ``$``, ``>`` or ``<`` line are
  its output. ``$ wscat ...`` starts wscat in a pseudo-terminal, and the lines after it are
  what that terminal shows: ``> <text>`` is typed, ``< <frame>`` is received, anything else
  is shown as it is (``Connected (press CTRL+C to quit)``).
- ``> ^C`` is Ctrl-C; ``> $ <command>`` is Ctrl-C, then a command at the shell prompt.

A plain code block (```` ```sh ````) is a terminal whose lines are commands with no output
shown.
"""

from __future__ import annotations

from dataclasses import dataclass


__all__ = ["Block", "Line", "Mismatch", "section_blocks"]


class Mismatch(AssertionError):
    """What the replay saw differs from the README, or did not come in time."""


@dataclass(frozen=True)
class Line:
    """One line of a transcript: ``kind`` is ``$`` (command), ``>`` (typed), ``<``
    (received), ``^C``, ``>$`` (Ctrl-C, then a command) or ``=`` (shown as it is)."""

    kind: str
    text: str
    number: int  # in the README, for messages

    @property
    def is_input(self) -> bool:
        return self.kind in {"$", ">", "^C", ">$"}


@dataclass(frozen=True)
class Block:
    """One fenced block of a section: a transcript, or (``plain``) commands only."""

    lines: tuple[Line, ...]
    plain: bool

    @property
    def steps(self) -> list[int]:
        """The indexes of the lines that are inputs."""
        return [i for i, line in enumerate(self.lines) if line.is_input]


def _classify(text: str, number: int, in_wscat: bool) -> Line:
    if text.startswith("$ "):
        return Line("$", text[2:], number)
    if in_wscat and text == "> ^C":
        return Line("^C", "", number)
    if in_wscat and text.startswith("> $ "):
        return Line(">$", text[4:], number)
    if in_wscat and text.startswith("> "):
        return Line(">", text[2:], number)
    if in_wscat and text.startswith("< "):
        return Line("<", text[2:], number)
    return Line("=", text, number)


def section_blocks(readme: str, title: str) -> list[Block]:
    """The fenced blocks of the ``## <title>`` section, in order."""
    lines = readme.splitlines()
    try:
        start = lines.index(f"## {title}")
    except ValueError:
        raise Mismatch(f"the README has no section '## {title}'") from None
    blocks: list[Block] = []
    current: list[tuple[int, str]] | None = None
    fence = ""
    for number in range(start + 1, len(lines)):
        text = lines[number]
        if current is None and text.startswith("## "):
            break
        if current is None and text.startswith("```"):
            current, fence = [], text[3:].strip()
        elif current is not None and text.startswith("```"):
            plain = fence == "sh" or not (current and current[0][1].startswith("$ "))
            parsed: list[Line] = []
            in_wscat = False
            for n, body in current:
                if plain:
                    if body.strip() and not body.lstrip().startswith("#"):
                        parsed.append(Line("$", body.split("  #")[0].strip(), n))
                    continue
                line = _classify(body, n, in_wscat)
                if line.kind in {"$", ">$"}:
                    in_wscat = line.text.startswith("wscat ")
                parsed.append(line)
            blocks.append(Block(tuple(parsed), plain))
            current = None
        elif current is not None:
            current.append((number + 1, text))
    return blocks
