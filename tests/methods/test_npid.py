"""NPID and its memory bank: hand-computed losses, Z, bank updates, DDP gather, state, a step."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from sslkit.data.base import DataInfo
from sslkit.errors import BadInput
from sslkit.methods import npid as npid_module
from sslkit.methods.base import Batch, StepContext
from sslkit.methods.npid import (
    NPID,
    full_softmax_loss,
    nce_loss,
    nce_similarities,
    nce_z_estimate,
)
from sslkit.methods.registry import get_method
from sslkit.models.backbones import build_backbone
from sslkit.nn import memory_bank as bank_module
from sslkit.nn.memory_bank import MemoryBank, uniform_init_bound
from tests.conftest import step_context

BATCH = 4
SIDE = 16  # the ImageNet stem reaches 1x1 in layer3: the cheapest valid input
NUM_SAMPLES = 20
INFO = DataInfo("toy", num_classes=2, image_size=SIDE, channels=3, mean=(0.5,) * 3,
                std=(0.5,) * 3, num_samples=NUM_SAMPLES)  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


def _method(info: DataInfo = INFO, **overrides) -> NPID:
    torch.manual_seed(0)
    values = {"dim": 8, "nce_k": 0, "temperature": 0.1, **overrides}
    return NPID(NPID.Config(**values), build_backbone("resnet18"), info).train()


def _ctx(seed: int = 0) -> StepContext:
    return step_context(seed)


def _batch(views: int = 1) -> Batch:
    gen = torch.Generator().manual_seed(1)
    images = [torch.randn(BATCH, 3, SIDE, SIDE, generator=gen) for _ in range(views)]
    return Batch(views=images, indices=torch.tensor([3, 7, 11, 19]))


def _unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


# -- losses on small tensors ------------------------------------------------------------------
def test_full_softmax_hand_example():
    """V = [e1, e2, −e1], f = e1, T = 0.5: logits (2, 0, −2), L = −2 + ln(e² + 1 + e⁻²)."""
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    loss = full_softmax_loss(torch.tensor([[1.0, 0.0]]), bank, torch.tensor([0]), 0.5)
    expected = -2.0 + math.log(math.exp(2) + 1 + math.exp(-2))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_full_softmax_equal_logits_is_ln_n():
    """Every logit equal (all rows the same vector): the loss is exactly ln N."""
    bank = torch.tensor([[0.6, 0.8]]).repeat(50, 1)
    embedding = torch.tensor([[0.6, 0.8], [0.8, -0.6]])
    loss = full_softmax_loss(embedding, bank, torch.tensor([4, 31]), 0.07)
    assert loss.item() == pytest.approx(math.log(50), rel=1e-6)


def test_full_softmax_random_is_near_ln_n():
    """Random unit embeddings against a random bank: close to ln N."""
    bank = _unit(1000, 128, seed=0)
    loss = full_softmax_loss(_unit(64, 128, seed=1), bank, torch.arange(64), 0.1)
    assert abs(loss.item() - math.log(1000)) < 0.2


def test_full_softmax_gradient_formula():
    """∂L/∂f_i = (softmax_i − onehot_i)·V / (T·b); the bank receives no gradient."""
    bank = _unit(6, 4, seed=2)
    embedding = _unit(3, 4, seed=3).requires_grad_()
    indices = torch.tensor([5, 0, 2])
    temperature = 0.2
    full_softmax_loss(embedding, bank, indices, temperature).backward()
    probabilities = torch.softmax(embedding.detach() @ bank.t() / temperature, dim=1)
    onehot = F.one_hot(indices, 6).float()
    expected = (probabilities - onehot) @ bank / (temperature * 3)
    torch.testing.assert_close(embedding.grad, expected)
    assert bank.grad is None


def test_nce_loss_closed_form():
    """A 1 x (K+1) example, K = 2, N = 4 (K·P_n = 0.5), against NPID's NCE formula."""
    probabilities = torch.tensor([[0.9, 0.2, 0.05]])
    noise, eps = 2 / 4, 1e-7
    expected = -(math.log(0.9 / (0.9 + noise + eps)) + math.log(noise / (0.2 + noise + eps))
                 + math.log(noise / (0.05 + noise + eps)))  # fmt: skip
    assert nce_loss(probabilities, num_samples=4).item() == pytest.approx(expected, rel=1e-6)


def test_nce_loss_is_a_batch_mean():
    """Two rows: the loss is the mean of the one-row losses."""
    rows = torch.tensor([[0.9, 0.2, 0.05], [0.1, 0.7, 0.3]])
    both = nce_loss(rows, 10).item()
    single = [nce_loss(rows[i : i + 1], 10).item() for i in range(2)]
    assert both == pytest.approx(sum(single) / 2, rel=1e-6)


def test_nce_similarity_paths_agree(monkeypatch):
    """Gathered from one b x N product or from b x (K+1) x D gathered rows: same numbers."""
    bank = MemoryBank(30, 8, generator=torch.Generator().manual_seed(0))
    embedding = _unit(4, 8, seed=1)
    ids = bank.sample_with_positive(torch.tensor([0, 5, 5, 29]), 7,
                                    torch.Generator().manual_seed(2))  # fmt: skip
    expected = torch.einsum("bkd,bd->bk", bank.bank[ids], embedding)
    product = nce_similarities(embedding, bank, ids)  # 30 <= 32 x 8: product path
    monkeypatch.setattr(npid_module, "FULL_PRODUCT_RATIO", 0)
    gathered = nce_similarities(embedding, bank, ids)
    torch.testing.assert_close(product, expected)
    torch.testing.assert_close(gathered, expected)


def test_nce_z_is_set_once_from_the_first_batch():
    """Z = N · mean(exp(v·f/T)) over the first call's (K+1)·b entries, then never changes."""
    method = _method(nce_k=5, temperature=0.5)
    temperature, bank = 0.5, method.memory_bank
    embedding, indices = _unit(BATCH, 8, seed=4), torch.tensor([0, 1, 2, 3])
    generator = torch.Generator().manual_seed(7)
    replay = torch.Generator().manual_seed(7)
    assert float(method.nce_z) < 0
    loss = method.instance_loss(embedding, indices, generator)
    ids = bank.sample_with_positive(indices, 5, replay)
    assert ids.shape == (BATCH, 6) and torch.equal(ids[:, 0], indices)
    exp = torch.exp(torch.einsum("bkd,bd->bk", bank.bank[ids], embedding) / temperature)
    z = NUM_SAMPLES * exp.mean()
    assert float(method.nce_z) == pytest.approx(z.item(), rel=1e-5)
    assert float(nce_z_estimate(exp, NUM_SAMPLES)) == pytest.approx(z.item(), rel=1e-6)
    assert loss.item() == pytest.approx(nce_loss(exp / z, NUM_SAMPLES).item(), rel=1e-5)
    method.instance_loss(_unit(BATCH, 8, seed=5) * 1.0, indices, generator)
    assert float(method.nce_z) == pytest.approx(z.item(), rel=1e-5)  # unchanged


def test_nce_z_is_averaged_over_ranks(monkeypatch):
    """Z goes through all_reduce_mean, so every rank stores the same constant."""
    seen = []

    def fake_all_reduce_mean(tensor):
        seen.append(tensor.clone())
        return tensor * 0 + 123.0  # what "the other ranks" agreed on

    monkeypatch.setattr(npid_module, "all_reduce_mean", fake_all_reduce_mean)
    method = _method(nce_k=3)
    method.instance_loss(_unit(2, 8, seed=1), torch.tensor([0, 1]), torch.Generator())
    assert len(seen) == 1 and float(method.nce_z) == 123.0


# -- the memory bank --------------------------------------------------------------------------
def test_bank_init_is_uniform_with_unit_expected_norm():
    """Entries in [−s, s], s = 1/√(D/3); rows not normalised but of norm ≈ 1."""
    bank = MemoryBank(2000, 128, generator=torch.Generator().manual_seed(0))
    bound = uniform_init_bound(128)
    assert bound == pytest.approx(0.1531, abs=1e-4)
    assert bank.bank.abs().max() <= bound and bank.bank.min() < -0.99 * bound
    norms = bank.bank.norm(dim=1)
    assert abs(norms.mean().item() - 1.0) < 0.01
    assert not torch.allclose(norms, torch.ones_like(norms), atol=1e-3)


def test_bank_update_arithmetic_and_untouched_rows():
    """v = e1, f = e2, m = 0.5 -> (e1 + e2)/√2; touched rows unit norm, others unchanged."""
    bank = MemoryBank(5, 3, momentum=0.5)
    before = bank.bank.clone()
    bank.bank[2] = torch.tensor([1.0, 0.0, 0.0])
    bank.update(torch.tensor([2, 4]), torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    torch.testing.assert_close(bank.bank[2], torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2))
    expected_4 = F.normalize(0.5 * before[4] + torch.tensor([0.0, 0.0, 0.5]), dim=0)
    torch.testing.assert_close(bank.bank[4], expected_4)
    torch.testing.assert_close(bank.bank[[2, 4]].norm(dim=1), torch.ones(2))
    torch.testing.assert_close(bank.bank[[0, 1, 3]], before[[0, 1, 3]])


def test_bank_update_general_momentum_and_detached():
    """m = 0.8: normalize(0.8 v + 0.2 f); features with gradient are not tracked."""
    bank = MemoryBank(4, 6, momentum=0.8, generator=torch.Generator().manual_seed(1))
    before = bank.bank.clone()
    features = _unit(2, 6, seed=2).requires_grad_()
    bank.update(torch.tensor([1, 3]), features)
    expected = F.normalize(0.8 * before[[1, 3]] + 0.2 * features.detach(), dim=1)
    torch.testing.assert_close(bank.bank[[1, 3]], expected)
    assert not bank.bank.requires_grad and bank.bank.grad_fn is None


def test_bank_update_repeated_index_uses_last_occurrence():
    """A row given twice in one update is written once, from its last occurrence."""
    bank = MemoryBank(3, 2, momentum=0.5)
    bank.bank.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]))
    bank.update(torch.tensor([1, 0, 1]), torch.tensor([[-1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    expected = torch.tensor([1.0, 1.0]) / math.sqrt(2)
    torch.testing.assert_close(bank.bank[0], expected)
    torch.testing.assert_close(bank.bank[1], expected)  # not the (-1, 0) of the first copy


def test_bank_sampling_is_uniform_with_replacement():
    """Noise ids lie in 0..N−1, are drawn with replacement, and follow the generator."""
    bank = MemoryBank(10, 2)
    ids = bank.sample(50, 40, torch.Generator().manual_seed(0))
    assert ids.shape == (50, 40) and ids.dtype == torch.long
    assert ids.min() >= 0 and ids.max() <= 9
    counts = torch.bincount(ids.flatten(), minlength=10).float()
    assert (counts / counts.sum() - 0.1).abs().max() < 0.02
    assert any(len(set(row.tolist())) < 40 for row in ids)  # 40 draws of 10 ids: repeats
    again = bank.sample(50, 40, torch.Generator().manual_seed(0))
    assert torch.equal(ids, again)
    with_positive = bank.sample_with_positive(torch.tensor([4, 9]), 3, torch.Generator())
    assert with_positive.shape == (2, 4) and with_positive[:, 0].tolist() == [4, 9]


def test_bank_update_gathers_the_global_batch(monkeypatch):
    """Two simulated ranks: each gathers (indices, features) of both and ends identical."""
    banks = [MemoryBank(8, 4, generator=torch.Generator().manual_seed(0)) for _ in range(2)]
    start = banks[0].bank.clone()
    local = [(torch.tensor([0, 5]), _unit(2, 4, seed=10)),
             (torch.tensor([2, 7]), _unit(2, 4, seed=11))]  # fmt: skip
    calls = []

    def gather_as(rank: int):
        def fake_gather(tensor):
            calls.append(rank)
            part = 0 if tensor.dtype == torch.long else 1
            shares = [local[r][part] for r in range(2)]
            assert torch.equal(shares[rank], tensor)  # this rank's own share
            return torch.cat(shares)  # rank order

        return fake_gather

    for rank in range(2):
        monkeypatch.setattr(bank_module, "all_gather_concat", gather_as(rank))
        banks[rank].update(*local[rank])
    assert calls == [0, 0, 1, 1]
    torch.testing.assert_close(banks[0].bank, banks[1].bank, rtol=0, atol=0)
    indices = torch.tensor([0, 5, 2, 7])
    features = torch.cat([local[0][1], local[1][1]])
    expected = F.normalize(0.5 * start[indices] + 0.5 * features, dim=1)
    torch.testing.assert_close(banks[0].bank[indices], expected)
    untouched = torch.tensor([1, 3, 4, 6])
    torch.testing.assert_close(banks[0].bank[untouched], start[untouched])


def _gloo_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)  # fmt: skip
    try:
        bank = MemoryBank(16, 4, generator=torch.Generator().manual_seed(0))
        for step in range(3):  # each rank updates its own rows, different every step
            indices = torch.tensor([4 * step + 2 * rank, 4 * step + 2 * rank + 1])
            bank.update(indices, _unit(2, 4, seed=100 * step + rank))
        torch.save(bank.bank, f"{out_dir}/bank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_bank_stays_identical_on_two_gloo_processes(tmp_path):
    """Two real gloo processes with different local batches end with identical banks."""
    import torch.multiprocessing as mp

    mp.spawn(_gloo_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    banks = [torch.load(tmp_path / f"bank{r}.pt") for r in range(2)]
    assert torch.equal(banks[0], banks[1])
    reference = MemoryBank(16, 4, generator=torch.Generator().manual_seed(0))
    initial = reference.bank.clone()
    for step in range(3):
        indices = torch.arange(4 * step, 4 * step + 4)
        features = torch.cat([_unit(2, 4, seed=100 * step + r) for r in range(2)])
        reference.update_local(indices, features)
    torch.testing.assert_close(banks[0], reference.bank)
    assert torch.equal(banks[0][12:], initial[12:])  # rows nobody touched


# -- the method -------------------------------------------------------------------------------
def test_registered_as_npid():
    """The entry point ``npid`` resolves to the class."""
    assert get_method("npid") is NPID


def test_defaults_follow_the_spec():
    """ImageNet recipe: 128-d linear head, K = 4096, T = 0.07, m = 0.5, one view."""
    config = NPID.Config()
    assert (config.dim, config.head, config.nce_k) == (128, "linear", 4096)
    assert (config.temperature, config.bank_momentum) == (0.07, 0.5)
    train = NPID.default_train
    assert train["lr"] == 0.03 and train["schedule"] == "step"
    assert train["milestones"] == [120, 160] and train["weight_decay"] == 1e-4
    augment = NPID.default_augment
    assert augment["jitter_prob"] == 1.0 and augment["jitter"] == [0.4] * 4
    assert augment["grayscale_prob"] == 0.2 and augment["blur_prob"] == 0.0
    method = _method()
    assert len(method.views(augment).crops) == 1 and method.online_views() == 1
    assert isinstance(method.online.head, torch.nn.Linear)
    assert method.memory_bank.bank.shape == (NUM_SAMPLES, 8)


def test_missing_num_samples_refuses_to_train():
    """Without N the method can be built (to embed), but views() and a step are bad input."""
    info = DataInfo("toy", 2, SIDE, 3, (0.5,) * 3, (0.5,) * 3)  # num_samples = 0
    method = _method(info)
    with pytest.raises(BadInput, match="number of training images"):
        method.views(NPID.default_augment)
    with pytest.raises(BadInput, match="number of training images"):
        method.training_step(_batch(), _ctx())


@pytest.mark.parametrize("field, value", [("nce_k", -1), ("temperature", 0.0),
                                          ("bank_momentum", 1.5), ("head", "nope"),
                                          ("dim", 0), ("queries", 0)])  # fmt: skip
def test_bad_config_is_bad_input(field, value):
    """Out-of-range hyper-parameters are refused with a message."""
    with pytest.raises(BadInput):
        _method(**{field: value})


@pytest.fixture(scope="module")
def stepped():
    """Full-softmax NPID before and after one SGD step + bank update, with its outputs."""
    method = _method()
    before = copy.deepcopy(method)
    batch = _batch()
    out = method.training_step(batch, _ctx())
    out["loss"].backward()
    grads = {name: p.grad is not None for name, p in method.named_parameters()}
    with torch.no_grad():
        embedding = F.normalize(method.online(batch.views[0]), dim=1)  # pre-step weights
    torch.optim.SGD(method.parameters(), lr=0.1).step()
    method.after_optimizer_step(_ctx())
    return before, method, batch, out, grads, embedding


def test_step_loss_is_full_softmax_against_the_pre_step_bank(stepped):
    """'loss' = CE(f·Vᵀ/T, index) with the bank before the update; near ln N at init."""
    before, _, batch, out, _, embedding = stepped
    assert set(out) == {"loss", "loss/instance"} and out["loss/instance"].grad_fn is None
    expected = full_softmax_loss(embedding, before.memory_bank.bank, batch.indices, 0.1)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(out["loss"].item() - math.log(NUM_SAMPLES)) < 3


def test_gradients_reach_backbone_and_head_only(stepped):
    """Backbone and head get gradients; the bank and Z are buffers without gradient."""
    _, method, _, _, grads, _ = stepped
    assert all(grads.values()) and len(grads) == len(list(method.parameters()))
    assert grads["online.head.weight"] and grads["backbone.conv1.weight"]
    names = {name for name, _ in method.named_parameters()}
    assert not any("memory_bank" in n or "nce_z" in n for n in names)
    assert method.memory_bank.bank.grad is None and not method.memory_bank.bank.requires_grad
    assert method.nce_z.grad is None and not method.nce_z.requires_grad


def test_step_updates_only_the_batch_rows(stepped):
    """After the step, rows of the batch = normalize(0.5 v + 0.5 f); other rows unchanged."""
    before, method, batch, _, _, embedding = stepped
    old = before.memory_bank.bank
    new = method.memory_bank.bank
    expected = F.normalize(0.5 * old[batch.indices] + 0.5 * embedding, dim=1)
    torch.testing.assert_close(new[batch.indices], expected, atol=1e-5, rtol=1e-5)
    others = torch.tensor([i for i in range(NUM_SAMPLES) if i not in batch.indices.tolist()])
    assert torch.equal(new[others], old[others])
    assert method._pending == []  # consumed


def test_nce_step_smoke_and_z():
    """An NCE step (K = 6): finite loss, Z estimated, gradients in the online network."""
    method = _method(nce_k=6)
    out = method.training_step(_batch(), _ctx())
    assert math.isfinite(out["loss"].item()) and float(method.nce_z) > 0
    out["loss"].backward()
    assert method.online.backbone.conv1.weight.grad is not None
    method.after_optimizer_step(_ctx())


def test_two_views_mean_loss_and_sequential_updates():
    """queries=2: mean of the per-view losses (pre-step bank), bank updated view 1 then 2."""
    method = _method(queries=2)
    assert len(method.views(NPID.default_augment).crops) == 2 and method.online_views() == 2
    before = copy.deepcopy(method)
    batch = _batch(views=2)
    out = method.training_step(batch, _ctx())
    with torch.no_grad():
        f1, f2 = (F.normalize(before.online(v), dim=1) for v in batch.views)
    bank = before.memory_bank.bank
    expected = (full_softmax_loss(f1, bank, batch.indices, 0.1)
                + full_softmax_loss(f2, bank, batch.indices, 0.1)) / 2  # fmt: skip
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    method.after_optimizer_step(_ctx())
    rows = F.normalize(0.5 * bank[batch.indices] + 0.5 * f1, dim=1)
    rows = F.normalize(0.5 * rows + 0.5 * f2, dim=1)
    torch.testing.assert_close(method.memory_bank.bank[batch.indices], rows, atol=1e-5,
                               rtol=1e-5)  # fmt: skip


def test_state_dict_round_trip_keeps_bank_and_z():
    """A new model loaded from the state dict has the same bank, Z and weights."""
    method = _method(nce_k=4)
    out = method.training_step(_batch(), _ctx())
    out["loss"].backward()
    method.after_optimizer_step(_ctx())
    state = method.state_dict()
    assert {"memory_bank.bank", "nce_z"} <= set(state)
    fresh = _method(nce_k=4)
    fresh.memory_bank.bank.uniform_()  # make sure the load overwrites it
    fresh.load_state_dict(state)
    assert torch.equal(fresh.memory_bank.bank, method.memory_bank.bank)
    assert float(fresh.nce_z) == float(method.nce_z) > 0
    assert torch.equal(fresh.online.head.weight, method.online.head.weight)


def test_unsized_bank_adopts_the_checkpoint_shape_and_sized_refuses_another():
    """N unknown (a rebuild for --layer head) takes the stored bank; a wrong N is refused."""
    state = _method().state_dict()
    unsized = _method(DataInfo("toy", 2, SIDE, 3, (0.5,) * 3, (0.5,) * 3))
    assert unsized.memory_bank.size == 0
    unsized.load_state_dict(state)
    assert torch.equal(unsized.memory_bank.bank, state["memory_bank.bank"])
    other = _method(DataInfo("toy", 2, SIDE, 3, (0.5,) * 3, (0.5,) * 3, num_samples=30))
    with pytest.raises(BadInput, match="memory bank"):
        other.load_state_dict(state)


def test_embed_and_encoder():
    """embed() = normalize(head(backbone(x))), unit rows of size dim; encoder() = backbone."""
    method = _method().eval()
    images = _batch().views[0]
    with torch.no_grad():
        embedding = method.embed(images)
        expected = F.normalize(method.online.head(method.online.backbone(images)), dim=1)
    assert embedding.shape == (BATCH, 8)
    torch.testing.assert_close(embedding, expected)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(BATCH))
    assert method.encoder() is method.online.backbone is method.backbone
