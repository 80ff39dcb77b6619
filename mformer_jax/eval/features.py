"""Features of a list of videos: one pre-logits vector per video (the test views averaged),
written to an .npz that a rerun resumes. The command is `python -m mformer_jax.features`, whose
docstring describes the file.
"""
import json
import os
import pathlib
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from mformer_jax.data import layouts, pipeline
from mformer_jax.errors import InputError, MissingInputError
from mformer_jax.eval import evaluator
from mformer_jax.model import head_prefix, make_model, outputs_by_head
from mformer_jax.run import sharding
from mformer_jax.weights import labels


def video_list(spec: str) -> list[str]:
  """The videos named by --videos (see module docstring)."""
  p = pathlib.Path(spec)
  if p.is_dir():
    videos = [str(f) for f in sorted(p.rglob('*')) if f.suffix.lower() in layouts.VIDEO_EXTS]
    if not videos:  # an empty .npz and exit 0 would look like success
      raise MissingInputError(f'no video files in the folder {spec} (nor below it; looked for '
                              f'{", ".join(sorted(layouts.VIDEO_EXTS))})')
    return videos
  if not p.is_file():
    raise MissingInputError(f'no video list, folder or video at {spec}')
  if p.suffix.lower() in layouts.VIDEO_EXTS:
    return [str(p)]
  lines = [l.strip() for l in p.read_text().splitlines() if l.strip() and not l.startswith('#')]
  if not lines:
    raise MissingInputError(f'the video list {spec} names no video (one path per line)')
  return [l if os.path.isabs(l) else str(p.parent / l) for l in lines]


def _settings(config, tag, per_view, heads, names):
  """What makes two runs' features comparable; a resumed file must have been made with these."""
  d = config.data
  settings = dict(model=config.model.to_dict(), weights=tag, num_frames=d.num_frames,
                  sampling_rate=d.sampling_rate, crop_size=d.crop_size, sampler=d.sampler,
                  test_num_clips=d.test_num_clips, test_num_crops=d.test_num_crops, bgr=d.bgr,
                  per_view=per_view, heads=heads, class_names=names)
  return json.loads(json.dumps(settings))  # As read back (tuples become lists).


def _load(out, settings):
  if not os.path.exists(out):
    return {}, {}
  try:
    z = np.load(out)
    made_with = json.loads(str(z['settings']))
  except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile):  # a folder, another file
    raise InputError(f'--out={out} exists and is not a features file of this command; use a '
                     'new --out (nothing was overwritten)') from None
  with z:
    if made_with != settings:
      raise InputError(f'{out} holds features made with another model or config; use a new --out')
    views = z['views'] if settings['per_view'] else [None] * len(z['paths'])
    scores = [{h: z[f'{head_prefix(h)}scores'][i] for h in settings['heads']}
              for i in range(len(z['paths']))]
    done = {str(p): (f, v, s) for p, f, v, s in zip(z['paths'], z['features'], views, scores)}
    return done, {str(p): str(r) for p, r in zip(z['unreadable'], z['reasons'])}


def _save(out, done, bad, settings):
  paths = list(done)
  empty = np.zeros((0, settings['model']['embed_dim']), np.float32)
  arrays = dict(paths=np.array(paths, str), settings=json.dumps(settings),
                features=np.stack([done[p][0] for p in paths]) if done else empty,
                unreadable=np.array(list(bad), str), reasons=np.array(list(bad.values()), str))
  if settings['per_view']:
    arrays['views'] = np.stack([done[p][1] for p in paths]) if done else empty[:, None]
  for h, classes in settings['heads'].items():  # 'scores' / 'verb_scores', 'noun_scores'
    arrays[f'{head_prefix(h)}scores'] = np.array([done[p][2][h] for p in paths],
                                                 np.float32).reshape(len(paths), classes)
    if settings['class_names']:
      arrays[f'{head_prefix(h)}class_names'] = np.array(settings['class_names'][h], str)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out + '.tmp', 'wb') as f:  # Atomic: an interrupted write never loses the file.
    np.savez(f, **arrays)
  os.replace(out + '.tmp', out)


def extract(config, workdir: str, videos: list[str], out: str, *, per_view=False, save_every=100):
  """Writes `out` (module docstring); returns (number of videos with features, unreadable)."""
  model = make_model(config.model)
  params, tag = evaluator.params_to_evaluate(config, workdir, model, sharding.make_mesh())
  try:  # Names where known (labels.class_names); features never needed the dataset itself.
    names = labels.class_names(config.data, model.cfg.heads, (workdir, config.init.checkpoint))
  except MissingInputError:  # an unprepared dataset without a shipped list: no names
    names = None
  settings = _settings(config, tag, per_view, model.cfg.heads, names)
  done, bad = _load(out, settings)
  # As evaluator.probabilities: no RNG stream, so a clip gets the landmarks it gets there.
  forward = jax.jit(lambda p, clip: model.apply({'params': p}, clip, train=False,
                                                return_features=True))
  todo = [v for v in dict.fromkeys(videos) if v not in done]  # Unreadable ones are retried.
  for n, path in enumerate(tqdm.tqdm(todo, unit='video', desc='features'), 1):
    try:
      views = pipeline.load_video_views(path, config.data)
    except Exception as e:  # pylint: disable=broad-except
      bad[path] = str(e).splitlines()[0] if str(e) else type(e).__name__
    else:
      logits, feats = jax.device_get(forward(params, jnp.asarray(views)))
      feats = np.asarray(feats, np.float32)
      # The view ensemble of evaluator.probabilities: softmax per view, averaged.
      scores = {h: np.asarray(jax.nn.softmax(v.astype(np.float32), -1)).mean(0)
                for h, v in outputs_by_head(logits).items()}
      done[path] = (feats.mean(0), feats if per_view else None, scores)
      bad.pop(path, None)
    if n % save_every == 0:
      _save(out, done, bad, settings)
  _save(out, done, bad, settings)
  return len(done), bad
