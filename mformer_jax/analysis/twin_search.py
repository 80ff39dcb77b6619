r"""Recipe search for the synthetic motion twins (appendix Fig. 1 / Table 1), on one accelerator.

The CPU twins (configs/motion_twins.py) take minutes per cell, so choosing their recipe by trial
on the CPU costs hours. Here every (learning rate, schedule length, stride, seed) cell of one
attention type trains at once as a lane of one vmapped, scanned program with all clips on the
device; the test top-1 of every lane is recorded every 128 steps. The model, the optimiser
(AdamW, decay on every parameter, x0.1 at 80 % and 95 % of the steps, linear warm-up over 1/16)
and the data are the twin's own; only the data order differs (a permutation per epoch from the
seed, as the trainer does, but not the trainer's exact order). Matmuls run at full float32
precision, as on the CPU.

  # here (needs the project's config code): the twin's model configs
  python -m benchmarks.twin_search --make_spec=twin_spec.json
  # on the accelerator (needs only jax, flax, optax, numpy)
  python -m benchmarks.twin_search --spec=twin_spec.json --out=twin_search.json
  # summary; every lane as CSV
  python -m benchmarks.twin_search --report=twin_search.json
  python -m benchmarks.twin_search --csv=OUT.csv --csv_from batch32=twin_search.json ...
"""
import argparse
import itertools
import json
import time

import numpy as np

CLASSES = 'move_right,move_left,move_down,move_up'
CHUNK = 128  # Steps between evaluations.


def make_spec(path, attentions, overrides):
  """The twin's model config and data options for each attention (from configs/motion_twins.py)."""
  from configs import motion_twins  # pylint: disable=g-import-not-at-top
  spec = {}
  for attention in attentions:
    config = motion_twins.get_config(f'attention={attention}' + (f',{overrides}' if overrides else ''))
    s = config.data.synthetic
    spec[attention] = dict(
        model=config.model.to_dict(), batch_size=config.train.batch_size,
        weight_decay=config.train.weight_decay, lr_decay=config.train.lr_decay,
        data=dict(num_frames=config.data.num_frames, size=config.data.crop_size,
                  variant=s.variant, classes=s.classes, num_distractors=s.num_distractors,
                  background_speed=s.background_speed, seed=s.seed,
                  num_train=s.num_train, num_test=s.num_test))
  with open(path, 'w') as f:
    json.dump(spec, f, indent=1)
  print(f'wrote {path}: {sorted(spec)}')


def lr_at(step, base, total, decay):
  """The twin's `optim.lr_schedule` (x decay at 80 % and 95 % of `total` steps, linear warm-up
  over 1/16) with traced `base` and `total`, so lanes can differ; 0 after `total`."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  b1, b2 = jnp.round(0.8 * total), jnp.round(0.95 * total)
  lr = base * decay ** ((step >= b1).astype(jnp.float32) + (step >= b2))
  lr = lr * jnp.minimum(1.0, (step + 1) / jnp.round(total / 16))
  return jnp.where(step < total, lr, 0.0)


def render(data, split, speed):
  from mformer_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  kw = {k: v for k, v in data.items() if k not in ('num_train', 'num_test')}
  v = synthetic.generate(data[f'num_{split}'], split=split, speed=speed, with_masks=False, **kw)
  return v.videos, v.labels


def search(spec_path, out_path, lrs, totals, strides, seeds, attentions):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from mformer_jax.data import to_model_input  # pylint: disable=g-import-not-at-top
  from mformer_jax.model import ModelConfig, Motionformer, init_variables  # pylint: disable=g-import-not-at-top

  jax.config.update('jax_default_matmul_precision', 'highest')
  spec = json.load(open(spec_path))
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
    data = rendered[key]
    x_train = jnp.asarray(np.stack([data[s][0][0] for s in strides]))  # (S, N, T, H, W, 3) uint8
    y_train = jnp.asarray(np.stack([data[s][0][1] for s in strides]))
    x_test = jnp.asarray(np.stack([data[s][1][0] for s in strides]))
    y_test = jnp.asarray(np.stack([data[s][1][1] for s in strides]))
    print(f'{attention}: rendered {x_train.shape} + {x_test.shape} in {time.time() - t0:.0f} s',
          flush=True)
    model = Motionformer(ModelConfig.from_config(a['model']))
    batch, num_train = a['batch_size'], x_train.shape[1]
    spe = num_train // batch
    wd, decay = a['weight_decay'], a['lr_decay']

    lane_lr = jnp.asarray([l[0] for l in lanes], jnp.float32)
    lane_total = jnp.asarray([l[1] for l in lanes], jnp.int32)
    lane_stride = jnp.asarray([strides.index(l[2]) for l in lanes], jnp.int32)
    lane_seed = jnp.asarray([l[3] for l in lanes], jnp.uint32)
    adam = optax.chain(optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
                       optax.add_decayed_weights(wd))

    def init(seed):
      params = init_variables(model, jax.random.key(seed), random_tubelet=True)['params']
      return params, adam.init(params)

    def clips(x):  # the twins' synthetic data is RGB
      return to_model_input(x)

    def lane_step(params, opt_state, step, base, total, stride, seed):
      epoch, pos = step // spe, step % spe
      perm = jax.random.permutation(jax.random.fold_in(jax.random.key(seed), epoch), num_train)
      idx = jax.lax.dynamic_slice(perm, (pos * batch,), (batch,))
      x, y = clips(x_train[stride][idx]), y_train[stride][idx]
      rngs = {'dropout': jax.random.fold_in(jax.random.key(seed + 1000), step)}

      def loss_fn(p):
        logits = model.apply({'params': p}, x, train=True, rngs=rngs)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (jnp.argmax(logits, -1) == y).mean()

      (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, opt_state = adam.update(grads, opt_state, params)
      lr = lr_at(step, base, total, decay)
      params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
      return params, opt_state, loss, acc

    @jax.jit
    def train_chunk(params, opt_state, start):
      def body(carry, step):
        p, o = carry
        p, o, loss, acc = jax.vmap(lane_step, in_axes=(0, 0, None, 0, 0, 0, 0))(
            p, o, step, lane_lr, lane_total, lane_stride, lane_seed)
        return (p, o), (loss, acc)
      (params, opt_state), (loss, acc) = jax.lax.scan(
          body, (params, opt_state), start + jnp.arange(CHUNK))
      return params, opt_state, loss.mean(0), acc.mean(0)

    @jax.jit
    def test_top1(params):
      def lane(p, stride):
        logits = jax.lax.map(lambda x: model.apply({'params': p}, clips(x), train=False),
                             x_test[stride].reshape(-1, 128, *x_test.shape[2:]))
        return (jnp.argmax(logits.reshape(-1, logits.shape[-1]), -1) == y_test[stride]).mean()
      return jax.vmap(lane)(params, lane_stride)

    params, opt_state = jax.jit(jax.vmap(init))(lane_seed)
    curve = []
    t0 = time.time()
    for start in range(0, steps, CHUNK):
      params, opt_state, loss, acc = train_chunk(params, opt_state, start)
      top1 = test_top1(params)
      curve.append(dict(step=start + CHUNK, train_loss=np.asarray(loss).tolist(),
                        train_acc=np.asarray(acc).tolist(), test_top1=np.asarray(top1).tolist()))
      print(f'{attention} step {start + CHUNK}: {time.time() - t0:.0f} s, test top-1 '
            f'min {float(top1.min()):.3f} median {float(jnp.median(top1)):.3f}', flush=True)
    results['runs'][attention] = curve
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
  p.add_argument('--totals', default='768,1536')
  p.add_argument('--strides', default='1,2,4')
  p.add_argument('--seeds', default='0,1,2')
  p.add_argument('--attentions', default='trajectory,divided,joint')
  args = p.parse_args()
  attentions = args.attentions.split(',')
  if args.make_spec:
    make_spec(args.make_spec, attentions, args.overrides)
  elif args.spec:
    search(args.spec, args.out, [float(v) for v in args.lrs.split(',')],
           [int(v) for v in args.totals.split(',')], [float(v) for v in args.strides.split(',')],
           [int(v) for v in args.seeds.split(',')], attentions)
  if args.report:
    report(args.report)
  if args.csv:
    import csv  # pylint: disable=g-import-not-at-top
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
