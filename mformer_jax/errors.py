"""The one base class for expected failures (bad input), and how an entry point reports them.

An expected failure is something the user can fix: a missing or corrupt file, a bad flag, a
config whose parts disagree, a dataset laid out wrongly. It is raised as a `UserError` subclass
where the input is checked, with a message that says what is wrong and how to fix it. Every
entry point catches `UserError` (and only it) and prints that message as one line; anything else
(a shape bug inside JAX raising a plain ValueError, say) keeps its traceback.

The subclasses keep the builtin base they had (ValueError, RuntimeError), so code that catches
those still works.
"""
import sys
from typing import Callable, NoReturn


class UserError(Exception):
  """Expected bad input: the message is the whole report (no traceback)."""


def exit_with(error: UserError, *, prog: str = '', status: int = 2) -> NoReturn:
  """Prints `error` as one line on stderr and exits with `status`."""
  prefix = f'{prog}: ' if prog else ''
  print(f'{prefix}error: {error}', file=sys.stderr)
  sys.exit(status)


def run_cli(main: Callable[[], object], *, prog: str = '', status: int = 2):
  """Runs `main()`; a UserError becomes one line on stderr and exit `status`."""
  try:
    return main()
  except UserError as e:
    exit_with(e, prog=prog, status=status)
