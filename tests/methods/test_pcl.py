"""PCL on tiny tensors: warm-up = MoCo, ProtoNCE by hand, the InfoNCE special case, sampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sslkit.data.base import DataInfo
from sslkit.distributed import DistEnv
from sslkit.errors import BadInput
from sslkit.methods.base import Batch, EpochContext, StepContext
from sslkit.methods.moco import MoCo
from sslkit.methods.pcl import PCL, batch_columns_loss, sample_negative_prototypes
from sslkit.methods.prototypical import Prototypes
from sslkit.models.backbones import build_backbone
from sslkit.nn.losses import info_nce
from tests.conftest import step_context

BATCH = 4
SIDE = 16
NUM_SAMPLES = 24
T = 0.2
INFO = DataInfo("toy", num_classes=2, image_size=SIDE, channels=3, mean=(0.5,) * 3,
                std=(0.5,) * 3, num_samples=NUM_SAMPLES)  # fmt: skip
INDICES = torch.tensor([3, 7, 11, 19])

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(cls=PCL, **overrides):
    values = {"dim": 8, "queue_size": 16, "momentum": 0.9, "temperature": T}
    if cls is PCL:
        values |= {"num_clusters": [8, 12], "num_negative_prototypes": 3, "warmup_epochs": 0}
    return cls.Config(**(values | overrides))


def _method(**overrides) -> PCL:
    torch.manual_seed(0)
    return PCL(_config(**overrides), build_backbone("resnet18"), INFO).train()


def _ctx(seed: int = 0) -> StepContext:
    return step_context(seed)


def _batch() -> Batch:
    gen = torch.Generator().manual_seed(1)
    return Batch(views=[torch.randn(BATCH, 3, SIDE, SIDE, generator=gen) for _ in range(2)],
                 indices=INDICES.clone())  # fmt: skip


def _clustering(sizes, seed: int = 0) -> list[Prototypes]:
    gen = torch.Generator().manual_seed(seed)
    return [Prototypes(F.normalize(torch.randn(k, 8, generator=gen), dim=1),
                       T * (torch.rand(k, generator=gen) + 0.5),
                       torch.randint(0, k, (NUM_SAMPLES,), generator=gen))
            for k in sizes]  # fmt: skip


def test_warmup_loss_equals_moco():
    """Before the first clustering PCL is MoCo: same loss and queue for the same seeds."""
    pcl = _method()
    torch.manual_seed(0)
    moco = MoCo(_config(MoCo), build_backbone("resnet18"), INFO).train()
    out = pcl.training_step(_batch(), _ctx())
    reference = moco.training_step(_batch(), _ctx())
    assert set(out) == {"loss", "loss/instance"}
    assert out["loss"].item() == pytest.approx(reference["loss"].item(), rel=1e-6)
    assert torch.allclose(pcl.queue.buffer, moco.queue.buffer, atol=1e-6)


def test_batch_columns_loss_by_hand():
    """b = 2 (both on prototype 0), one negative (2): row i's target is column i."""
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    centroids = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, -1.0]])
    density = torch.tensor([0.5, 1.0, 0.25])
    positives, negatives = torch.tensor([0, 0]), torch.tensor([2])
    # columns [c0, c0, c2]: row 0 logits [1/.5, 1/.5, 0/.25]; row 1 [0, 0, -1/.25]
    row0 = torch.logsumexp(torch.tensor([2.0, 2.0, 0.0]), 0) - 2.0
    row1 = torch.logsumexp(torch.tensor([0.0, 0.0, -4.0]), 0) - 0.0
    loss = batch_columns_loss(query, centroids, density, positives, negatives)
    assert loss.item() == pytest.approx(((row0 + row1) / 2).item(), rel=1e-6)


def test_keys_as_prototypes_at_constant_phi_give_infonce():
    """phi = T and prototypes = [batch keys, queue], all queue ids negatives ->
    the prototype term equals the instance InfoNCE."""
    method = _method(proto_layout="own_positive", num_clusters=[BATCH + 16],
                     num_negative_prototypes=16)
    gen = torch.Generator().manual_seed(4)
    query = F.normalize(torch.randn(BATCH, 8, generator=gen), dim=1)
    key = F.normalize(torch.randn(BATCH, 8, generator=gen), dim=1)
    queue = F.normalize(torch.randn(16, 8, generator=gen), dim=1)
    assignments = torch.zeros(NUM_SAMPLES, dtype=torch.long)
    assignments[INDICES] = torch.arange(BATCH)
    level = Prototypes(torch.cat([key, queue]), torch.full((BATCH + 16,), T), assignments)
    term = method.prototype_term(query, level, INDICES, torch.Generator().manual_seed(0))
    assert term.item() == pytest.approx(info_nce(query, key, queue, T).item(), rel=1e-5)


def test_negative_sampling_is_distinct_outside_the_batch_and_seeded():
    positives = torch.tensor([0, 0, 5, 9])
    draws = [sample_negative_prototypes(positives, 12, 6, torch.Generator().manual_seed(s))
             for s in (1, 1, 2)]  # fmt: skip
    for ids in draws:
        assert len(ids) == 6 and len(set(ids.tolist())) == 6
        assert not set(ids.tolist()) & {0, 5, 9} and max(ids.tolist()) < 12
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    # the highest id is a candidate too (the authors' 2020 off-by-one dropped it)
    seen = set()
    for seed in range(50):
        seen |= set(sample_negative_prototypes(positives, 12, 6,
                                               torch.Generator().manual_seed(seed)).tolist())
    assert seen == set(range(12)) - {0, 5, 9}
    with pytest.raises(BadInput, match="num_negative_prototypes"):
        sample_negative_prototypes(positives, 12, 10, None)


def test_clustered_step_is_instance_plus_mean_prototype_terms():
    """L = InfoNCE + (1/M) sum_m L_proto,m with the step generator's draws, in order."""
    method = _method()
    method.set_clustering(_clustering([8, 12]))
    queue = method.queue.keys.clone()
    batch = _batch()
    out = method.training_step(batch, _ctx(seed=6))
    with torch.no_grad():
        query = F.normalize(method.online(batch.views[0]), dim=1)
        key = F.normalize(method.target(batch.views[1]), dim=1)
        gen = torch.Generator().manual_seed(6)
        terms = []
        for level in method.prototypes:
            positives = level.assignments[INDICES]
            negatives = sample_negative_prototypes(positives, len(level.centroids), 3, gen)
            columns = torch.cat([positives, negatives])
            logits = query @ level.centroids[columns].t() / level.density[columns]
            terms.append(F.cross_entropy(logits, torch.arange(BATCH)))
        prototype = torch.stack(terms).mean()
        instance = info_nce(query, key, queue, T)
    assert out["loss/instance"].item() == pytest.approx(instance.item(), rel=1e-5)
    assert out["loss/prototype"].item() == pytest.approx(prototype.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx((instance + prototype).item(), rel=1e-5)


def test_on_epoch_start_clusters_every_k_after_warmup():
    method = _method(warmup_epochs=1, kmeans_nredo=1)
    features = torch.randn(NUM_SAMPLES, 8, generator=torch.Generator().manual_seed(8))

    def epoch(index):
        return EpochContext(epoch=index, epochs=3, dist=DistEnv(0, 1, 0, torch.device("cpu")),
                            generator=torch.Generator(),
                            extract_features=lambda module: features)  # fmt: skip

    method.on_epoch_start(epoch(0))
    assert method.prototypes is None
    method.on_epoch_start(epoch(1))
    assert [len(level.centroids) for level in method.prototypes] == [8, 12]
    for level in method.prototypes:
        assert torch.allclose(level.centroids.norm(dim=1), torch.ones(len(level.centroids)))
        assert level.density.double().mean().item() == pytest.approx(T, rel=1e-6)
        assert level.assignments.min() >= 0 and level.assignments.max() < len(level.centroids)
        assert level.parents is None
    placeholders = method.broadcast_clustering(None, NUM_SAMPLES, torch.device("cpu"))
    for level, empty in zip(method.prototypes, placeholders, strict=True):
        assert empty.parents is None
        for name in ("centroids", "density", "assignments"):
            ours, theirs = getattr(level, name), getattr(empty, name)
            assert (ours.shape, ours.dtype) == (theirs.shape, theirs.dtype), name


def test_extra_state_round_trip(tmp_path):
    method = _method()
    method.set_clustering(_clustering([8, 12]))
    torch.save(method.state_dict(), tmp_path / "state.pt")
    restored = _method()
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    for ours, theirs in zip(method.prototypes, restored.prototypes, strict=True):
        assert torch.equal(ours.centroids, theirs.centroids)
        assert torch.equal(ours.assignments, theirs.assignments)
    a = method.training_step(_batch(), _ctx(seed=2))["loss"]
    b = restored.training_step(_batch(), _ctx(seed=2))["loss"]
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


@pytest.mark.parametrize("overrides", [
    {"num_clusters": []},
    {"num_clusters": [1, 8]},
    {"num_clusters": [NUM_SAMPLES + 1]},
    {"num_negative_prototypes": 8},  # not below the smallest k
    {"num_negative_prototypes": 0},
    {"proto_layout": "rows"},
    {"symmetric": True},
])  # fmt: skip
def test_bad_config_is_bad_input(overrides):
    with pytest.raises(BadInput, match="pcl"):
        PCL(_config(**overrides), build_backbone("resnet18"), INFO)
