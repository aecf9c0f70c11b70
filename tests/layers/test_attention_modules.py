"""Attention modules: released parameter names, parity with the references, autocast, bad input."""

from __future__ import annotations

import pytest
import torch

from motionformer.attention.reference import divided_attention_reference, softmax_attention_reference
from motionformer.layers import Block, JointAttention, SpaceAttention, TimeAttention, TrajectoryAttention

RELEASED_TRAJECTORY_KEYS = {  # from the released K400 Motionformer state dict, block 0, C = 768
    "qkv.weight": (2304, 768), "qkv.bias": (2304,), "proj_q.weight": (768, 768), "proj_q.bias": (768,),
    "proj_kv.weight": (1536, 768), "proj_kv.bias": (1536,), "proj.weight": (768, 768), "proj.bias": (768,),
}
RELEASED_DIVIDED_BLOCK_KEYS = {
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
    "timeattn.qkv.weight", "timeattn.qkv.bias", "timeattn.proj.weight", "timeattn.proj.bias",
    "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
    "norm3.weight", "norm3.bias",
}


def _qkv(module, x):
    h, d = module.num_heads, module.head_dim
    return (module.qkv(x).unflatten(-1, (3, h, d)).permute(2, 0, 3, 1, 4))  # (3, B, H, N, D)


def test_trajectory_attention_has_the_released_parameters():
    shapes = {name: tuple(p.shape) for name, p in TrajectoryAttention(768, 12).state_dict().items()}
    assert shapes == RELEASED_TRAJECTORY_KEYS


def test_divided_block_has_the_released_parameters():
    block = Block(32, SpaceAttention(32, 4), timeattn=TimeAttention(32, 4))
    assert set(block.state_dict()) == RELEASED_DIVIDED_BLOCK_KEYS


OPTIONS = [
    {},
    {"original_temporal_values": True},
    {"temporal_pooling": "average"},
    {"normalization": "space_time"},
]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("frames, per_frame, batch", [(3, 5, 2), (1, 4, 1), (4, 1, 1)])
def test_trajectory_module_matches_reference_module(options, frames, per_frame, batch):
    fast = TrajectoryAttention(24, 3, **options).double()
    slow = TrajectoryAttention(24, 3, reference=True, **options).double()
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(batch, 1 + frames * per_frame, 24, dtype=torch.float64, requires_grad=True)
    out_fast, out_slow = fast(x, frames), slow(x, frames)
    torch.testing.assert_close(out_fast, out_slow)
    g = torch.randn_like(out_fast)
    grad_fast = torch.autograd.grad((out_fast * g).sum(), [x, *fast.parameters()], allow_unused=True)
    grad_slow = torch.autograd.grad((out_slow * g).sum(), [x, *slow.parameters()], allow_unused=True)
    for name, a, b in zip(["x", *dict(fast.named_parameters())], grad_fast, grad_slow, strict=True):
        assert a is not None, f"{name} gets no gradient"  # DDP needs every parameter in the graph
        torch.testing.assert_close(a, b, msg=name)


def test_average_pooling_has_no_temporal_projections():
    assert not hasattr(TrajectoryAttention(16, 2, temporal_pooling="average"), "proj_kv")


def test_joint_attention_module():
    m = JointAttention(16, 2).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    q, k, v = _qkv(m, x)
    expected = m.proj(softmax_attention_reference(q, k, v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(m(x, 2), expected)


@pytest.mark.parametrize("cls, over_time", [(TimeAttention, True), (SpaceAttention, False)])
@pytest.mark.parametrize("frames, per_frame", [(3, 4), (1, 5), (2, 1)])
def test_divided_modules_match_reference(cls, over_time, frames, per_frame):
    m = cls(16, 2).double()
    x = torch.randn(2, 1 + frames * per_frame, 16, dtype=torch.float64)
    q, k, v = _qkv(m, x)
    ref = divided_attention_reference(q, k, v, frames, over_time)
    torch.testing.assert_close(m(x, frames), m.proj(ref.transpose(1, 2).flatten(2)))


def test_divided_block_residual_order():
    block = Block(16, SpaceAttention(16, 2), timeattn=TimeAttention(16, 2)).double().eval()
    x = torch.randn(1, 1 + 2 * 3, 16, dtype=torch.float64)
    y = x + block.timeattn(block.norm3(x), 2)
    z = y + block.attn(block.norm1(y), 2)
    torch.testing.assert_close(block(x, 2), z + block.mlp(block.norm2(z)))


@pytest.mark.parametrize("approx", ["orthoformer", "nystrom", "performer"])
def test_approximate_trajectory_modules_run_and_train(approx):
    m = TrajectoryAttention(32, 4, approx=approx, num_prototypes=4)
    x = torch.randn(2, 1 + 3 * 9, 32, requires_grad=True)
    out = m(x, 3)
    out.square().mean().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("options", [{}, {"original_temporal_values": True},
                                     {"approx": "orthoformer", "num_prototypes": 4},
                                     {"approx": "orthoformer", "num_prototypes": 4, "shared_prototypes": False},
                                     {"approx": "nystrom", "num_prototypes": 4},
                                     {"approx": "performer"}])
def test_autocast_half_precision_has_no_nan(dtype, options):
    m = TrajectoryAttention(32, 4, **options)
    x = 3 * torch.randn(2, 1 + 2 * 16, 32)
    x[:, 5] = 0.0  # a zero token among the prototype candidates
    x.requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        out = m(x, 2)
    out.float().square().mean().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


def test_spatial_attention_map_is_eq4_weights():
    m = TrajectoryAttention(16, 2).double()
    x = torch.randn(1, 1 + 3 * 4, 16, dtype=torch.float64)
    maps = m.spatial_attention_map(x, 3, query_index=5)
    assert maps.shape == (1, 2, 3, 4)
    torch.testing.assert_close(maps.sum(-1), torch.ones(1, 2, 3, dtype=torch.float64))
    q, k, _ = _qkv(m, x)
    scores = k[0, 0, 1:].view(3, 4, 8) @ q[0, 0, 6] * 8 ** -0.5
    torch.testing.assert_close(maps[0, 0], torch.softmax(scores, -1))


def test_bad_arguments_name_the_numbers():
    with pytest.raises(ValueError, match=r"dim = 30 .* num_heads = 4"):
        TrajectoryAttention(30, 4)
    with pytest.raises(ValueError, match="num_prototypes must be an integer >= 1, got 0"):
        TrajectoryAttention(32, 4, approx="orthoformer", num_prototypes=0)
    with pytest.raises(ValueError, match=r"token count 11 .* num_frames = 4"):
        TrajectoryAttention(32, 4)(torch.randn(1, 11, 32), 4)
    with pytest.raises(ValueError, match=r"token count 11 .* num_frames = 3"):
        TimeAttention(32, 4)(torch.randn(1, 11, 32), 3)
    with pytest.raises(ValueError, match="space_time"):
        TrajectoryAttention(32, 4, approx="nystrom", normalization="space_time")
    with pytest.raises(ValueError, match="'bogus'"):
        TrajectoryAttention(32, 4, approx="bogus")


@pytest.mark.gpu
def test_cuda_fast_path_matches_reference_in_bf16():
    fast = TrajectoryAttention(64, 4).cuda()
    slow = TrajectoryAttention(64, 4, reference=True).cuda()
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(2, 1 + 4 * 49, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        a, b = fast(x, 4).float(), slow(x, 4).float()
    assert ((a - b).norm() / b.norm()) < 2e-2


@pytest.mark.gpu
def test_greedy_selection_loop_never_synchronises_with_the_host():
    from motionformer.attention import greedy_orthogonal_indices

    candidates = torch.randn(2, 4, 256, 32, device="cuda")
    greedy_orthogonal_indices(candidates, 64)  # warm-up: kernels load, allocator fills
    torch.cuda.set_sync_debug_mode("error")
    try:
        greedy_orthogonal_indices(candidates, 64)
    finally:
        torch.cuda.set_sync_debug_mode("default")
