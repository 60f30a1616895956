"""The README's terminal sessions, read from the README and replayed with the real wscat.

A section of the README (``## Bidding from wscat``) holds fenced blocks; a block whose first
line starts with ``$ `` is one terminal's transcript:

- ``$ <command>``: a shell command; the lines up to the next ``$``, ``>`` or ``<`` line are
  its output. ``$ wscat ...`` starts wscat in a pseudo-terminal, and the lines after it are
  what that terminal shows: ``> <text>`` is typed, ``< <frame>`` is received, anything else
  is shown as it is (``Connected (press CTRL+C to quit)``).
- ``> ^C`` is Ctrl-C; ``> $ <command>`` is Ctrl-C, then a command at the shell prompt.

A plain code block (```` ```sh ````) is a terminal whose lines are commands with no output
shown. What the README cannot say, the interleaving of its terminals, each test gives as a
:data:`Schedule`: the block of each input step in turn.

Values the system makes anew each run (tokens, connection and gateway ids, positions, message
ids, times) cannot match; :class:`Bindings` ties each README value to the value seen in its
place, the first time, and requires the same README value to stand for the same seen value
everywhere after (and two README values for two seen values). Typed lines are sent with their
bound values substituted, so a ``since`` typed in the README is the position seen in this run.
"""

from __future__ import annotations

import codecs
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


__all__ = [
    "Bindings",
    "Block",
    "Line",
    "Mismatch",
    "Replay",
    "Schedule",
    "Screen",
    "section_blocks",
]

#: The block of each input step, in the order the steps are replayed.
Schedule = list[int]

#: Fields whose values are made by the system each run (bound, not compared).
VOLATILE = frozenset(
    {"token", "connection", "gateway", "id", "ts", "position", "since", "ends_at", "placed_at"}
)
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
_ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")
_COLUMNS = 4000  # wide enough that readline never wraps a typed line


class Mismatch(AssertionError):
    """What the replay saw differs from the README, or did not come in time."""


# Reading the README.


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


# Matching.


class Bindings:
    """README value ↔ value seen this run, one to one, per section."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, Any], Any] = {}
        self._readme: dict[tuple[str, Any], Any] = {}

    def bind(self, expected: Any, actual: Any, where: str) -> None:
        if type(expected) is not type(actual):
            raise Mismatch(f"{where}: expected a {type(expected).__name__}, got {actual!r}")
        key, back = (type(expected).__name__, expected), (type(actual).__name__, actual)
        if key in self._seen:
            if self._seen[key] != actual:
                raise Mismatch(
                    f"{where}: the README's {expected!r} was {self._seen[key]!r} before, "
                    f"now {actual!r}"
                )
            return
        if back in self._readme:
            raise Mismatch(
                f"{where}: {actual!r} stands for the README's {self._readme[back]!r} already, "
                f"not for {expected!r}"
            )
        self._seen[key], self._readme[back] = actual, expected

    def substitute(self, value: Any) -> Any:
        """``value`` with every README value already bound replaced by what it stood for."""
        return self._seen.get((type(value).__name__, value), value)

    def compare(self, expected: Any, actual: Any, where: str, key: str = "") -> None:
        """Structural equality (object keys in order), binding the values of volatile fields."""
        if key in VOLATILE and not isinstance(expected, list | dict) and expected is not None:
            self.bind(expected, actual, f"{where} field {key!r}")
            return
        if isinstance(expected, list) and expected and isinstance(expected[0], tuple):
            if not (isinstance(actual, list) and all(isinstance(a, tuple) for a in actual)):
                raise Mismatch(f"{where}: expected an object, got {actual!r}")
            if [k for k, _ in expected] != [k for k, _ in actual]:
                raise Mismatch(
                    f"{where}: keys {[k for k, _ in actual]} instead of {[k for k, _ in expected]}"
                )
            for (name, value), (_, seen) in zip(expected, actual, strict=True):
                self.compare(value, seen, f"{where}.{name}", name)
            return
        if isinstance(expected, list):
            if not isinstance(actual, list) or len(actual) != len(expected):
                raise Mismatch(f"{where}: expected {len(expected)} items, got {actual!r}")
            for n, (value, seen) in enumerate(zip(expected, actual, strict=True)):
                self.compare(value, seen, f"{where}[{n}]", key)
            return
        if type(expected) is not type(actual) or expected != actual:
            raise Mismatch(f"{where}: expected {expected!r}, got {actual!r}")

    def typed(self, text: str) -> str:
        """A typed README line as this run must send it: bound volatile values replaced."""
        try:
            value = json.loads(text)
        except ValueError:
            return text  # sent as written (the README types malformed JSON on purpose)
        if not isinstance(value, dict) or _compact(value) != text:
            return text
        return _compact(
            {
                name: self.substitute(field) if name in VOLATILE else field
                for name, field in value.items()
            }
        )


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _pairs(text: str) -> Any:
    """JSON with every object as a list of (key, value) pairs, so that key order counts."""
    return json.loads(text, object_pairs_hook=list)


def match_line(expected: Line, actual: str, bindings: Bindings) -> None:
    """Check one line a terminal showed against the README's line."""
    where = f"README line {expected.number}"
    if expected.kind == ">":
        wanted = "> " + bindings.typed(expected.text)
        if actual != wanted:
            raise Mismatch(f"{where}: the terminal echoed {actual!r}, not {wanted!r}")
        return
    if expected.kind == "<":
        if not actual.startswith("< "):
            raise Mismatch(f"{where}: expected a received frame, got {actual!r}")
        try:
            seen = _pairs(actual[2:])
        except ValueError:
            raise Mismatch(f"{where}: {actual!r} is not JSON") from None
        bindings.compare(_pairs(expected.text), seen, f"{where} ({actual[2:]})")
        return
    try:
        wanted_value = _pairs(expected.text)
    except ValueError:
        wanted_value = None
    if isinstance(wanted_value, list):  # command output that is a JSON object
        try:
            seen_value = _pairs(actual)
        except ValueError:
            raise Mismatch(f"{where}: {actual!r} is not JSON") from None
        bindings.compare(wanted_value, seen_value, f"{where} ({actual})")
    elif _JWT.match(expected.text):
        bindings.bind(expected.text, actual, f"{where} (a token)")
    elif actual != expected.text:
        raise Mismatch(f"{where}: expected {expected.text!r}, got {actual!r}")


# A terminal.


class Screen:
    """Just enough of a terminal for readline's output: lines, carriage returns, erasing."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._line: list[str] = []
        self._column = 0
        self._rest = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> None:
        text = self._rest + self._decoder.decode(data)
        self._rest = ""
        i = 0
        while i < len(text):
            char = text[i]
            if char == "\x1b":
                sequence = _CSI.match(text, i)
                if sequence is None:
                    self._rest = text[i:]  # the rest of it comes with the next read
                    return
                self._control(sequence.group(1), sequence.group(2))
                i = sequence.end()
                continue
            if char == "\r":
                self._column = 0
            elif char == "\n":
                self.lines.append("".join(self._line).rstrip())
                self._line, self._column = [], 0
            elif char == "\b":
                self._column = max(0, self._column - 1)
            elif char >= " ":
                self._line[self._column : self._column + 1] = [char]
                if len(self._line) < self._column:
                    self._line[self._column : self._column] = [" "] * (
                        self._column - len(self._line)
                    )
                self._column += 1
            i += 1

    def _control(self, parameters: str, final: str) -> None:
        count = int(parameters) if parameters.isdigit() else None
        if final == "G":
            self._column = (count or 1) - 1
            self._pad()
        elif final == "D":
            self._column = max(0, self._column - (count or 1))
        elif final == "C":
            self._column += count or 1
            self._pad()
        elif final in "KJ":
            if final == "K" and count == 2:
                self._line = []
            else:
                del self._line[self._column :]
        # Colours (m) and anything else change no text.

    def _pad(self) -> None:
        if len(self._line) < self._column:
            self._line.extend(" " * (self._column - len(self._line)))


@dataclass
class Terminal:
    """One README block replayed: shell variables, and wscat in a pseudo-terminal when it runs."""

    block: Block
    env: dict[str, str]
    rewrite: Callable[[str], str]
    cwd: Path
    variables: dict[str, str] = field(default_factory=dict)
    matched: int = 0  # README lines of the block checked so far
    process: subprocess.Popen[bytes] | None = None
    master: int | None = None
    screen: Screen = field(default_factory=Screen)
    consumed: int = 0  # screen lines checked so far
    typed: int = 0  # README lines up to the last typed one (its echo is still to match)

    def _command_env(self) -> dict[str, str]:
        return {**self.env, **self.variables}

    def shell(self, command: str, timeout: float) -> list[str]:
        """Run a command as bash would at the prompt; return its output lines."""
        command = self.rewrite(command)
        assignment = _ASSIGNMENT.match(command)
        if assignment:
            name = assignment.group(1)
            script = f'{command}; printf "%s" "${name}"'
        else:
            script = command
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=self.cwd,
            env=self._command_env(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise Mismatch(f"`{command}` exited with {result.returncode}: {result.stderr!r}")
        output = result.stdout.decode()
        if assignment:
            self.variables[assignment.group(1)] = output
            return []
        return output.splitlines()

    def start_wscat(self, command: str) -> None:
        """``wscat ...`` in a pseudo-terminal, as bash expands it."""
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, _COLUMNS, 0, 0))
        try:
            self.process = subprocess.Popen(
                ["bash", "-c", "exec " + self.rewrite(command)],
                cwd=self.cwd,
                env={**self._command_env(), "TERM": "dumb"},
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
            )
        finally:
            os.close(slave)
        self.master, self.screen, self.consumed = master, Screen(), 0

    def read(self, timeout: float) -> None:
        """Feed what the terminal shows within ``timeout`` to the screen."""
        if self.master is None:
            return
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the program exited and its side of the terminal closed
                data = b""
            if data:
                self.screen.feed(data)
            elif self.process is not None and self.process.poll() is not None:
                self._close_master()

    def _close_master(self) -> None:
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def type(self, text: str) -> None:
        assert self.master is not None, "nothing runs in this terminal"
        os.write(self.master, text.encode() + b"\r")

    def interrupt(self, timeout: float) -> None:
        """Ctrl-C: wscat quits; its terminal's last lines are read first."""
        process = self.process
        if process is None:
            return
        if process.poll() is None and self.master is not None:
            os.write(self.master, b"\x03")
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            if time.monotonic() > deadline:
                raise Mismatch(f"wscat did not quit on Ctrl-C within {timeout} s")
            self.read(0.05)
        while self.master is not None:
            self.read(0.05)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None
        self._close_master()


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
        deadline = time.monotonic() + self.deadline
        while True:
            self._check_screen(terminal)
            if terminal.matched >= count:
                return
            if time.monotonic() > deadline:
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
