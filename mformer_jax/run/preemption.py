"""Stopping a run on request, at a step every host agrees on, with a checkpoint of that step.

SIGTERM is how SLURM (`--signal=TERM@120`, launch/slurm.sh), Kubernetes and spot VMs announce
preemption; SIGINT is Ctrl-C. The first one sets a flag and the trainer stops after the step in
progress (an evaluation in progress finishes first), saves and exits with `EXIT_STATUS`; a
second one acts as it would without us (SIGINT: KeyboardInterrupt, SIGTERM: termination).

Agreement across hosts: in a multi-process run JAX's preemption service owns SIGTERM (it
installs its own handler and, through `reached_preemption`, names the same safe step on every
host), so only SIGINT is ours there; our flag is shared with an all-gather at the steps where the
trainer syncs anyway (its NaN-guard checks: every `train.log_every_steps` and every save), so a
multi-host stop by SIGINT comes at the next such step. A single process checks every step.
"""
import signal
import threading

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

# EX_TEMPFAIL (sysexits.h): "try again later" -- the same command continues the run. Distinct
# from 0 (finished), 1 (a crash) and 2 (bad input or environment: one `error:` line).
EXIT_STATUS = 75


def _jax_preemption_service() -> bool:
  """Whether JAX's preemption service (multi-host TPU) owns SIGTERM. JAX exposes this only as
  private state: where a release moves it, the answer is no (our handler), never an import error."""
  try:
    # Late and guarded: a private module, which a release may move (then: our handler).
    from jax._src import distributed  # pylint: disable=g-import-not-at-top
    return distributed.global_state.preemption_sync_manager is not None
  except (ImportError, AttributeError):
    return False


class Stop:
  """The signal handlers of one training run; `release()` puts the previous ones back."""

  def __init__(self):
    self.signum = 0
    jax_owns_sigterm = jax.process_count() > 1 and _jax_preemption_service()
    ours = [signal.SIGINT] + ([] if jax_owns_sigterm else [signal.SIGTERM])
    self._previous = {}
    if threading.current_thread() is threading.main_thread():  # Python's rule for handlers
      self._previous = {s: signal.signal(s, self._handle) for s in ours}

  def _handle(self, signum, frame):
    del frame
    self.signum = signum
    signal.signal(signum, self._previous[signum])  # the second one acts as usual
    logging.warning('%s received: stopping after this step with a checkpoint (send it again to '
                    'stop at once, without one)', signal.Signals(signum).name)

  def requested(self, mngr, step: int, sync: bool) -> str:
    """The reason ('SIGTERM', 'SIGINT', 'preemption notice') when every host stops after
    `step`, else ''. `sync`: whether this is a step where all hosts may all-gather."""
    if mngr.reached_preemption(step):  # JAX's service; already agreed by all hosts
      return 'preemption notice'
    if jax.process_count() == 1:
      return signal.Signals(self.signum).name if self.signum else ''
    if not sync:
      return ''
    flags = np.asarray(multihost_utils.process_allgather(np.int32(self.signum))).ravel()
    raised = [int(f) for f in flags if f]
    return signal.Signals(raised[0]).name if raised else ''

  def release(self):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}
