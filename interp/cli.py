"""``interp``: the command line.

Every command takes ``--json`` and then prints exactly one JSON document on stdout;
progress bars and warnings go to stderr. A bad input prints one line,
``error: ...``, and exits with status 2 (no traceback).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings

from interp.commands import app
from interp.errors import InterpError

__all__ = ["app", "main"]


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("transformer_lens").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")



def main() -> None:
    """Entry point: run the app, turning InterpError into one line and exit status 2."""
    _quiet()
    as_json = "--json" in sys.argv
    try:
        app(standalone_mode=False)
    except InterpError as exc:
        if as_json:
            sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
    except Exception as exc:  # click usage errors, aborts
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, (click.exceptions.Abort, KeyboardInterrupt)):
            sys.stderr.write("interrupted\n")
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
