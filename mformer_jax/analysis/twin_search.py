r"""Recipe search for the synthetic motion twins (appendix Fig. 1 / Table 1), on one accelerator.

The CPU twins (configs/motion_twins.py) take minutes per cell, so choosing their recipe by trial
on the CPU costs hours. Here every (learning rate, schedule length, stride, seed) cell of one
attention type trains at once as a lane of one vmapped, scanned program with all clips on the
device; the test top-1 of every lane is recorded every 128 steps. The model, the optimiser
(the trainer's optim.adamw with each lane's optim.step_schedule: the twin config's schedule for
its step count, at its learning rate) and the data are the twin's own; only the data order
differs (a permutation per epoch from the seed, as the trainer does, but not the trainer's exact
order). Matmuls run at full float32 precision, as on the CPU.

Its own loop, not train.train_and_evaluate: the lanes (each a recipe and seed with its own
parameters, optimiser state and schedule) train as one vmapped program from clips held on the
device, which the trainer's one-model, input-pipeline loop cannot do. The loss is the trainer's at
the twins' label_smoothing=0, cross-entropy, written out: mformer_jax.train would bring the
TensorFlow input pipeline onto the accelerator. No checkpoints (a run takes minutes), and a lane
that diverges is a result (chance top-1), not an error.

  # here (needs the project's config code): the twin's model and schedule configs
  python -m mformer_jax.analysis.twin_search --make_spec=twin_spec.json --totals=768,1536
  # on the accelerator
  python -m mformer_jax.analysis.twin_search --spec=twin_spec.json --out=twin_search.json
  # summary; every lane as CSV
  python -m mformer_jax.analysis.twin_search --report=twin_search.json
  python -m mformer_jax.analysis.twin_search --csv=OUT.csv --csv_from batch32=twin_search.json ...
"""
import argparse
import csv
import itertools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mformer_jax import config_lib, errors
from mformer_jax.data import synthetic, to_model_input
from mformer_jax.model import ModelConfig, Motionformer, init_variables
from mformer_jax.train import optim

CONFIG_FILE = 'configs/motion_twins.py'  # relative to the repository root, where studies run
CLASSES = 'move_right,move_left,move_down,move_up'
CHUNK = 128  # Steps between evaluations.


def make_spec(path, attentions, overrides, totals, config_file=CONFIG_FILE):
  """The twin's model config, data options and optimiser for each attention, and its schedule
  in steps for each step count in `totals` (from `config_file`, configs/motion_twins.py)."""
  spec = {}
  for attention in attentions:
    configs = {total: config_lib.load_config(
        f'{config_file}:attention={attention},steps={total}' + (f',{overrides}' if overrides else ''),
        final=False) for total in totals}
    config = configs[totals[0]]
    s, t = config.data.synthetic, config.train
    spec[attention] = dict(
        model=config.model.to_dict(), batch_size=t.batch_size,
        optimizer=dict(weight_decay=t.weight_decay,
                       decay_norms_and_biases=t.decay_norms_and_biases,
                       grad_clip_norm=t.grad_clip_norm),
        schedules={str(total): optim.schedule_steps(
            c.train, optim.steps_per_epoch(s.num_train, t.batch_size))
                   for total, c in configs.items()},
        data=dict(num_frames=config.data.num_frames, size=config.data.crop_size,
                  variant=s.variant, classes=s.classes, num_distractors=s.num_distractors,
                  background_speed=s.background_speed, seed=s.seed,
                  num_train=s.num_train, num_test=s.num_test))
  with open(path, 'w') as f:
    json.dump(spec, f, indent=1)
  print(f'wrote {path}: {sorted(spec)}')


def lane_lrs(a, lanes, num_steps: int):
  """(lanes, num_steps) learning rates of the spec entry `a`: each lane's optim.step_schedule at
  its lr, 0 after its step count (its parameters then stay as they are)."""
  steps = jnp.arange(num_steps)
  rows = []
  for lr, total, *_ in lanes:
    if str(total) not in a['schedules']:
      raise errors.ConfigError(f'the spec has schedules for {sorted(a["schedules"], key=int)} '
                               f'steps, not {total}: make it with --totals including {total}')
    schedule = optim.step_schedule(lr, **a['schedules'][str(total)])
    rows.append(jnp.where(steps < total, jax.vmap(schedule)(steps), 0.0))
  return jnp.stack(rows)


def lane_optimizer(a, lr_row):
  """The trainer's AdamW for one lane: its learning rates `lr_row` indexed by update count."""
  return optim.adamw(lambda count: lr_row[count], **a['optimizer'])


def render(data, split, speed):
  kw = {k: v for k, v in data.items() if k not in ('num_train', 'num_test')}
  v = synthetic.generate(data[f'num_{split}'], split=split, speed=speed, with_masks=False, **kw)
  return v.videos, v.labels


def _on_device(rendered, strides):
  """The clips of every stride on the device: ((x, y) train, (x, y) test), x (S, N, T, H, W, 3)
  uint8 and y (S, N), S the strides."""
  def stack(split, i):
    return jnp.asarray(np.stack([rendered[s][split][i] for s in strides]))
  return (stack(0, 0), stack(0, 1)), (stack(1, 0), stack(1, 1))


def _lane_step(model, a, train):
  """One training step of one lane (to be vmapped over the lanes): the batch at `step` of the
  seed's permutation of its stride's clips for that epoch, the trainer's loss at the twins'
  label_smoothing=0 (cross-entropy), the lane's AdamW update."""
  x_train, y_train = train
  batch, num_train = a['batch_size'], x_train.shape[1]
  spe = num_train // batch

  def lane_step(params, opt_state, step, lr, stride, seed):
    epoch, pos = step // spe, step % spe
    perm = jax.random.permutation(jax.random.fold_in(jax.random.key(seed), epoch), num_train)
    idx = jax.lax.dynamic_slice(perm, (pos * batch,), (batch,))
    x, y = to_model_input(x_train[stride][idx]), y_train[stride][idx]  # the twins' data is RGB
    rngs = {'dropout': jax.random.fold_in(jax.random.key(seed + 1000), step)}

    def loss_fn(p):
      logits = model.apply({'params': p}, x, train=True, rngs=rngs)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, (jnp.argmax(logits, -1) == y).mean()

    (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = lane_optimizer(a, lr).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, acc

  return lane_step


def _programs(model, a, lanes, strides, steps, train, test):
  """(every lane's (params, optimizer state) at its seed, train_chunk, test_top1): the jitted
  programs over all lanes at once; train_chunk runs CHUNK steps, test_top1 scores every lane on
  its stride's test clips."""
  lane_lr = lane_lrs(a, lanes, -(-steps // CHUNK) * CHUNK)
  lane_stride = jnp.asarray([strides.index(l[2]) for l in lanes], jnp.int32)
  lane_seed = jnp.asarray([l[3] for l in lanes], jnp.uint32)
  lane_step = _lane_step(model, a, train)
  x_test, y_test = test

  def init(seed, lr):
    params = init_variables(model, jax.random.key(seed), random_tubelet=True)['params']
    return params, lane_optimizer(a, lr).init(params)

  @jax.jit
  def train_chunk(params, opt_state, start):
    def body(carry, step):
      p, o = carry
      p, o, loss, acc = jax.vmap(lane_step, in_axes=(0, 0, None, 0, 0, 0))(
          p, o, step, lane_lr, lane_stride, lane_seed)
      return (p, o), (loss, acc)
    (params, opt_state), (loss, acc) = jax.lax.scan(
        body, (params, opt_state), start + jnp.arange(CHUNK))
    return params, opt_state, loss.mean(0), acc.mean(0)

  @jax.jit
  def test_top1(params):
    def lane(p, stride):
      logits = jax.lax.map(lambda x: model.apply({'params': p}, to_model_input(x), train=False),
                           x_test[stride].reshape(-1, 128, *x_test.shape[2:]))
      return (jnp.argmax(logits.reshape(-1, logits.shape[-1]), -1) == y_test[stride]).mean()
    return jax.vmap(lane)(params, lane_stride)

  return jax.jit(jax.vmap(init))(lane_seed, lane_lr), train_chunk, test_top1


def _curve(attention, state, train_chunk, test_top1, steps):
  """Trains every lane for `steps`, scoring them every CHUNK steps: [{step, train_loss,
  train_acc, test_top1}], each a list over the lanes."""
  params, opt_state = state
  curve, t0 = [], time.time()
  for start in range(0, steps, CHUNK):
    params, opt_state, loss, acc = train_chunk(params, opt_state, start)
    top1 = test_top1(params)
    curve.append(dict(step=start + CHUNK, train_loss=np.asarray(loss).tolist(),
                      train_acc=np.asarray(acc).tolist(), test_top1=np.asarray(top1).tolist()))
    print(f'{attention} step {start + CHUNK}: {time.time() - t0:.0f} s, test top-1 '
          f'min {float(top1.min()):.3f} median {float(jnp.median(top1)):.3f}', flush=True)
  return curve


def search(spec_path, out_path, lrs, totals, strides, seeds, attentions):
  """Trains every (lr, total, stride, seed) lane of each attention of the spec; writes (and
  returns) the device, the lanes and each attention's curve to `out_path` after each."""
  jax.config.update('jax_default_matmul_precision', 'highest')
  with open(spec_path) as f:
    spec = json.load(f)
  lanes = list(itertools.product(lrs, totals, strides, seeds))
  steps = max(totals)
  results = dict(device=str(jax.devices()[0].device_kind), jax=jax.__version__, lanes=[
      dict(lr=lr, total=t, stride=s, seed=k) for lr, t, s, k in lanes], runs={})
  rendered = {}
  for attention in attentions:
    a = spec[attention]
    t0 = time.time()
    key = json.dumps(a['data'], sort_keys=True)
    if key not in rendered:  # The attentions share their clips.
      rendered.clear()
      rendered[key] = {s: (render(a['data'], 'train', s), render(a['data'], 'test', s))
                       for s in strides}
    train, test = _on_device(rendered[key], strides)
    print(f'{attention}: rendered {train[0].shape} + {test[0].shape} in '
          f'{time.time() - t0:.0f} s', flush=True)
    model = Motionformer(ModelConfig.from_config(a['model']))
    programs = _programs(model, a, lanes, strides, steps, train, test)
    results['runs'][attention] = _curve(attention, *programs, steps)
    with open(out_path, 'w') as f:
      json.dump(results, f)
  return results


def rows(path, label=''):
  """One CSV row per (attention, lane): the recipe, the cell and the final test top-1."""
  r = json.load(open(path))
  for attention, curve in r['runs'].items():
    for i, lane in enumerate(r['lanes']):
      final = next(c for c in curve if c['step'] >= lane['total'])['test_top1'][i]
      yield dict(search=label, device=r['device'], attention=attention, **lane,
                 top1=round(final, 4))


def report(path):
  r = json.load(open(path))
  lanes = r['lanes']
  print(f"device {r['device']}, jax {r['jax']}")
  for attention, curve in r['runs'].items():
    groups = {}
    for i, lane in enumerate(lanes):
      groups.setdefault((lane['lr'], lane['total']), []).append(i)
    for (lr, total), idx in sorted(groups.items()):
      final = next(c for c in curve if c['step'] >= total)['test_top1']
      by_stride = {}
      for i in idx:
        by_stride.setdefault(lanes[i]['stride'], []).append(final[i])
      cells = '  '.join(f's{s}: ' + ','.join(f'{100 * v:.0f}' for v in vs)
                        for s, vs in sorted(by_stride.items()))
      worst = min(final[i] for i in idx)
      print(f'{attention:10s} lr {lr:g} steps {total:5d}  min {100 * worst:5.1f}  {cells}')


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--make_spec')
  p.add_argument('--overrides', default='', help='extra motion_twins.py options for --make_spec')
  p.add_argument('--spec')
  p.add_argument('--out', default='twin_search.json')
  p.add_argument('--report')
  p.add_argument('--csv', help='write every lane of --csv_from as CSV rows')
  p.add_argument('--csv_from', nargs='*', default=[], help='LABEL=RESULTS.json ...')
  p.add_argument('--lrs', default='1e-3,2e-3,4e-3')
  p.add_argument('--totals', default='768,1536', help='step counts (--make_spec: those to '
                 'hold schedules for)')
  p.add_argument('--strides', default='1,2,4')
  p.add_argument('--seeds', default='0,1,2')
  p.add_argument('--attentions', default='trajectory,divided,joint')
  args = p.parse_args()
  attentions, totals = args.attentions.split(','), [int(v) for v in args.totals.split(',')]
  try:
    if args.make_spec:
      make_spec(args.make_spec, attentions, args.overrides, totals)
    elif args.spec:
      search(args.spec, args.out, [float(v) for v in args.lrs.split(',')], totals,
             [float(v) for v in args.strides.split(',')],
             [int(v) for v in args.seeds.split(',')], attentions)
  except errors.UserError as e:
    errors.exit_with(e, prog='twin_search')
  if args.report:
    report(args.report)
  if args.csv:
    with open(args.csv, 'w', newline='') as f:
      writer = None
      for item in args.csv_from:
        label, _, path = item.partition('=')
        for row in rows(path, label):
          writer = writer or csv.DictWriter(f, list(row))
          if f.tell() == 0:
            writer.writeheader()
          writer.writerow(row)
    print(f'wrote {args.csv}')


if __name__ == '__main__':
  main()
