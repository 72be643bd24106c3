"""``python -m rollback_drill.gameday ...``: the ``gameday`` command on its own (``rollback-drill gameday`` once wired)."""

from __future__ import annotations

import argparse
import sys

from rollback_drill.errors import DrillError, InputError, ToolchainError, VerificationFailed
from rollback_drill.evidence.redact import redact_text
from rollback_drill.gameday.cli import EXIT_FAILED, EXIT_INTERRUPTED, add_commands

EXIT_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rollback_drill.gameday")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["gameday", *(sys.argv[1:] if argv is None else argv)])
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("rollback-drill gameday: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (InputError, ToolchainError) as exc:
        print(f"rollback-drill gameday: {redact_text(str(exc).splitlines()[0])}", file=sys.stderr)
        return EXIT_INPUT
    except (VerificationFailed, DrillError) as exc:
        print(f"rollback-drill gameday: {redact_text(str(exc).splitlines()[0])}", file=sys.stderr)
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
