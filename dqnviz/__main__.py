"""The ``dqnviz`` command (pyproject's script) and ``python -m dqnviz``: :func:`dqnviz.cli.main`,
with stop signals noted from the first statement on.

Importing the command line takes a tenth of a second, and a Ctrl-C there would print Python's
traceback: until :mod:`dqnviz.cli` has set its own handlers, a stop signal is noted, and the
command then stops in one line with its exit status (130 for Ctrl-C), as it does later.
"""

import signal
import sys


def main() -> int:
    from dqnviz.stopping import signals_to_take

    noted = []
    previous = {number: signal.signal(number, lambda signum, frame: noted.append(signum))
                for number in signals_to_take()}
    from dqnviz import cli

    for number, handler in previous.items():
        signal.signal(number, handler if handler is not None else signal.SIG_DFL)
    if noted:
        print("dqnviz: interrupted", file=sys.stderr)
        return 128 + int(noted[0])
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
