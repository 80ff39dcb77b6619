"""Checkpoint import/export: strictness, round trip, .pyth files, ImageNet init, the CLI."""
import dataclasses
import json
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import torch_files
from mformer_jax import convert, errors, weights

from mformer_jax.run import checkpoints
from mformer_jax.model import ModelConfig, Motionformer, init_variables
from mformer_jax.weights import official
GOLDENS = os.path.join(os.path.dirname(__file__), 'goldens')
DATA = os.path.join(os.path.dirname(__file__), 'data')
ORIG = os.path.join(GOLDENS, 'model_trajectory_orig.npz')


def _golden_state_dict(name='trajectory_orig'):
  with np.load(os.path.join(GOLDENS, f'model_{name}.npz')) as z:
    sd = {k: z[k] for k in z.files if '__' not in k}
    return sd, json.loads(str(z['meta__json']))['cfg'], z['io__input'].transpose(0, 2, 3, 4, 1), z.get('io__logits')


def test_round_trip_is_exact():
  sd, _, _, _ = _golden_state_dict('divided')
  model, variables = weights.load_official(os.path.join(GOLDENS, 'model_divided.npz'))
  back = weights.export_official(variables)
  assert set(back) == set(sd)
  for k in sd:
    assert back[k].dtype == sd[k].dtype and back[k].shape == sd[k].shape, k
    np.testing.assert_array_equal(back[k], sd[k], err_msg=k)


@pytest.mark.parametrize('mutate,expect', [
    (lambda sd: sd.pop('blocks.1.attn.proj_q.weight'), ['missing (1)', 'blocks.1.attn.proj_q.weight']),
    (lambda sd: sd.__setitem__('blocks.0.attn.extra.weight', np.zeros(3)),
     ['unexpected (1)', 'blocks.0.attn.extra.weight']),
    (lambda sd: sd.__setitem__('temp_embed', np.zeros((1, 8, 64), np.float32)),
     ['mis-shaped (1)', 'temp_embed: checkpoint (1, 8, 64) vs model (1, 4, 64)']),
])
def test_strict_import_names_the_keys(mutate, expect):
  sd, cfg, _, _ = _golden_state_dict()
  mutate(sd)
  with pytest.raises(weights.CheckpointMismatchError) as err:
    weights.load_official(sd, ModelConfig.from_config(official.config_from_official(cfg)))
  for text in expect:
    assert text in str(err.value)


def test_state_dict_without_cfg_and_ddp_prefix():
  """Shapes determine the architecture; heads/crop come from overrides; 'module.' is stripped."""
  sd, _, clip, logits = _golden_state_dict('joint')
  sd = {f'module.{k}': v for k, v in sd.items()}
  model, variables = weights.load_official(sd, {'num_heads': 4, 'img_size': 32})
  assert model.cfg.attention == 'joint' and model.cfg.depth == 2 and model.cfg.patch_size == 8
  np.testing.assert_allclose(model.apply(variables, jnp.asarray(clip)), logits, atol=1e-5)


def test_default_trajectory_impl_is_auto_and_einsum_stays_selectable():
  """load_official leaves trajectory_impl as the config says ('auto' unless named): the model
  runs the chunked kernel, with the numbers of the einsum reference."""
  sd, official_cfg, clip, logits = _golden_state_dict()
  model, variables = weights.load_official(ORIG)
  ref_model, ref_variables = weights.load_official(ORIG, {'trajectory_impl': 'einsum'})
  assert (model.cfg.trajectory_impl, model.cfg.trajectory_kernel) == ('auto', 'chunked')
  assert (ref_model.cfg.trajectory_impl, ref_model.cfg.trajectory_kernel) == ('einsum', 'einsum')
  assert dataclasses.replace(model.cfg, trajectory_impl='einsum') == ref_model.cfg
  jax.tree.map(np.testing.assert_array_equal, variables, ref_variables)  # same parameters
  out, ref = model.apply(variables, jnp.asarray(clip)), ref_model.apply(ref_variables, jnp.asarray(clip))
  np.testing.assert_allclose(out, ref, atol=1e-6, rtol=0)
  np.testing.assert_allclose(out, logits, atol=1e-5, rtol=0)
  # An official config gets the same default; a ModelConfig is used as is.
  assert weights.load_official(sd, official_cfg)[0].cfg.trajectory_impl == 'auto'
  for impl in ('einsum', 'frames'):
    given = ModelConfig.from_config({**official.config_from_official(official_cfg),
                                             'trajectory_impl': impl})
    assert weights.load_official(sd, given)[0].cfg == given
  # chunked has no attention dropout: 'auto' then runs the reference.
  assert weights.load_official(ORIG, {'attn_dropout': 0.1})[0].cfg.trajectory_kernel == 'einsum'
  # Only trajectory attention has the option: a joint model runs its one kernel.
  joint = weights.load_official(os.path.join(GOLDENS, 'model_joint.npz'))[0].cfg
  assert (joint.attention, joint.trajectory_impl, joint.trajectory_kernel) == ('joint', 'auto',
                                                                              'einsum')


def test_pyth_file_with_yaml_cfg(tmp_path):
  """A PySlowFast .pyth of the golden: config from its own cfg, logits as the official code's."""
  sd, cfg, clip, logits = _golden_state_dict('ek_trajectory')
  path = tmp_path / 'checkpoint_epoch_00050.pyth'
  # At ~1 MB too big to commit as torch.save output, so written by the independent writer of
  # tests/torch_files.py, whose data.pkl test_torch_pickle checks byte for byte against torch's.
  torch_files.write_pyth(path, {'epoch': 50, 'model_state': sd, 'optimizer_state': {},
                                'cfg': yaml.safe_dump(cfg)})
  model, variables = weights.load_official(str(path))  # config read from the file's own cfg
  assert model.cfg.epic_kitchens
  with np.load(os.path.join(GOLDENS, 'model_ek_trajectory.npz')) as z:
    out = model.apply(variables, jnp.asarray(clip))
    np.testing.assert_allclose(out['verb'], z['io__logits_verb'], atol=1e-5)
    np.testing.assert_allclose(out['noun'], z['io__logits_noun'], atol=1e-5)


def test_pyth_needs_no_torch(monkeypatch):
  """Real torch.save files (zip, legacy; PySlowFast, timm) read while `import torch` fails."""
  monkeypatch.setitem(sys.modules, 'torch', None)  # any `import torch` now raises ImportError
  with np.load(os.path.join(DATA, 'torch_slowfast.npz')) as z:
    for name in ('torch_slowfast_zip.pyth', 'torch_slowfast_legacy.pyth'):
      sd, cfg = weights.read_checkpoint(os.path.join(DATA, name))
      assert cfg['VIT']['EMBED_DIM'] == 8 and cfg['MODEL']['NUM_CLASSES'] == 5
      assert list(sd) == [k[len('model_state/'):] for k in z.files if k.startswith('model_state/')]
      for k, v in sd.items():
        np.testing.assert_array_equal(v, z[f'model_state/{k}'], strict=True)
  sd, cfg = weights.read_checkpoint(os.path.join(DATA, 'torch_timm.pth'))  # {'model': ...}
  assert cfg is None and sd['patch_embed.proj.weight'].shape == (8, 3, 4, 4)


def test_unreadable_pyth_is_one_error(tmp_path, capsys):
  """Garbage, or a pickle that would run code: an InputError naming the file, which the entry
  points report in one line; the CLI exits 2."""
  garbage = tmp_path / 'x.pyth'
  garbage.write_bytes(b'not read')
  for path in (str(garbage), os.path.join(DATA, 'torch_evil_zip.pth')):
    with pytest.raises(errors.InputError, match=f'^{re.escape(path)}: '):
      weights.load_official(path)
    assert convert.main(['--input', path, '--output', str(tmp_path / 'out')]) == 2
    assert capsys.readouterr().err.count('\n') == 1
  with pytest.raises(errors.InputError, match='not a readable .npz'):
    weights.read_checkpoint(str(garbage.rename(tmp_path / 'x.npz')))


def _timm_vit(dim, depth, patch, grid, rng):
  """A timm ViT state dict with the real key names (random values), 1000-class head."""
  n = lambda *s: rng.standard_normal(s).astype(np.float32)
  sd = {'cls_token': n(1, 1, dim), 'pos_embed': n(1, 1 + grid * grid, dim),
        'patch_embed.proj.weight': n(dim, 3, patch, patch), 'patch_embed.proj.bias': n(dim),
        'norm.weight': n(dim), 'norm.bias': n(dim), 'head.weight': n(1000, dim), 'head.bias': n(1000)}
  for i in range(depth):
    b = f'blocks.{i}.'
    sd.update({b + 'norm1.weight': n(dim), b + 'norm1.bias': n(dim),
               b + 'attn.qkv.weight': n(3 * dim, dim), b + 'attn.qkv.bias': n(3 * dim),
               b + 'attn.proj.weight': n(dim, dim), b + 'attn.proj.bias': n(dim),
               b + 'norm2.weight': n(dim), b + 'norm2.bias': n(dim),
               b + 'mlp.fc1.weight': n(4 * dim, dim), b + 'mlp.fc1.bias': n(4 * dim),
               b + 'mlp.fc2.weight': n(dim, 4 * dim), b + 'mlp.fc2.bias': n(dim)})
  return sd


@pytest.mark.parametrize('attention_type', ['trajectory', 'divided'])
def test_imagenet_init(attention_type, tmp_path):
  cfg = ModelConfig(num_classes=7, num_frames=4, img_size=32, patch_size=8, embed_dim=32,
                            depth=2, num_heads=2, attention=attention_type)
  vit = _timm_vit(32, 2, 8, 28, np.random.default_rng(0))
  np.savez(tmp_path / 'vit.npz', **vit)
  model = Motionformer(cfg)
  variables = init_variables(model, jax.random.key(0))
  logged = []
  new, report = weights.init_from_imagenet(variables, str(tmp_path / 'vit.npz'), cfg, log=logged.append)
  sd = weights.export_official(new)
  loaded = set(report['loaded'])
  assert {'cls_token', 'pos_embed', 'blocks.1.attn.qkv.weight', 'blocks.0.mlp.fc2.bias',
          'norm.weight', 'patch_embed.proj.weight'} <= loaded
  for key in loaded:
    np.testing.assert_array_equal(sd[key], vit[key], err_msg=key)
  fresh = set(report['fresh'])
  assert {'temp_embed', 'pre_logits.fc.weight', 'head.weight'} <= fresh
  assert 'head.weight' in report['ignored']  # 1000 classes vs 7
  if attention_type == 'trajectory':
    assert {'blocks.0.attn.proj_q.weight', 'blocks.0.attn.proj_kv.weight'} <= fresh
  else:
    assert {'blocks.0.timeattn.qkv.weight', 'blocks.0.norm3.weight'} <= fresh
  kernel = sd['patch_embed_3d.proj.weight']  # (D, C, kt, p, p): ImageNet kernel in slice 1 of 2
  np.testing.assert_array_equal(kernel[:, :, 1], vit['patch_embed.proj.weight'])
  np.testing.assert_array_equal(kernel[:, :, 0], 0)
  np.testing.assert_array_equal(sd['patch_embed_3d.proj.bias'], vit['patch_embed.proj.bias'])
  assert 'loaded' in logged[0] and 'freshly initialised' in logged[0]


def test_cli_writes_a_workdir_checkpoint(tmp_path, capsys):
  """OUTPUT/checkpoints/0 with params and meta alone (the trainer's writer): read as a workdir,
  the same config and parameters as the file itself."""
  out = tmp_path / 'ckpt'
  assert convert.main(['--input', ORIG, '--output', str(out),
                       '--export_npz', str(tmp_path / 'back.npz')]) == 0
  assert sorted(os.listdir(out / 'checkpoints')) == ['0']
  assert {'params', 'meta'} <= set(os.listdir(out / 'checkpoints' / '0'))
  assert 'train' not in os.listdir(out / 'checkpoints' / '0')
  cfg, params = weights.load(str(out))
  model, variables = weights.load_official(ORIG)
  assert cfg == model.cfg
  jax.tree.map(np.testing.assert_array_equal, params, jax.device_get(variables['params']))
  with checkpoints.manager(str(out), read_only=True) as mngr:
    meta = checkpoints.read_meta(mngr, 0)
  assert (meta['step'], meta['params_only'], meta['converted_from']) == (0, True, ORIG)
  assert meta['model'] == dataclasses.asdict(model.cfg)
  with np.load(tmp_path / 'back.npz') as back, np.load(ORIG) as z:
    for k in back.files:
      np.testing.assert_array_equal(back[k], z[k])
  assert f'-> {out} (a workdir: checkpoints/0)' in capsys.readouterr().out
  # A second conversion into the same workdir is refused, in one line; nothing is changed.
  assert convert.main(['--input', ORIG, '--output', str(out)]) == 2
  assert capsys.readouterr().err == (f'error: {out} already holds checkpoints (steps [0]); '
                                     'write the weights to a new folder\n')


def test_cli_reports_errors(tmp_path, capsys):
  assert convert.main(['--input', str(tmp_path / 'missing.npz'), '--output', str(tmp_path)]) == 2
  assert 'checkpoint not found' in capsys.readouterr().err
  sd, _, _, _ = _golden_state_dict()
  del sd['head.bias']
  np.savez(tmp_path / 'broken.npz', **sd)
  assert convert.main(['--input', str(tmp_path / 'broken.npz'), '--output', str(tmp_path / 'o'),
                       '--override', 'num_heads=4']) == 2
  assert 'head.bias' in capsys.readouterr().err


def test_cli_names_the_keys_of_a_file_that_is_no_motionformer(tmp_path, capsys):
  """Keys renamed (another model's, or another framework's naming): the shapes cannot say what
  model it is, so one error lists what is missing and what the file holds (was a KeyError)."""
  sd, _, _, _ = _golden_state_dict()
  np.savez(tmp_path / 'wrong_keys.npz', **{'model.' + k.replace('.', '_'): v
                                           for k, v in sd.items()})
  assert convert.main(['--input', str(tmp_path / 'wrong_keys.npz'),
                       '--output', str(tmp_path / 'o')]) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: not an official Motionformer state dict') and 'Traceback' not in err
  assert ('missing (5): cls_token, patch_embed_3d.proj.weight, temp_embed, '
          'blocks.0.mlp.fc1.weight, head.weight (or head0/1)') in err
  assert f'its keys ({len(sd)}): model.blocks_0_' in err
  assert not (tmp_path / 'o').exists()
