r"""Feature extraction: one pre-logits vector per video of a list, written to an .npz.

  python -m mformer_jax.features --config=configs/released.py:k400_motionformer_224_16x4 \
      --workdir=DIR --config.init.checkpoint=k400_motionformer_224_16x4 \
      --videos=videos.txt --out=features.npz [--per_view]

--videos: a text file with one video path per line (relative paths are relative to the file's
folder), a folder (every video file below it, sorted) or one video. The model is the one
`--config.mode=eval` would evaluate: WORKDIR's latest checkpoint, else config.init.checkpoint.

The .npz holds `paths` (N,), `features` (N, D) float32: the model's (B, D) pre-logits feature
(`model.apply(..., return_features=True)`, after tanh) averaged over the test views (as the
evaluation averages scores), `views` (N, V, D) with --per_view, `scores` (N, C): the softmax
averaged over the views (Epic-Kitchens: `verb_scores`, `noun_scores`), `class_names` (C,) where
the names are known (`verb_class_names`, ...; weights/labels.py), and `unreadable` / `reasons`
(M,) for the videos that could not be decoded: they are listed, never fatal. The file is
rewritten every --save_every videos; rerunning the same command skips the videos already in it
(and tries the unreadable ones again).
"""
import tensorflow as tf
from absl import app, flags
from ml_collections import config_flags

from mformer_jax import config_lib, errors
from mformer_jax.eval import features
from mformer_jax.run import checkpoints


def _define_flags():
  """Defined only when run as a command: importing `extract` must not claim absl's --config
  and --workdir, which mformer_jax.main defines too."""
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Trained run (or an empty folder with init.checkpoint).')
  flags.DEFINE_string('videos', None, 'List file, folder or video.')
  flags.DEFINE_string('out', None, 'Output .npz.')
  flags.DEFINE_bool('per_view', False, "Also keep every view's feature.")
  flags.DEFINE_integer('save_every', 100, 'Videos between two writes of --out.')
  flags.mark_flags_as_required(['config', 'workdir', 'videos', 'out'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  tf.config.set_visible_devices([], 'GPU')  # tf.data decodes; the accelerators are JAX's.
  f = flags.FLAGS
  try:
    num, bad = features.extract(config_lib.finalize(f.config), f.workdir, features.video_list(f.videos), f.out,
                       per_view=f.per_view, save_every=f.save_every)
  except errors.UserError as e:
    errors.exit_with(e)
  print(f'{num} videos -> {f.out}' + (f'; {len(bad)} unreadable:' if bad else ''))
  for path, reason in bad.items():
    print(f'  unreadable {path}: {reason}')


if __name__ == '__main__':
  _define_flags()
  checkpoints.quiet_orbax()
  app.run(main)
