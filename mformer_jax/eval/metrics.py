"""Classification metrics of an evaluation: the per-video view ensemble, top-k, per-class
accuracy and the confusion matrix. Pure numpy; running the model and writing reports is
`evaluator.py`'s job.
"""
import numpy as np

from mformer_jax.model import head_prefix


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """(N,) bool: label among the k highest scores."""
  k = min(k, scores.shape[1])
  return (np.argsort(-scores, axis=1, kind='stable')[:, :k] == labels[:, None]).any(1)


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """counts[true, predicted]."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (labels, pred), 1)
  return cm


def head_metrics(scores, labels, class_names):
  """top-1/top-5, mean per-class accuracy and the confusion matrix of one head."""
  cm = confusion_matrix(scores.argmax(1), labels, scores.shape[1])
  support = cm.sum(1)
  per_class = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
  return {
      'top1': float(topk_correct(scores, labels, 1).mean()),
      'top5': float(topk_correct(scores, labels, 5).mean()),
      'mean_class_accuracy': float(np.nanmean(per_class)) if support.any() else float('nan'),
      'per_class': {name: {'accuracy': None if np.isnan(a) else float(a), 'videos': int(n)}
                    for name, a, n in zip(class_names, per_class, support)},
      'confusion': cm,
  }


class Ensemble:
  """Per-video sums of view softmaxes. Views are counted, so a lost or doubled view is an error
  rather than a quietly wrong accuracy."""

  def __init__(self, num_videos: int, views_per_video: int):
    self.views_per_video = views_per_video
    self.views = np.zeros(num_videos, np.int64)
    self.dropped = np.zeros(num_videos, bool)
    self.scores, self.labels = {}, {}

  def add(self, probs: dict, info: dict) -> None:
    """probs {head: (B, C)}; info: 'mask' (False = padding), 'video_index', labels per head."""
    mask = np.asarray(info['mask'], bool)
    idx = info['video_index'][mask]
    np.add.at(self.views, idx, 1)
    for h, p in probs.items():
      if h not in self.scores:
        self.scores[h] = np.zeros((len(self.views), p.shape[1]), np.float64)
        self.labels[h] = np.full(len(self.views), -1, np.int64)
      np.add.at(self.scores[h], idx, p[mask])
      self.labels[h][idx] = info[h][mask]

  def drop(self, videos) -> None:
    """Leaves videos out of the metrics (unreadable at evaluation time; the caller reports
    them). They must get no view at all."""
    self.dropped[np.asarray(list(videos), np.int64)] = True

  def metrics(self, names: dict):
    """(results, per-head metrics); EK adds action = verb and noun both right."""
    keep = ~self.dropped
    wrong = np.flatnonzero(self.views != np.where(keep, self.views_per_video, 0))
    if len(wrong):
      raise RuntimeError(f'evaluation is broken: {len(wrong)} of {len(self.views)} videos got '
                         f'a number of views other than {self.views_per_video} (e.g. video '
                         f'{wrong[0]}: {self.views[wrong[0]]}'
                         f'{", left out as unreadable" if self.dropped[wrong[0]] else ""})')
    results = {'num_videos': int(keep.sum()), 'views_per_video': self.views_per_video}
    per_head = {}
    for h, s in self.scores.items():
      per_head[h] = head_metrics(s[keep], self.labels[h][keep], names[h])
      prefix = head_prefix(h)
      for key in ('top1', 'top5', 'mean_class_accuracy'):
        results[prefix + key] = per_head[h][key]
    if 'verb' in self.scores:  # top-5 action: both within their own top 5 (official)
      for k in (1, 5):
        both = [topk_correct(self.scores[h][keep], self.labels[h][keep], k)
                for h in ('verb', 'noun')]
        results[f'action_top{k}'] = float((both[0] & both[1]).mean())
    return results, per_head
