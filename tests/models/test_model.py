"""The Motionformer network: variants, shapes, gradients, position-embedding resizing, errors."""

from __future__ import annotations

import pytest
import torch

import motionformer
from motionformer.models import Motionformer, count_parameters, create_model, list_models, split_heads

TINY = dict(img_size=32, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=5)


def test_registry_lists_the_paper_variants():
    names = set(list_models())
    assert {"mformer_b", "mformer_l", "mformer_hr", "mformer_h", "joint_b", "divided_b", "mformer_tiny"} <= names


@pytest.mark.parametrize("attention, expected", [("trajectory", 109_144_720), ("joint", 87_883_408),
                                                 ("divided", 116_250_256)])
def test_base_models_have_the_released_parameter_counts(attention, expected):
    with torch.device("meta"):  # shapes only, no memory or initialisation cost
        assert count_parameters(create_model("mformer_b", attention=attention)) == expected


def test_epic_kitchens_heads_match_the_released_keys():
    with torch.device("meta"):
        model = create_model("mformer_b", heads={"verb": 97, "noun": 300})
    assert count_parameters(model) == 109_142_413
    assert {"head0.weight", "head1.weight"} <= set(model.state_dict()) and "head.weight" not in model.state_dict()


@pytest.mark.parametrize("options", [{}, {"attention": "joint"}, {"attention": "divided"},
                                     {"tubelet_size": 1, "pos_embed": "joint"},
                                     {"approx": "orthoformer", "num_prototypes": 2},
                                     {"heads": {"verb": 3, "noun": 4}}, {"drop_path_rate": 0.1}])
def test_tiny_models_train(options):
    model = create_model("mformer_tiny", **{**TINY, **options})
    x = torch.randn(2, 3, 4, 32, 32)
    logits = model(x)
    assert torch.isfinite(logits).all() and logits.shape == (2, model.num_classes)
    logits.logsumexp(-1).mean().backward()
    unused = set(model.unused_by_logits())  # the last block's patch-only weights: the logits skip that path
    assert unused == ({"blocks.1.attn.proj_q.weight", "blocks.1.attn.proj_q.bias", "blocks.1.attn.proj_kv.weight",
                       "blocks.1.attn.proj_kv.bias"} if model.attention.value == "trajectory" else set())
    for name, param in model.named_parameters():
        if name in unused:
            assert param.grad is None, name
        elif param.requires_grad:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
    heads = split_heads(logits, model.heads)
    assert {name: value.shape[1] for name, value in heads.items()} == model.heads


def test_other_input_sizes_resize_position_embeddings():
    model = Motionformer(**TINY).eval()
    assert model(torch.randn(1, 3, 8, 48, 64)).shape == (1, 5)  # more frames, another crop
    joint = Motionformer(**TINY, pos_embed="joint").eval()
    assert joint(torch.randn(1, 3, 2, 48, 32)).shape == (1, 5)


def test_gradient_checkpointing_gives_the_same_gradients():
    model = Motionformer(**TINY)
    x = torch.randn(1, 3, 4, 32, 32)
    model(x).sum().backward()
    unused = set(model.unused_by_logits())
    trained = [p for name, p in model.named_parameters() if p.requires_grad and name not in unused]
    plain = [p.grad.clone() for p in trained]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for a, b in zip(plain, [p.grad for p in trained], strict=True):
        torch.testing.assert_close(a, b)


def test_model_surface():
    model = Motionformer(**TINY)
    assert {"cls_token", "pos_embed", "temp_embed"} <= model.no_weight_decay()
    assert "blocks.0.attn.qkv.weight" not in model.no_weight_decay()
    features = model.forward_features(torch.randn(1, 3, 4, 32, 32))
    assert features.shape == (1, 1 + 2 * 4, 32)
    assert model.forward_head(features, pre_logits=True).shape == (1, 32)
    model.reset_classifier(7)
    assert model(torch.randn(1, 3, 4, 32, 32)).shape == (1, 7)
    assert model.architecture["num_classes"] == 7


def test_attention_maps_are_per_frame_distributions():
    model = Motionformer(**TINY).eval()
    maps = model.trajectory_attention_maps(torch.randn(1, 3, 4, 32, 32), query=(1, 0, 1), layers=[1])
    assert list(maps) == [1] and maps[1].shape == (1, 2, 2, 2, 2)
    torch.testing.assert_close(maps[1].sum((-2, -1)), torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="outside the token grid"):
        model.trajectory_attention_maps(torch.randn(1, 3, 4, 32, 32), query=(2, 0, 0))


def test_bad_input_is_named():
    model = Motionformer(**TINY)
    with pytest.raises(ValueError, match="40x32 is not a multiple of the patch size 16"):
        model(torch.randn(1, 3, 4, 40, 32))
    with pytest.raises(ValueError, match="3 frames is not a multiple of the tubelet size 2"):
        model(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match=r"got shape \(3, 4, 32, 32\)"):
        model(torch.randn(3, 4, 32, 32))
    with pytest.raises(ValueError, match="unknown model 'mformer_x'"):
        motionformer.create_model("mformer_x")


@pytest.mark.slow
def test_torch_compile_tiny_model():
    model = Motionformer(**TINY)
    compiled = torch.compile(model)
    x = torch.randn(2, 3, 4, 32, 32)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    compiled(x).sum().backward()
    assert model.blocks[0].attn.proj_kv.weight.grad is not None
