"""A loopback HTTP server standing in for the released checkpoints' host, and the tiny official
.pyth files it serves under released names (torch.save format, written by tests/torch_files.py)."""
import http.server
import re
import threading

import jax
import numpy as np
import pytest
import yaml

import torch_files
from mformer_jax.model import ModelConfig, Motionformer, init_variables
from mformer_jax.weights import official


def yacs(dataset='kinetics', classes=400, **vit):
  """A tiny model's official (yacs) config, as a released .pyth carries it."""
  vit = {'EMBED_DIM': 8, 'DEPTH': 1, 'NUM_HEADS': 2, 'PATCH_SIZE': 16, 'PATCH_SIZE_TEMP': 2,
         'TEMPORAL_RESOLUTION': 2, 'USE_MLP': True, **vit}
  return {'VIT': vit, 'DATA': {'TRAIN_CROP_SIZE': 32}, 'MODEL': {'NUM_CLASSES': classes},
          'TRAIN': {'DATASET': dataset}}


def official_pyth(path, cfg=None, seed=0):
  """Writes a PySlowFast checkpoint of random weights for the official config `cfg` (default:
  yacs()); returns (ModelConfig, params) as the file holds them."""
  cfg = cfg or yacs()
  model_cfg = ModelConfig.from_config(official.config_from_official(cfg))
  shapes = jax.eval_shape(lambda: init_variables(Motionformer(model_cfg), jax.random.key(0)))
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: (0.1 * rng.standard_normal(s.shape)).astype(s.dtype),
                        shapes['params'])
  torch_files.write_pyth(path, {'epoch': 1, 'model_state': official.export_official(params),
                                'cfg': yaml.safe_dump(cfg)})
  return model_cfg, params


class Server:
  """Serves {name: bytes} as /NAME.pyth on 127.0.0.1, honouring `Range: bytes=N-`; `requests`
  lists (path, Range header or None); `cut` = K sends only the first K bytes of the next
  full-file answer (its Content-Length says all) and drops the connection."""

  def __init__(self):
    self.files, self.requests, self.cut = {}, [], None
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def do_GET(self):  # pylint: disable=invalid-name
        server.requests.append((self.path, self.headers.get('Range')))
        data = server.files.get(self.path.rsplit('/', 1)[-1].removesuffix('.pyth'))
        if data is None:
          return self.send_error(404)
        m = re.fullmatch(r'bytes=(\d+)-', self.headers.get('Range') or '')
        start = int(m.group(1)) if m else 0
        if start >= len(data) and m:
          self.send_response(416)
          self.send_header('Content-Range', f'bytes */{len(data)}')
          self.end_headers()
          return None
        self.send_response(206 if m else 200)
        if m:
          self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        self.send_header('Content-Length', str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if server.cut is not None and not m:
          body, server.cut = body[:server.cut], None
          self.close_connection = True
        self.wfile.write(body)
        return None

      def log_message(self, *args):
        pass

    self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}/motionformer'
    self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
    self.thread.start()

  def stop(self):
    self.httpd.shutdown()
    self.httpd.server_close()


@pytest.fixture
def releases(tmp_path, monkeypatch):
  """A running Server as $MFORMER_RELEASES_URL, an empty cache as $MFORMER_CACHE."""
  server = Server()
  monkeypatch.setenv('MFORMER_RELEASES_URL', server.url)
  monkeypatch.setenv('MFORMER_CACHE', str(tmp_path / 'cache'))
  yield server
  server.stop()
