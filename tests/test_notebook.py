"""The Colab notebook runs top to bottom offline on a tiny model (MFORMER_NOTEBOOK_CI=1), its last
cell prints the model's own numbers, and the committed file carries no outputs."""
import json
import os

import jax
import nbclient
import nbformat
import numpy as np
import pytest

import real_footage
import train_fixtures as tfx
from mformer_jax import weights
from mformer_jax.data import pipeline
from mformer_jax.data.config import data_config

NOTEBOOK = os.path.join(tfx.ROOT, 'notebooks', 'motionformer_quickstart.ipynb')


def test_notebook_committed_without_outputs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == 'code']
  assert code and all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.slow
def test_notebook_runs_offline(tmp_path, monkeypatch):
  monkeypatch.setenv('MFORMER_NOTEBOOK_CI', '1')
  monkeypatch.setenv('PYTHONPATH', tfx.ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', '3')
  nb = nbformat.read(NOTEBOOK, as_version=4)
  # A failing cell raises CellExecutionError (allow_errors is off); the kernel works in tmp_path.
  nbclient.NotebookClient(nb, timeout=300, kernel_name='python3',
                          resources={'metadata': {'path': str(tmp_path)}}).execute()
  code = [c for c in nb.cells if c.cell_type == 'code']
  images = [c.source for c in code for o in c.outputs if 'image/png' in o.get('data', {})]
  # Two images: the attention panels, then the last cell's bar chart of the result.
  assert len(images) == 2 and 'attention_maps.render' in images[0], images
  assert images[1] == code[-1].source
  text = ''.join(o.get('text', '') for o in code[-1].outputs if o.output_type == 'stream')
  result = json.loads(text.strip().splitlines()[-1])

  # The same numbers, recomputed here from the state dict the notebook wrote.
  model, variables = weights.load_official(str(tmp_path / 'motionformer_ci.npz'),
                                           dict(img_size=32, pretrain_img_size=32, num_heads=2))
  data = data_config('kinetics400', num_frames=8, sampling_rate=4, crop_size=32)
  data.test_num_clips, data.test_num_crops = 2, 1
  views = pipeline.load_video_views(real_footage.clip('carphone_pristine.mp4'), data)
  probs = np.asarray(jax.nn.softmax(model.apply(variables, views, train=False), -1)).mean(0)
  assert result['views'] == 2 and result['slots'] == 4
  assert result['top5'] == [int(i) for i in np.argsort(-probs, kind='stable')[:5]]
  np.testing.assert_allclose(result['probs'], probs[result['top5']], atol=2e-6)
  assert probs.max() - probs.min() > 1e-3  # The input mattered: not a uniform untrained output.
  np.testing.assert_allclose(result['attention_sums'], np.ones(4), atol=1e-4)
