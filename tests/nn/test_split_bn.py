"""SplitBatchNorm2d: per-chunk statistics, BatchNorm2d-compatible names, conversion."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from sslkit.nn.split_bn import SplitBatchNorm2d, convert_to_split_bn

pytestmark = pytest.mark.usefixtures("one_thread")


def _with_affine(bn: nn.BatchNorm2d) -> nn.BatchNorm2d:
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.5, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return bn


def test_one_split_equals_batchnorm():
    """splits=1 gives BatchNorm2d's output and running statistics, train and eval."""
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 + 1
    plain, split = _with_affine(nn.BatchNorm2d(3)), _with_affine(SplitBatchNorm2d(3, splits=1))
    assert torch.allclose(split(x), plain(x), atol=1e-6)
    assert torch.allclose(split.running_mean, plain.running_mean)
    assert torch.allclose(split.running_var, plain.running_var)
    plain.eval(), split.eval()
    assert torch.allclose(split(x), plain(x), atol=1e-6)


def test_state_dict_keys_equal_batchnorm():
    """Parameter and buffer names are those of nn.BatchNorm2d (torchvision compatible)."""
    assert list(SplitBatchNorm2d(5, splits=4).state_dict()) == list(nn.BatchNorm2d(5).state_dict())


def test_two_splits_normalise_interleaved_halves():
    """splits=2: samples 0,2,4 and 1,3,5 are normalised with their own statistics."""
    x = torch.randn(6, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    x[1::2] = x[1::2] * 3 + 5  # the odd chunk has very different statistics
    bn = _with_affine(SplitBatchNorm2d(3, splits=2))
    out = bn(x)
    weight, bias = bn.weight.view(1, 3, 1, 1), bn.bias.view(1, 3, 1, 1)
    expected = torch.empty_like(x)
    means, unbiased_vars = [], []
    for chunk in (slice(0, None, 2), slice(1, None, 2)):
        part = x[chunk]
        mean = part.mean(dim=(0, 2, 3), keepdim=True)
        var = part.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        expected[chunk] = (part - mean) / torch.sqrt(var + bn.eps) * weight + bias
        means.append(mean.flatten())
        unbiased_vars.append(part.var(dim=(0, 2, 3), unbiased=True))
    assert torch.allclose(out.detach(), expected, atol=1e-5)
    # running stats: momentum 0.1 towards each chunk's statistics, averaged over chunks
    m = 0.1
    assert torch.allclose(bn.running_mean, sum(m * mu for mu in means) / 2, atol=1e-6)
    assert torch.allclose(bn.running_var, sum((1 - m) + m * v for v in unbiased_vars) / 2,
                          atol=1e-5)  # fmt: skip


def test_whole_batch_statistics_would_differ():
    """Sanity: plain BatchNorm2d on the same input gives a different result."""
    x = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(2))
    x[1::2] += 10
    assert not torch.allclose(SplitBatchNorm2d(3, splits=2)(x), nn.BatchNorm2d(3)(x), atol=1e-2)


def test_gradient_flows_to_affine_parameters():
    """The repeated weight and bias still receive gradients."""
    bn = SplitBatchNorm2d(3, splits=2)
    bn(torch.randn(4, 3, 2, 2)).pow(2).sum().backward()
    assert bn.weight.grad is not None and bn.bias.grad is not None


def test_batch_not_divisible_raises():
    """A batch that does not split evenly is an error."""
    with pytest.raises(ValueError, match="bn_splits"):
        SplitBatchNorm2d(3, splits=4)(torch.randn(6, 3, 2, 2))


def test_eval_mode_is_plain_batchnorm():
    """In eval mode the running statistics are used, whatever the splits."""
    plain, split = nn.BatchNorm2d(3), SplitBatchNorm2d(3, splits=2)
    for bn in (plain, split):
        bn.running_mean.fill_(0.5)
        bn.running_var.fill_(4.0)
        bn.eval()
    x = torch.randn(4, 3, 2, 2)
    assert torch.allclose(split(x), plain(x))
    assert torch.allclose(split(x), (x - 0.5) / torch.sqrt(torch.tensor(4.0) + 1e-5), atol=1e-6)


def test_convert_resnet18_keeps_state_dict():
    """convert_to_split_bn replaces every BatchNorm2d and keeps keys and values."""
    torch.manual_seed(0)
    net = resnet18(weights=None)
    with torch.no_grad():
        net.bn1.running_mean.fill_(0.25)
    reference = {k: v.clone() for k, v in net.state_dict().items()}
    converted = convert_to_split_bn(net, splits=2)
    assert converted is net
    state = converted.state_dict()
    assert list(state) == list(reference)
    assert all(torch.equal(state[k], reference[k]) for k in reference)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 20 and all(isinstance(m, SplitBatchNorm2d) for m in norms)
    assert all(m.splits == 2 for m in norms)
    resnet18(weights=None).load_state_dict(state)  # loads into plain torchvision (strict)
    out = net(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 1000) and torch.isfinite(out).all()
