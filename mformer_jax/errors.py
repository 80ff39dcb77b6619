"""Expected failures (bad input): their classes, and how an entry point reports them.

An expected failure is something the user can fix: a missing or corrupt file, a bad flag, a
config whose parts disagree, a dataset laid out wrongly. It is raised as a `UserError` subclass
where the input is checked, with a message that says what is wrong and how to fix it. Every
entry point catches `UserError` (and only it) and prints that message as one line; anything else
(a shape bug inside JAX raising a plain ValueError, say) keeps its traceback.

The classes: `UserError` and three kinds of bad input (`ConfigError`, `InputError`,
`MissingInputError`), plus the two that code tells apart by type: `CorruptCheckpointError` (a
run falls back to an older step) and `CheckpointMismatchError` (weights of another model: no
fallback). Each also derives from the builtin error it stands for (ValueError, ...).
"""
import sys
from typing import NoReturn


class UserError(Exception):
  """Expected bad input: the message is the whole report (no traceback)."""


class ConfigError(UserError, ValueError):
  """A config field or command-line flag has a value the code cannot use, or parts of a config
  disagree (typically after a --config override); the message names the fields and values."""


class InputError(UserError, ValueError):
  """A file or folder the user gave cannot be used as the command needs (a wrong layout, an
  undecodable video, another model's outputs, a workdir that is not writable, full or in use);
  the message says what was expected."""


class MissingInputError(UserError, FileNotFoundError):
  """A file, folder or checkpoint the user named does not exist (or holds nothing yet); the
  message says how to create it."""


class CorruptCheckpointError(UserError, RuntimeError):
  """A checkpoint step of a run cannot be read, or its arrays fail their checksum or are not
  finite: `run.checkpoints.restore_newest` falls back to an older step."""


class CheckpointMismatchError(UserError, ValueError):
  """Weights that do not fit the model (missing, unexpected or mis-shaped names): the config's
  doing, not corruption, so nothing falls back."""


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
