"""benchmarks/twin_search.py trains the motion twins' recipe as vmapped lanes: its schedule
must be the trainer's (configs/motion_twins.py through optim.lr_schedule)."""
import jax.numpy as jnp
import numpy as np

from benchmarks import twin_search
from configs import motion_twins
from mformer_jax import optim


def test_lane_schedule_is_the_twin_recipes_schedule():
  for steps in (512, 768):
    config = motion_twins.get_config(f'steps={steps}')
    spe = optim.steps_per_epoch(config.data.synthetic.num_train, config.train.batch_size)
    reference = optim.lr_schedule(config.train, spe)
    t = jnp.arange(steps)
    ours = twin_search.lr_at(t, config.train.base_lr, steps, config.train.lr_decay)
    np.testing.assert_allclose(ours, [reference(int(i)) for i in t], rtol=1e-6)
    assert float(twin_search.lr_at(steps, config.train.base_lr, steps, 0.1)) == 0.0

