"""A run's machinery below training and evaluation: the device mesh and shardings (`sharding`),
the workdir and its lock (`workdir`), the run's own checkpoints (`checkpoints`) and stopping on
a signal (`preemption`)."""
