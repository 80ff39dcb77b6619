"""Video input: dataset preparation, tf.data pipelines, the synthetic motion dataset.

Importing this package is cheap (no TensorFlow): the trainer imports `config` early and the
preparation workers import `video`/`layouts` only.
"""

# The exact preparation commands, kept in sync with data/README.md. Placeholders in caps.
PREPARE_COMMANDS = {
    'kinetics400': ('python -m mformer_jax.data.prepare kinetics --videos K400/train --split train '
                    '--out OUT --short-side 320  (and --videos K400/val --split test)'),
    'kinetics600': ('python -m mformer_jax.data.prepare kinetics --videos K600/train --split train '
                    '--out OUT --short-side 320  (and --videos K600/val --split test)'),
    'ssv2': ('python -m mformer_jax.data.prepare ssv2 --videos SSV2/20bn-something-something-v2 '
             '--annotations SSV2/labels --split train --out OUT  (and --split test)'),
    'epic_kitchens': ('python -m mformer_jax.data.prepare epic_kitchens --frames EPIC-KITCHENS '
                      '--annotations epic-kitchens-100-annotations --split train --out OUT  '
                      '(and --split test)'),
}


class DatasetNotFoundError(ValueError):
  """A real dataset was requested but `data_dir` holds no prepared split."""

  def __init__(self, name: str, data_dir: str, split: str):
    cmd = PREPARE_COMMANDS.get(name, 'see data/README.md')
    where = repr(data_dir) if data_dir else 'config.data.data_dir (not set)'
    super().__init__(
        f'{name}: no prepared {split!r} split in {where}. Prepare it once with\n  {cmd}\n'
        f'then pass --config.data.data_dir=OUT (details: data/README.md). '
        f'Or use --config.data.name=synthetic_motion, which needs no files.')
