r"""Feature extraction: one pre-logits vector per video of a list, written to an .npz.

  python -m mformer_jax.features --config=configs/released.py:k400_motionformer_224_16x4 \
      --workdir=DIR --config.init.checkpoint=k400_motionformer_224_16x4.pyth \
      --videos=videos.txt --out=features.npz [--per_view]

--videos: a text file with one video path per line (relative paths are relative to the file's
folder), a folder (every video file below it, sorted) or one video. The model is the one
`--config.mode=eval` would evaluate: WORKDIR's latest checkpoint, else config.init.checkpoint.

The .npz holds `paths` (N,), `features` (N, D) float32: the model's (B, D) pre-logits feature
(`model.apply(..., return_features=True)`, after tanh) averaged over the test views (as the
evaluation averages scores), `views` (N, V, D) with --per_view, and `unreadable` / `reasons`
(M,) for the videos that could not be decoded: they are listed, never fatal. The file is
rewritten every --save_every videos; rerunning the same command skips the videos already in it
(and tries the unreadable ones again).
"""
import json
import os
import pathlib

from absl import app, flags
from ml_collections import config_flags
import numpy as np
import tqdm

from mformer_jax.errors import InputError, MissingInputError



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


def video_list(spec: str) -> list[str]:
  """The videos named by --videos (see module docstring)."""
  from mformer_jax.data import layouts  # pylint: disable=g-import-not-at-top
  p = pathlib.Path(spec)
  if p.is_dir():
    return [str(f) for f in sorted(p.rglob('*')) if f.suffix.lower() in layouts.VIDEO_EXTS]
  if not p.is_file():
    raise MissingInputError(f'no video list, folder or video at {spec}')
  if p.suffix.lower() in layouts.VIDEO_EXTS:
    return [str(p)]
  lines = [l.strip() for l in p.read_text().splitlines() if l.strip() and not l.startswith('#')]
  return [l if os.path.isabs(l) else str(p.parent / l) for l in lines]


def _settings(config, tag, per_view):
  """What makes two runs' features comparable; a resumed file must have been made with these."""
  d = config.data
  settings = dict(model=config.model.to_dict(), weights=tag, num_frames=d.num_frames,
                  sampling_rate=d.sampling_rate, crop_size=d.crop_size, sampler=d.sampler,
                  test_num_clips=d.test_num_clips, test_num_crops=d.test_num_crops, bgr=d.bgr,
                  per_view=per_view)
  return json.loads(json.dumps(settings))  # As read back (tuples become lists).


def _load(out, settings):
  if not os.path.exists(out):
    return {}, {}
  with np.load(out) as z:
    if json.loads(str(z['settings'])) != settings:
      raise InputError(f'{out} holds features made with another model or config; use a new --out')
    views = z['views'] if settings['per_view'] else [None] * len(z['paths'])
    done = {str(p): (f, v) for p, f, v in zip(z['paths'], z['features'], views)}
    return done, {str(p): str(r) for p, r in zip(z['unreadable'], z['reasons'])}


def _save(out, done, bad, settings):
  paths = list(done)
  empty = np.zeros((0, settings['model']['embed_dim']), np.float32)
  arrays = dict(paths=np.array(paths, str), settings=json.dumps(settings),
                features=np.stack([done[p][0] for p in paths]) if done else empty,
                unreadable=np.array(list(bad), str), reasons=np.array(list(bad.values()), str))
  if settings['per_view']:
    arrays['views'] = np.stack([done[p][1] for p in paths]) if done else empty[:, None]
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out + '.tmp', 'wb') as f:  # Atomic: an interrupted write never loses the file.
    np.savez(f, **arrays)
  os.replace(out + '.tmp', out)


def extract(config, workdir: str, videos: list[str], out: str, *, per_view=False, save_every=100):
  """Writes `out` (module docstring); returns (number of videos with features, unreadable)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mformer_jax import evaluate, sharding  # pylint: disable=g-import-not-at-top
  from mformer_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from mformer_jax.model import make_model  # pylint: disable=g-import-not-at-top
  model = make_model(config.model)
  params, tag = evaluate._params_to_evaluate(  # pylint: disable=protected-access
      config, workdir, model, sharding.make_mesh())
  settings = _settings(config, tag, per_view)
  done, bad = _load(out, settings)
  # The Orthoformer draws its first landmark at random even at test time: a fixed key.
  forward = jax.jit(lambda p, clip: model.apply({'params': p}, clip, train=False,
                                                return_features=True,
                                                rngs={'landmarks': jax.random.key(0)})[1])
  todo = [v for v in dict.fromkeys(videos) if v not in done]  # Unreadable ones are retried.
  for n, path in enumerate(tqdm.tqdm(todo, unit='video', desc='features'), 1):
    try:
      views = pipeline.load_video_views(path, config.data)
    except Exception as e:  # pylint: disable=broad-except
      bad[path] = str(e).splitlines()[0] if str(e) else type(e).__name__
    else:
      feats = np.asarray(forward(params, jnp.asarray(views)), np.float32)
      done[path] = (feats.mean(0), feats if per_view else None)
      bad.pop(path, None)
    if n % save_every == 0:
      _save(out, done, bad, settings)
  _save(out, done, bad, settings)
  return len(done), bad


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')  # tf.data decodes; the accelerators are JAX's.
  from mformer_jax import config_lib, errors  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  try:
    num, bad = extract(config_lib.finalize(f.config), f.workdir, video_list(f.videos), f.out,
                       per_view=f.per_view, save_every=f.save_every)
  except errors.UserError as e:
    errors.exit_with(e)
  print(f'{num} videos -> {f.out}' + (f'; {len(bad)} unreadable:' if bad else ''))
  for path, reason in bad.items():
    print(f'  unreadable {path}: {reason}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
