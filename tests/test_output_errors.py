"""An output that refuses what is written (a full device, an I/O error) is an ordinary
error naming the output, exit 1, never reported as a bug; an OSError from anywhere else
still is one."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


class _Full(io.RawIOBase):
    """A device with no room: every write fails as a full disk does."""

    def writable(self) -> bool:
        """It takes writes (and refuses each)."""
        return True

    def write(self, _: object) -> int:
        """Refuse, as /dev/full does."""
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", str(EXAMPLES)],
        ["plan", str(EXAMPLES), "--no-refresh", "--state", "{state}"],
        ["plan", str(EXAMPLES), "--no-refresh", "--state", "{state}", "--format", "json"],
    ],
)
def test_a_full_output_is_an_error_naming_it(
    argv: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """validate and plan into a full device: exit 1, the output named, no traceback."""
    argv = [a.replace("{state}", str(tmp_path / "state.json")) for a in argv]
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(_Full(), 16)))
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "error: cannot write the output" in err
    assert "Traceback" not in err
    assert "bug" not in err
    assert not (tmp_path / "state.json").exists()  # a plan writes no state


def test_the_same_errno_from_elsewhere_is_still_a_bug(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC raised while the output works is not blamed on the output: a bug, reported."""

    def full_elsewhere(*_: object, **__: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cli, "_dispatch", full_elsewhere)
    assert cli.main(["validate", str(EXAMPLES)]) == 1
    out, err = capsys.readouterr()
    assert "this is a bug in reconciler" in err
    assert "cannot write the output" not in err
    assert out == ""  # nothing written to the output to find out whose fault it was


def test_an_error_naming_a_file_is_never_the_output(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError that names its file came from opening that file, even with the output full."""

    def full_file(*_: object, **__: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/elsewhere/file")

    monkeypatch.setattr(cli, "_dispatch", full_file)
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(_Full(), 16)))
    assert cli.main(["validate", str(EXAMPLES)]) == 1
    assert "this is a bug in reconciler" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_the_console_entry_into_dev_full(tmp_path: Path) -> None:
    """`reconciler validate examples/ > /dev/full`: exit 1, one error, the exit clean."""
    with open("/dev/full", "w", encoding="utf-8") as full:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "validate", str(EXAMPLES)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            cwd=tmp_path,
        )
    assert done.returncode == 1
    assert "error: cannot write the output" in done.stderr
    assert "Traceback" not in done.stderr
    assert "Exception ignored" not in done.stderr


def test_a_full_output_is_told_from_another_files_failure(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another file's ENOSPC while the output is full too: the other file's error stays a
    bug report, not 'cannot write the output' (the output was never written to)."""

    def full_elsewhere(*_: object, **__: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cli, "_dispatch", full_elsewhere)
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(_Full(), 16)))
    assert cli.main(["validate", str(EXAMPLES)]) == 1
    err = capsys.readouterr().err
    assert "this is a bug in reconciler" in err
    assert "cannot write the output" not in err


def test_the_output_stream_is_given_back_after_the_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """main() guards sys.stdout while the command runs and puts the stream back after."""
    before = sys.stdout
    assert cli.main(["validate", str(EXAMPLES)]) == 0
    assert sys.stdout is before
    assert "Valid:" in capsys.readouterr().out


def _shell(command: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``command`` in sh, with `RECONCILER` the reconciler command line of this Python."""
    return subprocess.run(
        ["sh", "-c", command.replace("RECONCILER", f"'{sys.executable}' -m reconciler")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_a_closed_output_is_an_error_not_a_bug(tmp_path: Path) -> None:
    """`reconciler validate >&-`: exit 1, 'the standard output is closed', no traceback."""
    done = _shell(f"exec RECONCILER validate '{EXAMPLES}' >&-", tmp_path)
    assert done.returncode == 1
    assert "error: the standard output is closed" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_a_full_error_stream_adds_nothing_to_the_output(tmp_path: Path) -> None:
    """`validate > FILE 2>/dev/full`: FILE holds the output as written, nothing more."""
    clean = _shell(f"RECONCILER validate '{EXAMPLES}' > clean.txt 2>/dev/null", tmp_path)
    assert clean.returncode == 0
    _shell(f"RECONCILER validate '{EXAMPLES}' > out.txt 2>/dev/full", tmp_path)
    written = (tmp_path / "out.txt").read_text(encoding="utf-8")
    assert written in ("", (tmp_path / "clean.txt").read_text(encoding="utf-8"))


def test_a_closed_output_in_process_leaves_the_collector_as_it_was(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """main() with no stdout returns 1 before pausing the collector (it was left off)."""
    import gc  # noqa: PLC0415 - only this test looks at the collector

    monkeypatch.setattr(sys, "stdout", None)
    was = gc.isenabled()  # whatever earlier tests left: on for this one, as a console run
    gc.enable()
    try:
        assert cli.main(["validate", str(EXAMPLES)]) == 1
        assert gc.isenabled()
    finally:
        if not was:
            gc.disable()
    assert "the standard output is closed" in capsys.readouterr().err
