r"""Compile the real training (or evaluation) step for a Cloud TPU slice on any machine, and say
whether it fits in the chips' memory, before the pod is created.

  python -m mformer_jax.plan --config=configs/released.py:k400_motionformer_336_16x8 \
      --topology=v5e:4x4 [--batch_per_chip=4 | --batch_per_chip=max | --global_batch=64] \
      [--mode=train|eval] [--out=plan.json] [--config.model.remat=full ...]
  python -m mformer_jax.plan --config=... --accelerator=v5litepod-16   (gcloud's name)

libtpu's compiler runs on this machine against the abstract devices of the slice
(`jax.experimental.topologies`), with the trainer's own state, shardings and step
(`train.make_train_step`; eval: `evaluator.eval_step`). The figures are the compiler's memory
analysis of a program that was compiled, not run. Exit status 2 with one `error:` line when
the plan does not fit (by how much, what to try), for a bad topology or batch, or without libtpu.

The jobs, one module each: `slices` names a slice (gcloud's accelerator types, topology
strings checked before libtpu sees them), `libtpu` finds libtpu and sets the environment a
compile-only process needs, `probe` compiles one setting and searches the largest batch,
`hlo` reads the compiled program (memory, collectives, the compiler's out-of-memory message),
`report` words the result, `__main__` is the command. Importing this package does not import
jax: the command sets the environment first.
"""
from mformer_jax.plan.libtpu import libtpu_path

__all__ = ['libtpu_path']
