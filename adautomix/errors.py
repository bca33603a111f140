"""The two kinds of failure a user is told about in one line (by the CLIs, and by a pipeline
step's log), each error type of the package being one or the other:

- `InputError`: what was asked for cannot work (a config value, a dataset, a checkpoint file, a
  candidate model); the message names the thing at fault and the fix. Exit status 2.
- `RunFailure`: the input was fine but the run could not be done or went wrong (a tracking
  server that does not answer, a loss that became NaN, a cluster that refused the run). Exit
  status 1.

Anything else is a bug, and its traceback is the report."""


class InputError(ValueError):
    """Bad input; the message names it and the fix."""


class RunFailure(RuntimeError):
    """A run that could not be done or went wrong; the message says what happened."""
