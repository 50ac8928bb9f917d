"""``interp``: the command line.

Every command takes ``--json`` and then prints exactly one strict JSON document on stdout
(non-finite numbers become ``null``); progress bars and warnings go to stderr. Every way a
command can fail ends the same way: one line ``error: ...`` on stderr that names the bad
input and the fix (with ``--json``, also ``{"error": ...}`` on stdout), and exit status 2
for a bad input, 130 for an interrupt (the line then says what was saved). No traceback,
unless interp itself has a bug.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

import typer
from tqdm.auto import tqdm

from interp.commands import app
from interp.commands.common import strict_json
from interp.errors import InterpError
from interp.render import visible
from interp.storage.cache import last_checkpoint

__all__ = ["app", "main"]


# Known noise from dependencies, filtered by message; every other warning reaches the user.
NOISE = (
    r".*torch_dtype.* is deprecated",
    r".*tensor\.detach\(\) first",  # the bridge reads a hook value that requires grad
    r".*does not have many workers",
    r".*generation flags are not valid",
    r".*TypedStorage is deprecated",
    r".*pkg_resources is deprecated",
)


def _quiet() -> None:
    """Every warning once, as one ``warning:`` line (interp's own: caps, cache rebuilds, residuals);
    deprecation notices and the known noise of dependencies (``NOISE``) filtered."""
    warnings.simplefilter("once")
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    # through tqdm, so a warning raised while a progress bar is drawn gets its own line, not the bar's
    warnings.showwarning = lambda message, category, *a, **k: tqdm.write(f"warning: {visible(message)}",
                                                                         file=sys.stderr)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("transformer_lens").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _fail(message: str, code: int, as_json: bool) -> None:
    message = visible(" ".join(str(message).split()))  # one line; an ESC from a file name never drives the terminal
    if as_json:
        sys.stdout.write(strict_json({"error": message}) + "\n")
    sys.stderr.write(f"error: {message}\n")
    sys.exit(code)


def _usage(exc: typer.TyperException) -> str:
    """A click usage error in one line, with where to look."""
    ctx = getattr(exc, "ctx", None)
    command = f"interp {ctx.info_name}" if ctx is not None and ctx.parent is not None else "interp"
    where = f"; see `{command} --help`"
    if type(exc).__name__ == "NoArgsIsHelpError":
        sys.stderr.write(exc.format_message() + "\n")
        return "no command given: choose one of the commands above, e.g. `interp info`"
    text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    return text.rstrip(".") + where


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _interrupted() -> str:
    saved = last_checkpoint()
    if saved:
        return f"interrupted; a checkpoint is saved at {saved}: rerun the same command to resume from it"
    return "interrupted; nothing was saved (no Result, no checkpoint)"


_TERMINATED: list[int] = []


def _on_sigterm(signum, frame) -> None:
    """SIGTERM (Slurm's time limit, `docker stop`) ends a command as Ctrl-C does: checkpoints stay, and the
    last line says what was saved; the exit status is 143."""
    _TERMINATED.append(signum)
    raise KeyboardInterrupt


class _Visible:
    """stdout with control bytes (an ESC from a prompt, a file name or a corpus) written as ``\\xNN``: what a
    command prints never drives the terminal. Newlines, tabs and carriage returns pass."""

    TERMINAL = __import__("re").compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(self.TERMINAL.sub(lambda m: f"\\x{ord(m.group()):02x}", text))

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main() -> None:
    """Entry point: run the app; every failure ends in one ``error:`` line (see the module docstring)."""
    stdout = sys.stdout
    sys.stdout = _Visible(stdout)
    try:
        _main()
    finally:
        sys.stdout = stdout


def _main() -> None:
    import signal

    _quiet()
    as_json = "--json" in sys.argv
    if threading_main():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = app(standalone_mode=False)  # typer turns Ctrl-C into a returned 130
    except InterpError as exc:
        _fail(str(exc), 2, as_json)
    except (KeyboardInterrupt, typer.Abort):
        _fail(_interrupted(), 143 if _TERMINATED else 130, as_json)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # click's usage errors (typer bundles its own click)
        _fail(_usage(exc), 2, as_json)
    if code == 130:
        _fail(_interrupted(), 143 if _TERMINATED else 130, as_json)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
