"""Training: the step (`step`), the loop around it with periodic evaluation (`loop`), the
optimizer (`optim`, and the AdamW fused into the backward pass, `fused`).

    from mformer_jax import train
    train.train_and_evaluate(config, workdir)

The names below load their module on first use: `train.step` imports without the input
pipeline (and so without TensorFlow), which only the loop needs.
"""
import importlib

_PUBLIC = {
    **dict.fromkeys(('Preempted', 'check_finite', 'restore_or_create_state', 'schedule_lengths',
                     'summarize', 'train_and_evaluate'), 'loop'),
    **dict.fromkeys(('abstract_train_state', 'create_train_state', 'loss_and_metrics',
                     'make_optimizer', 'make_train_step', 'train_step'), 'step'),
}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
  if name in _PUBLIC:
    return getattr(importlib.import_module(f'{__name__}.{_PUBLIC[name]}'), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
