"""The J&F metrics of DAVIS-2017 semi-supervised evaluation (paper appendix Table 2), as the
official `davis2017-evaluation` tool computes them (`db_eval_iou`, `db_eval_boundary`,
`db_statistics`, its CSVs), rewritten in numpy and checked against values of the official code
on stored masks (tests/data/README.md)."""

import warnings

import numpy as np

BOUND_TH = 0.008  # Boundary tolerance as a fraction of the image diagonal (official default).


def _frames(x, name):
  x = np.asarray(x).astype(bool)
  if x.ndim == 2:
    x = x[None]
  if x.ndim != 3:
    raise ValueError(f'{name} must be (T, H, W) or (H, W), got shape {x.shape}')
  return x


def jaccard(gt, pred):
  """Region similarity J per frame, (T, H, W) bool each -> (T,); an empty union scores 1."""
  gt, pred = _frames(gt, 'gt'), _frames(pred, 'pred')
  if gt.shape != pred.shape:
    raise ValueError(f'gt {gt.shape} and pred {pred.shape} differ in shape')
  inter = np.sum(gt & pred, axis=(-2, -1))
  union = np.sum(gt | pred, axis=(-2, -1))
  return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def boundary_map(seg):
  """1-pixel boundary of a (H, W) mask, as the official `seg2bmap` (Martin 2003): a pixel is on
  the boundary when it differs from its east, south or south-east neighbour; the last row only
  looks east, the last column only south, and the bottom-right corner is never a boundary."""
  seg = np.asarray(seg, bool)
  east, south, south_east = (np.zeros_like(seg) for _ in range(3))
  east[:, :-1] = seg[:, 1:]
  south[:-1, :] = seg[1:, :]
  south_east[:-1, :-1] = seg[1:, 1:]
  b = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
  b[-1, :] = seg[-1, :] ^ east[-1, :]
  b[:, -1] = seg[:, -1] ^ south[:, -1]
  b[-1, -1] = False
  return b


def disk_radius(shape, bound_th=BOUND_TH):
  """Tolerance in pixels: ceil(bound_th * diagonal), or bound_th itself when >= 1."""
  return bound_th if bound_th >= 1 else float(np.ceil(bound_th * np.linalg.norm(shape)))


def dilate_disk(mask, radius):
  """Binary dilation of (H, W) by the disk {dx^2 + dy^2 <= r^2} (zero outside the image).

  The disk is a stack of horizontal runs: dilate each row by every run's half-width once
  (a sliding window via cumulative sums), then OR the rows shifted by dy.
  """
  mask = np.asarray(mask, bool)
  h, w = mask.shape
  r = int(np.floor(radius))
  dys = np.arange(-r, r + 1)
  half = np.floor(np.sqrt(np.maximum(radius * radius - dys * dys, 0)) + 1e-9).astype(int)
  csum = np.concatenate([np.zeros((h, 1), np.int64), np.cumsum(mask, axis=1)], axis=1)
  cols = np.arange(w)
  rows_by_half = {}
  for k in np.unique(half):
    lo, hi = np.clip(cols - k, 0, w), np.clip(cols + k + 1, 0, w)
    rows_by_half[k] = (csum[:, hi] - csum[:, lo]) > 0
  out = np.zeros_like(mask)
  for dy, k in zip(dys, half):
    src = rows_by_half[k]  # out[y] |= src[y + dy]
    if dy >= 0:
      out[:h - dy] |= src[dy:]
    else:
      out[-dy:] |= src[:h + dy]
  return out


def _f_frame(gt, pred, bound_th):
  radius = disk_radius(pred.shape, bound_th)
  fg, gt_b = boundary_map(pred), boundary_map(gt)
  n_fg, n_gt = fg.sum(), gt_b.sum()
  if n_fg == 0 and n_gt == 0:
    return 1.0
  if n_fg == 0 or n_gt == 0:  # precision, recall = (1, 0) or (0, 1)
    return 0.0
  precision = np.sum(fg & dilate_disk(gt_b, radius)) / n_fg
  recall = np.sum(gt_b & dilate_disk(fg, radius)) / n_gt
  if precision + recall == 0:
    return 0.0
  return 2 * precision * recall / (precision + recall)


def f_measure(gt, pred, bound_th=BOUND_TH):
  """Boundary F-measure per frame, (T, H, W) bool each -> (T,), as `db_eval_boundary`."""
  gt, pred = _frames(gt, 'gt'), _frames(pred, 'pred')
  if gt.shape != pred.shape:
    raise ValueError(f'gt {gt.shape} and pred {pred.shape} differ in shape')
  return np.array([_f_frame(g, p, bound_th) for g, p in zip(gt, pred)], np.float64)


def statistics(per_frame):
  """(mean, recall, decay) of one object's per-frame values, as `db_statistics`: recall is the
  fraction of frames above 0.5, decay the mean of the first of 4 temporal bins minus the last
  (bin edges rounded from linspace and held in uint8, as the official code does)."""
  v = np.asarray(per_frame, np.float64)
  ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(np.uint8)
  bins = [v[ids[i]:ids[i + 1] + 1] for i in range(4)]
  with warnings.catch_warnings():  # nan for no frames, as the official code
    warnings.simplefilter('ignore', RuntimeWarning)
    return (float(np.nanmean(v)), float(np.nanmean(v > 0.5)),
            float(np.nanmean(bins[0]) - np.nanmean(bins[3])))


# Evaluation of whole sequences, as the official semi-supervised evaluator.

VOID = 255
GLOBAL_COLUMNS = ('J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall', 'F-Decay')


def evaluate_sequence(gt, pred):
  """Per-object J and F of one sequence, each (K, T - 2).

  gt: (T, H, W) ids (0 background, 1..K objects, 255 void); pred: (T, H, W) predicted ids. As
  the official semi-supervised evaluation: void pixels count as background, the objects are
  those of the first frame, the first and last frames are not scored, and an object absent from
  every prediction scores as an empty mask.
  """
  gt, pred = np.asarray(gt), np.asarray(pred)
  if gt.shape != pred.shape:
    raise ValueError(f'ground truth {gt.shape} and prediction {pred.shape} differ in shape')
  gt = np.where(gt == VOID, 0, gt)
  num_objects = int(gt[0].max())
  if pred.max() > num_objects:
    raise ValueError(f'prediction holds id {pred.max()}, the first frame only {num_objects} objects')
  gt, pred = gt[1:-1], pred[1:-1]
  j = np.stack([jaccard(gt == k, pred == k) for k in range(1, num_objects + 1)])
  f = np.stack([f_measure(gt == k, pred == k) for k in range(1, num_objects + 1)])
  return j, f


def summarise(per_sequence):
  """{sequence: (J, F) per object and frame} -> the official global and per-object results.

  Every statistic is a mean over objects (not sequences); objects are named `<seq>_<k>`.
  """
  objects, stats = [], []
  for seq, (j, f) in per_sequence.items():
    for k, (jk, fk) in enumerate(zip(j, f)):
      objects.append(f'{seq}_{k + 1}')
      stats.append(statistics(jk) + statistics(fk))
  s = np.array(stats, np.float64).reshape(-1, 6)  # J mean/recall/decay, F mean/recall/decay
  jm, jr, jd, fm, fr, fd = s.mean(axis=0)
  return {
      'global': dict(zip(GLOBAL_COLUMNS, (float((jm + fm) / 2), jm, jr, jd, fm, fr, fd))),
      'objects': {name: {'J-Mean': row[0], 'J-Recall': row[1], 'J-Decay': row[2],
                         'F-Mean': row[3], 'F-Recall': row[4], 'F-Decay': row[5]}
                  for name, row in zip(objects, s)}}


def _csv_number(x):
  return '' if np.isnan(x) else f'{x:.3f}'  # pandas' float_format='%.3f', na_rep=''


def results_csvs(summary):
  """The text of the official `global_results-<set>.csv` and `per-sequence_results-<set>.csv`."""
  g = summary['global']
  glob = ','.join(GLOBAL_COLUMNS) + '\n' + ','.join(_csv_number(float(g[c])) for c in GLOBAL_COLUMNS)
  rows = ['Sequence,J-Mean,F-Mean'] + [
      f"{name},{_csv_number(float(o['J-Mean']))},{_csv_number(float(o['F-Mean']))}"
      for name, o in summary['objects'].items()]
  return glob + '\n', '\n'.join(rows) + '\n'
