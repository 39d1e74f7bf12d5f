"""DINOv2 encoder through transformers with the release's preprocessing.

release: actionmesh/model/image_encoder.py, ``ImageEncoder.encode_images`` (the ``BitImageProcessor`` of
``facebook/dinov2-large``).
"""
from __future__ import annotations

import pytest
import torch

from actionmesh_core.models.dino import IMAGENET_MEAN, IMAGENET_STD, DinoV2Encoder, preprocess_images


def test_preprocess_resize_crop_normalise():
    img = torch.ones(2, 300, 400, 3)
    img[:, :, :200] = 0.0  # left part black: the center crop cuts it
    x = preprocess_images(img)
    assert x.shape == (2, 3, 224, 224)
    white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(x[0, :, 112, -1], white, rtol=1e-4, atol=1e-4)
    # 400 px wide -> 341 after resizing the 300 px edge to 256; black covers the left half: column 0 of
    # the 224 crop starts at (341-224)//2 = 58 < 170, so it is black
    black = (0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(x[0, :, 112, 0], black, rtol=1e-3, atol=1e-3)


def test_preprocess_rejects_bad_input():
    with pytest.raises(ValueError, match="RGB"):
        preprocess_images(torch.rand(2, 64, 64, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        preprocess_images(torch.rand(1, 64, 64, 3) * 255)


def test_local_folder_gives_257_tokens(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       patch_size=14, image_size=224)
    Dinov2Model(cfg).save_pretrained(tmp_path)
    enc = DinoV2Encoder.from_pretrained(tmp_path)
    enc.batch_size = 2
    feats = enc(torch.rand(3, 100, 120, 3))
    assert feats.shape == (3, 257, 32) and enc.hidden_size == 32
    single = enc(torch.rand(1, 100, 120, 3))
    assert single.shape == (1, 257, 32)


def test_missing_folder_says_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="dinov2-large"):
        DinoV2Encoder.from_pretrained(tmp_path / "dinov2-large")
