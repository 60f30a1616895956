"""The README's terminal sessions, read from the README and replayed with the real wscat.

How a section's blocks are read is tests/wscat/readme.py's, how a line shown is matched
tests/wscat/bindings.py's, a terminal tests/wscat/terminal.py's. What the README cannot say,
the interleaving of its terminals, each test gives as a :data:`Schedule`: the block of each
input step in turn.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.support.waiting import Deadline
from tests.wscat.bindings import Bindings, match_line
from tests.wscat.readme import Block, Mismatch
from tests.wscat.terminal import Terminal


__all__ = ["Replay", "Schedule"]

#: The block of each input step, in the order the steps are replayed.
Schedule = list[int]


class Replay:
    """Replays the blocks of one section in the order of a schedule.

    Before a step, its terminal must have shown every README line before it; a step that is
    typed with a ``ref`` is complete once the line with that ``ref`` has been shown, any
    other once the lines right after it have (a command's output, wscat's greeting), or once
    wscat quit (Ctrl-C). The next step starts only when the one before is complete.
    """

    def __init__(
        self,
        blocks: list[Block],
        schedule: Schedule,
        *,
        env: Mapping[str, str],
        rewrite: Callable[[str], str],
        cwd: Path,
        deadline: float,
    ) -> None:
        used = sorted(set(schedule))
        for index in used:
            steps = len(blocks[index].steps)
            if schedule.count(index) != steps:
                raise Mismatch(
                    f"block {index} has {steps} input steps, the schedule gives it "
                    f"{schedule.count(index)}: update the schedule with the README"
                )
        self.blocks = blocks
        self.schedule = schedule
        self.deadline = deadline
        self.bindings = Bindings()
        self.terminals = {i: Terminal(blocks[i], dict(env), rewrite, cwd) for i in used}

    def run(self) -> None:
        try:
            next_step = {index: 0 for index in self.terminals}
            for index in self.schedule:
                terminal = self.terminals[index]
                line_index = terminal.block.steps[next_step[index]]
                next_step[index] += 1
                self._wait_matched(terminal, line_index)
                self._step(terminal, line_index)
            for terminal in self.terminals.values():
                self._wait_matched(terminal, len(terminal.block.lines))
        finally:
            for terminal in self.terminals.values():
                terminal.kill()

    def _step(self, terminal: Terminal, index: int) -> None:
        line = terminal.block.lines[index]
        if line.kind == ">":  # a typed line is matched by its echo on the screen
            terminal.typed = index + 1
        else:
            terminal.matched = index + 1
        if line.kind in {"^C", ">$"}:
            terminal.interrupt(self.deadline)
            self._check_screen(terminal)
        if line.kind in {"$", ">$"}:
            if line.text.startswith("wscat "):
                terminal.start_wscat(line.text)
            else:
                output = terminal.shell(line.text, self.deadline)
                self._match_output(terminal, output)
                return
        elif line.kind == ">":
            terminal.type(self.bindings.typed(line.text))
        self._wait_matched(terminal, self._completion(terminal.block, index))

    def _completion(self, block: Block, index: int) -> int:
        """How many lines of ``block`` must be matched for step ``index`` to be complete."""
        line = block.lines[index]
        if line.kind == ">":
            ref = _ref_of(line.text)
            for later in range(index + 1, len(block.lines)):
                other = block.lines[later]
                if other.kind in {"^C", ">$"}:
                    break
                if ref is not None and other.kind == "<" and _ref_of(other.text) == ref:
                    return later + 1
        end = index + 1
        while end < len(block.lines) and not block.lines[end].is_input:
            end += 1
        return end

    def _match_output(self, terminal: Terminal, output: list[str]) -> None:
        start = terminal.matched
        end = start
        while end < len(terminal.block.lines) and not terminal.block.lines[end].is_input:
            end += 1
        expected = terminal.block.lines[start:end]
        if len(output) != len(expected):
            raise Mismatch(
                f"README line {terminal.block.lines[start - 1].number}: {len(expected)} lines "
                f"of output expected, got {output!r}"
            )
        for line, seen in zip(expected, output, strict=True):
            match_line(line, seen, self.bindings)
        terminal.matched = end

    def _check_screen(self, terminal: Terminal) -> None:
        """Match what the terminal has shown so far against the README, in order."""
        lines = terminal.block.lines
        while terminal.consumed < len(terminal.screen.lines):
            seen = terminal.screen.lines[terminal.consumed]
            echo = terminal.matched < terminal.typed and lines[terminal.matched].kind == ">"
            if terminal.matched >= len(lines) or (lines[terminal.matched].is_input and not echo):
                raise Mismatch(
                    f"after README line {lines[terminal.matched - 1].number} the terminal "
                    f"showed {seen!r}, which the README does not"
                )
            match_line(lines[terminal.matched], seen, self.bindings)
            terminal.consumed += 1
            terminal.matched += 1

    def _wait_matched(self, terminal: Terminal, count: int) -> None:
        deadline = Deadline(self.deadline)
        while True:
            self._check_screen(terminal)
            if terminal.matched >= count:
                return
            if deadline.expired():
                wanted = terminal.block.lines[terminal.matched]
                raise Mismatch(
                    f"README line {wanted.number} ({wanted.text[:120]!r}) not shown within "
                    f"{self.deadline} s; the terminal's last lines: {terminal.screen.lines[-3:]!r}"
                )
            # Read every terminal: a program whose output is not read stalls.
            for other in self.terminals.values():
                other.read(0.02)


def _ref_of(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value.get("ref") if isinstance(value, dict) else None
