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
from typing import NoReturn


class UserError(Exception):
  """Expected bad input: the message is the whole report (no traceback)."""


class ConfigError(UserError, ValueError):
  """A config field or command-line flag has a value the code cannot use, or parts of a config
  disagree (typically after a --config override); the message names the fields and values."""


class InputError(UserError, ValueError):
  """A file or folder the user gave holds something other than what the command needs (a wrong
  layout, another model's outputs); the message says what was expected."""


class MissingInputError(UserError, FileNotFoundError):
  """A file, folder or checkpoint the user named does not exist (or holds nothing yet); the
  message says how to create it."""


def report(error: UserError, *, prog: str = '', one_line: bool = False) -> int:
  """Prints `error` on stderr as `[prog: ]error: message`; returns 2, the exit status of bad
  input (as argparse and absl use for a bad flag). one_line joins a multi-line message."""
  message = str(error)
  if one_line:
    message = '; '.join(line.strip() for line in message.splitlines() if line.strip())
  print(f'{prog}: error: {message}' if prog else f'error: {message}', file=sys.stderr)
  return 2


def exit_with(error: UserError, *, prog: str = '', one_line: bool = False) -> NoReturn:
  """`report(error)`, then exit with its status."""
  sys.exit(report(error, prog=prog, one_line=one_line))
