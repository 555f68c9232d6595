"""`vlmad train --config`: a config file may build on another (`base:`), section by section."""
import argparse
import pathlib

import pytest
from vlmad_ros.training.config import resolve_configs

REPO = pathlib.Path(__file__).resolve().parents[1]


def _resolve(path):
    return resolve_configs(argparse.Namespace(config=str(path), model=None, no_vlm_ad=False,
                                              q1_only=False, q2_only=False))


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_base_is_read_first_and_the_file_overrides_it_field_by_field(tmp_path):
    _write(tmp_path / 'recipes' / 'root.yaml',
           'model:\n  d_model: 64\n  zoom: 2.0\ntrain:\n  lr: 0.001\n  epochs: 3\n')
    _write(tmp_path / 'recipes' / 'mid.yaml',
           'base: root.yaml\nmodel:\n  zoom: 3.0\nvlmad:\n  teacher_temp: 0.05\n')
    leaf = _write(tmp_path / 'exp' / 'leaf.yaml',    # the base path is relative to the file
                  'base: ../recipes/mid.yaml\ntrain:\n  epochs: 5\n')
    cfg = _resolve(leaf)
    assert (cfg['model'].d_model, cfg['model'].zoom) == (64, 3.0)
    assert (cfg['train'].lr, cfg['train'].epochs) == (0.001, 5)
    assert cfg['vlmad'].teacher_temp == 0.05


def test_a_base_that_includes_itself_or_is_missing_is_named(tmp_path):
    a = _write(tmp_path / 'a.yaml', 'base: b.yaml\n')
    _write(tmp_path / 'b.yaml', 'base: a.yaml\n')
    with pytest.raises(ValueError, match='includes itself'):
        _resolve(a)
    lost = _write(tmp_path / 'lost.yaml', 'base: nowhere.yaml\n')
    with pytest.raises(FileNotFoundError, match=r'base of .*lost\.yaml: .*nowhere\.yaml'):
        _resolve(lost)
    odd = _write(tmp_path / 'odd.yaml', 'base: lost.yaml\nschedule:\n  x: 1\n')
    with pytest.raises(ValueError, match=r"unknown section\(s\) \['schedule'\]"):
        _resolve(odd)


@pytest.mark.parametrize('path', sorted((REPO / 'experiments').rglob('*.yaml')),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_every_experiment_config_resolves(path):
    cfg = _resolve(path)
    assert cfg['model'].d_model > 0 and cfg['train'].epochs > 0


def test_the_shipped_recipe_resolves_to_its_documented_fields():
    """Round 7's recipe (default.pt), four bases deep: what EXPERIMENTS.md says it trains."""
    cfg = _resolve(REPO / 'experiments' / 'lights' / 'finetune_lift_egodrop.yaml')
    model, train = cfg['model'], cfg['train']
    assert (model.image_width, model.image_height, model.zoom) == (128, 72, 3.0)
    assert (model.zoom_lift, model.use_accel, model.ego_dropout) == (0.05, False, 0.3)
    assert (train.epochs, train.batch_size, train.lr, train.light_weight) == (10, 32, 3e-4, 0.5)
    assert cfg['vlmad'].teacher_temp == 0.01
