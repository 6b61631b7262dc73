"""Helpers of the command-line tests: run a command in-process, check one-line errors."""

from __future__ import annotations

from netsqueeze.cli import main


def cli(capsys, *argv):
    """Run ``netsqueeze ARGV`` in this process; return (exit code, stdout, stderr)."""
    code = main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, command, text):
    """A usage or input error: exit 2 and one line naming the command and ``text``."""
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"netsqueeze {command}: error: ")
    assert text in lines[0], err
