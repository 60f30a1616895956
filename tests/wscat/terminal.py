"""A README block replayed in a terminal: shell commands, and wscat in a pseudo-terminal."""

from __future__ import annotations

import codecs
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.waiting import Deadline
from tests.wscat.readme import Block, Mismatch


__all__ = ["Screen", "Terminal"]

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
_ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")
_COLUMNS = 4000  # wide enough that readline never wraps a typed line


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
        deadline = Deadline(timeout)
        while process.poll() is None:
            if deadline.expired():
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
