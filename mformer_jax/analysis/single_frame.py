r"""The single-frame model of appendix Table 1: an image ViT on one frame of the clip.

`single_frame(config)` turns any experiment config into its one-frame twin: the data pipeline
samples the clip's window exactly as the video model's (data.num_frames x sampling_rate, or the
SSv2 segments) and keeps ONE frame of it (data.single_frame: a random one in training; at test
the middle frame of each view, so K400's 10 x 3 views see 10 different frames). The model is then
exactly an image ViT (num_frames = tubelet_size = 1, attention 'joint', which over one frame is
plain ViT self-attention), so a timm ViT-B/16 loads into it tensor for tensor: the tubelet kernel
is the 2D patch kernel itself (no inflation), and only temp_embed (zeros: one slot adds nothing),
pre_logits and the head are new.

  python -m mformer_jax.main --config=configs/single_frame.py:k400 --workdir=/tmp/k400_1frame \
      --config.data.data_dir=/data/k400_prepared --config.init.imagenet=jx_vit_base_p16_224.pth

Table 1 (top-1 with 1 frame, with 8 frames, difference) from evaluated workdirs; several seeds
comma-separated give the mean and [min, max] (the difference: of the means):

  python -m mformer_jax.analysis.single_frame ONE_FRAME_WORKDIR[,...] MULTI_FRAME_WORKDIR[,...]

`mformer_jax.weights.vit.load_timm_vit(path)` builds the same one-frame model around a timm-format
ViT state dict (DINO's or a supervised one): the image-ViT rows of appendix Table 2.
"""
import argparse

from mformer_jax import errors
from mformer_jax.analysis import class_deltas
from mformer_jax.weights.vit import IMAGE_VIT



def single_frame(config):
  """The one-frame twin of an experiment config (modified in place and returned)."""
  config.experiment = f'{config.experiment}_single_frame'
  config.data.single_frame = True
  config.model.update(IMAGE_VIT)
  return config



_PREFIXES = ('module.', 'backbone.')  # DDP and DINO's training wrapper








def top1(run, metric='top1') -> float:
  """The metric of a run's latest evaluation report (workdir, report folder or metrics.json)."""
  path, report = class_deltas.read_report(run)
  if metric not in report:
    raise errors.InputError(f'{path} has no {metric!r} (has {sorted(report)[:8]})')
  return float(report[metric])


def _cell(values) -> str:
  mean = sum(values) / len(values)
  spread = f' [{100 * min(values):.1f}, {100 * max(values):.1f}]' if len(values) > 1 else ''
  return f'{100 * mean:.1f}{spread}'


def main(argv=None):
  p = argparse.ArgumentParser(prog='python -m mformer_jax.analysis.single_frame',
                              description='Table 1: top-1 of 1-frame and multi-frame runs.')
  p.add_argument('one_frame', help='workdir(s), comma-separated seeds')
  p.add_argument('multi_frame', help='workdir(s), comma-separated seeds')
  p.add_argument('--metric', default='top1')
  args = p.parse_args(argv)
  try:
    one = [top1(r, args.metric) for r in args.one_frame.split(',')]
    multi = [top1(r, args.metric) for r in args.multi_frame.split(',')]
  except errors.UserError as e:
    errors.exit_with(e)
  diff = sum(multi) / len(multi) - sum(one) / len(one)
  print(f'| {args.metric}, 1 frame | {args.metric}, multi-frame | difference | seeds |\n'
        f'| --- | --- | --- | --- |\n'
        f'| {_cell(one)} | {_cell(multi)} | {100 * diff:.1f} | {len(one)} / {len(multi)} |')
  return one, multi


if __name__ == '__main__':
  main()
