"""HCSC on a tiny batch: warm-up = MoCo, selective losses computed by hand, cache, state, config."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sslkit.data.base import DataInfo
from sslkit.distributed import DistEnv
from sslkit.errors import BadInput
from sslkit.methods.base import Batch, EpochContext, StepContext
from sslkit.methods.hcsc import HCSC, PAPER_LOCAL_CROPS, Prototypes, _with_parent_tables
from sslkit.methods.moco import MoCo
from sslkit.models.backbones import build_backbone
from sslkit.nn.losses import info_nce
from sslkit.nn.prototypes import (
    KEEP_SCALE,
    bernoulli_mask,
    instance_keep_probability,
    instance_keep_thresholds,
    log_normalizer,
)
from tests.conftest import step_context

BATCH = 4
SIDE = 16
NUM_SAMPLES = 24
T = 0.2
INFO = DataInfo("toy", num_classes=2, image_size=SIDE, channels=3, mean=(0.5,) * 3,
                std=(0.5,) * 3, num_samples=NUM_SAMPLES)  # fmt: skip
INDICES = torch.tensor([10, 11, 12, 13])
LOCAL_SIDES = (14, 11, 9, 8)  # HCSC's 192/160/128/96 of 224, scaled to 16 px (at least 8)


pytestmark = pytest.mark.usefixtures("one_thread")


def _config(cls=HCSC, **overrides):
    values = {"dim": 8, "queue_size": 16, "momentum": 0.9, "temperature": T}
    if cls is HCSC:
        values |= {"num_clusters": [6, 4, 2], "warmup_epochs": 0}
    return cls.Config(**(values | overrides))


def _method(**overrides) -> HCSC:
    torch.manual_seed(0)
    return HCSC(_config(**overrides), build_backbone("resnet18"), INFO).train()


def _ctx(seed: int = 0) -> StepContext:
    return step_context(seed)


def _batch(multi_crop: bool = False) -> Batch:
    gen = torch.Generator().manual_seed(1)
    sides = (SIDE, SIDE, *LOCAL_SIDES) if multi_crop else (SIDE, SIDE)
    return Batch(views=[torch.randn(BATCH, 3, s, s, generator=gen) for s in sides],
                 indices=INDICES.clone())  # fmt: skip


def _prototypes(sizes, seed: int = 0) -> list[Prototypes]:
    """A random but consistent clustering: unit centroids, mean-T phi, parent-derived labels."""
    gen = torch.Generator().manual_seed(seed)
    levels, assignments = [], torch.randint(0, sizes[0], (NUM_SAMPLES,), generator=gen)
    for depth, k in enumerate(sizes):
        centroids = F.normalize(torch.randn(k, 8, generator=gen), dim=1)
        phi = torch.rand(k, generator=gen) + 0.5
        parents = None
        if depth + 1 < len(sizes):
            parents = torch.randint(0, sizes[depth + 1], (k,), generator=gen)
        levels.append(Prototypes(centroids, T * phi / phi.mean(), assignments, parents, None))
        if parents is not None:
            assignments = parents[assignments]
    return _with_parent_tables(levels)


def _clustered(**overrides) -> HCSC:
    """A method whose clustering was set by hand (as ``on_epoch_start`` would)."""
    method = _method(**overrides)
    method.prototypes = _prototypes(list(method.config.num_clusters))
    method._refresh_selection_cache()
    return method


@torch.no_grad()
def _embeddings(method: HCSC, batch: Batch):
    """q, k and local queries as the step saw them (online unchanged, target already updated)."""
    query = F.normalize(method.online(batch.views[0]), dim=1)
    key = F.normalize(method.target(batch.views[1]), dim=1)
    local = [F.normalize(method.online(view), dim=1) for view in batch.views[2:]]
    return query, key, local


def _masked(similarities, mask, mode):
    if mask is None:
        return similarities
    if mode == "zero_logit":
        return similarities * mask
    return torch.where(mask == 0, torch.full_like(similarities, float("-inf")), similarities)


def _ce_first(logits):
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def _reference_terms(method: HCSC, query, key, local, queue, generator):
    """HCSC's selections from direct softmaxes, drawing the masks in the code's order."""
    config, levels = method.config, method.prototypes
    mode = config.mask_mode

    def instance(u, mask):
        logits = torch.cat([(u * key).sum(1, keepdim=True), _masked(u @ queue.t(), mask, mode)], 1)
        return _ce_first(logits / T)

    def proto(u, depth, positives):
        level = levels[depth]
        batch_positives = set(positives.tolist())
        negatives = torch.tensor([c for c in range(len(level.centroids))
                                  if c not in batch_positives])  # fmt: skip
        mask = None
        if config.proto_selection and depth + 1 < len(levels):
            upper = levels[depth + 1]
            soft = torch.softmax(level.centroids @ upper.centroids.t() / upper.density, dim=1)
            keep = 1 - soft[negatives][:, level.parents[positives]].t()
            mask = bernoulli_mask(keep.clamp(1e-4, 0.999), generator)
        phi = level.density
        positive = (u * level.centroids[positives]).sum(1, keepdim=True) / phi[positives, None]
        negative = _masked(u @ level.centroids[negatives].t(), mask, mode) / phi[negatives]
        return _ce_first(torch.cat([positive, negative], dim=1))

    masks = [None] * len(levels)
    if config.instance_selection:  # the code draws every level's instance mask at once
        keeps = []
        for level in levels:
            soft = torch.softmax(queue @ level.centroids.t() / level.density.clamp_min(1e-3), 1)
            keeps.append((1 - soft[:, level.assignments[INDICES]].t()).clamp(0, 0.999))
        masks = bernoulli_mask(torch.stack(keeps), generator).unbind(0)
    inst, local_inst, prot, local_prot = [], [], [], []
    for depth, level in enumerate(levels):
        positives = level.assignments[INDICES]
        mask = masks[depth]
        inst.append(instance(query, mask))
        local_inst += [instance(u, mask if config.selection_on_local else None) for u in local]
        prot.append(proto(query, depth, positives))
        local_prot += [proto(u, depth, positives) for u in local]
    scale = 1.0 if config.instance_level_reduction == "sum" else 1 / len(levels)
    terms = {"instance": scale * sum(inst), "prototype": sum(prot) / len(levels)}
    if local:
        terms |= {"local_instance": scale * sum(local_inst),
                  "local_prototype": sum(local_prot) / len(levels)}  # fmt: skip
    return terms


# -- warm-up -------------------------------------------------------------------------------
def test_warmup_loss_equals_moco():
    """Before any clustering the loss, keys and queue equal MoCo's for the same seeds."""
    hcsc = _method()
    torch.manual_seed(0)
    moco = MoCo(_config(MoCo), build_backbone("resnet18"), INFO).train()
    out = hcsc.training_step(_batch(), _ctx())
    reference = moco.training_step(_batch(), _ctx())
    assert hcsc.prototypes is None
    assert set(out) == {"loss", "loss/instance"}
    assert out["loss"].item() == pytest.approx(reference["loss"].item(), rel=1e-6)
    assert torch.allclose(hcsc.queue.buffer, moco.queue.buffer, atol=1e-6)
    assert torch.equal(hcsc.queue_log_norm, torch.zeros(3, 16))  # nothing cached yet


def test_warmup_multi_crop_adds_local_infonce():
    """Warm-up multi-crop: loss = InfoNCE(q, k) + Σ_v InfoNCE(u_v, k) over four local views."""
    method = _method(multi_crop=True)
    queue = method.queue.keys.clone()
    batch = _batch(multi_crop=True)
    out = method.training_step(batch, _ctx())
    query, key, local = _embeddings(method, batch)
    assert len(local) == 4
    expected = info_nce(query, key, queue, T) + sum(info_nce(u, key, queue, T) for u in local)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(out) == {"loss", "loss/instance", "loss/local_instance"}


# -- after clustering ----------------------------------------------------------------------
def test_single_level_without_selection_is_infonce_plus_pcl_term():
    """L = 1, no selection: loss = InfoNCE + [own positive | all non-batch-positive] / own φ."""
    method = _clustered(num_clusters=[6], instance_selection=False, proto_selection=False)
    level = method.prototypes[0]
    queue = method.queue.keys.clone()
    out = method.training_step(_batch(), _ctx())
    query, key, _ = _embeddings(method, _batch())
    instance = info_nce(query, key, queue, T)
    positives = level.assignments[INDICES].tolist()
    rows = []
    for i, pos in enumerate(positives):
        columns = [pos] + [c for c in range(6) if c not in positives]
        logits = torch.stack([query[i] @ level.centroids[c] / level.density[c] for c in columns])
        rows.append(torch.logsumexp(logits, 0) - logits[0])
    prototype = torch.stack(rows).mean()
    assert out["loss/instance"].item() == pytest.approx(instance.item(), rel=1e-5)
    assert out["loss/prototype"].item() == pytest.approx(prototype.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx((instance + prototype).item(), rel=1e-5)


@pytest.mark.parametrize("overrides", [
    {},
    {"selection_table_mb": 0},  # per-step products instead of the cached tables
    {"mask_mode": "exclude"},
    {"instance_level_reduction": "mean"},
    {"multi_crop": True},
    {"multi_crop": True, "selection_on_local": False, "mask_mode": "exclude"},
])  # fmt: skip
def test_selective_loss_matches_spec_reference(overrides):
    """Three levels with both selections: every term equals the direct formula, same draws."""
    method = _clustered(**overrides)
    queue = method.queue.keys.clone()
    batch = _batch(multi_crop=method.config.multi_crop)
    out = method.training_step(batch, _ctx(seed=3))
    query, key, local = _embeddings(method, batch)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        expected = _reference_terms(method, query, key, local, queue, generator)
    assert set(out) == {"loss", *(f"loss/{name}" for name in expected)}
    for name, value in expected.items():
        assert out[f"loss/{name}"].item() == pytest.approx(value.item(), rel=1e-5), name
    assert out["loss"].item() == pytest.approx(sum(expected.values()).item(), rel=1e-5)


def test_symmetric_loss_sums_both_directions_and_queues_both_keys():
    """symmetric: every term = spec terms of (q1, k2) + (q2, k1), draws in that order."""
    method = _clustered(symmetric=True)
    queue = method.queue.keys.clone()
    batch = _batch()
    out = method.training_step(batch, _ctx(seed=5))
    query, key, _ = _embeddings(method, batch)
    swapped = Batch(views=batch.views[::-1], indices=batch.indices)
    query_2, key_2, _ = _embeddings(method, swapped)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        first = _reference_terms(method, query, key, [], queue, generator)
        second = _reference_terms(method, query_2, key_2, [], queue, generator)
    for name in ("instance", "prototype"):
        expected = first[name] + second[name]
        assert out[f"loss/{name}"].item() == pytest.approx(expected.item(), rel=1e-5), name
    assert torch.allclose(method.queue.keys[: 2 * BATCH], torch.cat([key, key_2]), atol=1e-6)


@pytest.mark.parametrize("reduction, factor", [("sum", 3), ("mean", 1)])
def test_keep_probability_one_gives_levels_times_infonce(monkeypatch, reduction, factor):
    """All instance masks = 1: the instance term is L x InfoNCE (sum) or InfoNCE (mean)."""
    import sslkit.methods.hcsc as hcsc_module

    def keep_all(_self, queue, _log_norms, positives):
        return torch.full((len(positives), len(positives[0]), len(queue)), float(KEEP_SCALE))

    monkeypatch.setattr(hcsc_module.HCSC, "_instance_thresholds", keep_all)
    method = _clustered(instance_level_reduction=reduction)
    queue = method.queue.keys.clone()
    out = method.training_step(_batch(), _ctx())
    query, key, _ = _embeddings(method, _batch())
    instance = info_nce(query, key, queue, T)
    assert out["loss/instance"].item() == pytest.approx(factor * instance.item(), rel=1e-5)


def test_mean_reduction_divides_instance_terms_by_levels():
    """With the same draws, 'mean' gives 1/L of the summed instance term; prototypes unchanged."""
    summed = _clustered()
    averaged = copy.deepcopy(summed)
    averaged.config.instance_level_reduction = "mean"
    out_sum = summed.training_step(_batch(), _ctx(seed=4))
    out_mean = averaged.training_step(_batch(), _ctx(seed=4))
    assert out_mean["loss/instance"].item() == pytest.approx(out_sum["loss/instance"].item() / 3,
                                                             rel=1e-6)  # fmt: skip
    assert out_mean["loss/prototype"].item() == pytest.approx(out_sum["loss/prototype"].item(),
                                                              rel=1e-6)  # fmt: skip


def test_masks_are_reproducible_with_the_step_generator():
    """Same generator seed: identical losses; another seed: different Bernoulli draws."""
    method = _clustered()
    twin, other = copy.deepcopy(method), copy.deepcopy(method)
    first = method.training_step(_batch(), _ctx(seed=5))["loss"].item()
    assert twin.training_step(_batch(), _ctx(seed=5))["loss"].item() == first
    second = other.training_step(_batch(), _ctx(seed=6))["loss"].item()
    assert second != pytest.approx(first, rel=1e-6)


# -- cache, state, epoch start -------------------------------------------------------------
def _assert_cache_fresh(method: HCSC) -> None:
    for depth, level in enumerate(method.prototypes):
        expected = log_normalizer(method.queue.keys, level.centroids, level.density)
        assert torch.allclose(method.queue_log_norm[depth], expected, atol=1e-5), depth


def test_queue_log_normalizer_cache_follows_enqueue():
    """After refresh, pushes that wrap or exceed the queue, and a step, the cache is exact."""
    method = _clustered()
    _assert_cache_fresh(method)
    gen = torch.Generator().manual_seed(7)
    for count in (4, 5, 9, 20, 3):  # 4+5+9 wraps past 16; 20 > queue size
        keys = F.normalize(torch.randn(count, 8, generator=gen), dim=1)
        method._enqueue(keys, torch.arange(count))
        _assert_cache_fresh(method)
    method.training_step(_batch(), _ctx())
    _assert_cache_fresh(method)


def test_on_epoch_start_clusters_after_warmup():
    """Warm-up epochs skip clustering; then the target's features give consistent levels."""
    method = _method(warmup_epochs=1, kmeans_nredo=1)
    gen = torch.Generator().manual_seed(8)
    features = torch.randn(NUM_SAMPLES, 8, generator=gen) * 3
    seen = []

    def extract(module):
        seen.append(module)
        return features

    def epoch(index):
        return EpochContext(epoch=index, epochs=3, dist=DistEnv(0, 1, 0, torch.device("cpu")),
                            generator=torch.Generator(), extract_features=extract)  # fmt: skip

    method.on_epoch_start(epoch(0))
    assert method.prototypes is None and not seen
    method.on_epoch_start(epoch(1))
    assert seen == [method.target]
    levels = method.prototypes
    assert [len(level.centroids) for level in levels] == [6, 4, 2]
    for lower, upper in zip(levels, levels[1:], strict=False):
        assert torch.equal(upper.assignments, lower.parents[lower.assignments])
        soft = torch.softmax(lower.centroids @ upper.centroids.t() / upper.density, dim=1)
        assert torch.allclose(lower.parent_keep, 1 - soft, atol=1e-6)
    for level in levels:
        assert torch.allclose(level.centroids.norm(dim=1), torch.ones(len(level.centroids)))
        assert level.density.double().mean().item() == pytest.approx(T, rel=1e-6)
    assert levels[-1].parents is None and levels[-1].parent_keep is None
    _assert_cache_fresh(method)
    # other ranks receive the broadcast into placeholders of the same shapes and dtypes
    placeholders = method.broadcast_clustering(None, NUM_SAMPLES, torch.device("cpu"))
    for level, empty in zip(levels, placeholders, strict=True):
        for name in ("centroids", "density", "assignments", "parents"):
            ours, theirs = getattr(level, name), getattr(empty, name)
            if ours is None:
                assert theirs is None, name
            else:
                assert (ours.shape, ours.dtype) == (theirs.shape, theirs.dtype), name


def test_moving_the_module_keeps_the_clustering():
    """``.to(device)`` carries the prototypes along and rebuilds the parent tables."""
    method = _clustered()
    before = copy.deepcopy(method.prototypes)
    method.to(torch.device("cpu"))
    for ours, theirs in zip(before, method.prototypes, strict=True):
        assert torch.equal(ours.centroids, theirs.centroids)
        assert torch.equal(ours.assignments, theirs.assignments)
        assert (ours.parent_keep is None) == (theirs.parent_keep is None)
        if ours.parent_keep is not None:
            assert torch.allclose(ours.parent_keep, theirs.parent_keep)


def test_extra_state_round_trip(tmp_path):
    """The clustering survives torch.save / torch.load(weights_only=True) and gives equal steps."""
    method = _clustered()
    torch.save(method.state_dict(), tmp_path / "state.pt")
    restored = _method()
    assert restored.prototypes is None
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    for ours, theirs in zip(method.prototypes, restored.prototypes, strict=True):
        for name in ("centroids", "density", "assignments", "parents", "parent_keep"):
            a, b = getattr(ours, name), getattr(theirs, name)
            assert (a is None and b is None) or torch.equal(a, b), name
    assert torch.equal(restored.queue_log_norm, method.queue_log_norm)
    a = method.training_step(_batch(), _ctx(seed=2))["loss"]
    b = restored.training_step(_batch(), _ctx(seed=2))["loss"]
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    # and an unclustered state clears a clustering
    restored.load_state_dict(_method().state_dict())
    assert restored.prototypes is None


@pytest.mark.parametrize("overrides", [
    {"num_clusters": [2, 4]},  # growing
    {"num_clusters": []},
    {"num_clusters": [6, 1]},
    {"mask_mode": "drop"},
    {"instance_level_reduction": "max"},
    {"symmetric": True, "multi_crop": True},
    {"num_clusters": [NUM_SAMPLES + 1, 4]},  # k_0 > N
])  # fmt: skip
def test_bad_config_is_bad_input(overrides):
    """Settings HCSC cannot run with are refused at construction."""
    with pytest.raises(BadInput, match="hcsc"):
        HCSC(_config(**overrides), build_backbone("resnet18"), INFO)


def test_views_single_and_multi_crop():
    """Two equal global views, or six with four smaller local crops at HCSC's scale ranges."""
    augment = copy.deepcopy(HCSC.default_augment)
    single = _method().views(augment)
    assert len(single.crops) == 2 and all(c.size == SIDE for c in single.crops)
    spec = _method(multi_crop=True).views(augment)
    sizes = [crop.size for crop in spec.crops]
    assert len(spec.crops) == len(spec.photometric) == 6
    assert sizes[:2] == [SIDE, SIDE] and sizes[2:] == list(LOCAL_SIDES)
    assert all(tuple(c.scale) == tuple(augment["crop_scale"]) for c in spec.crops[:2])
    assert [tuple(c.scale) for c in spec.crops[2:]] == [tuple(s) for _, s in PAPER_LOCAL_CROPS]


def test_gradient_reaches_only_the_online_encoder():
    """Backward after a selective step: online gets gradients; target, queue, clustering none."""
    method = _clustered(multi_crop=True)
    out = method.training_step(_batch(multi_crop=True), _ctx())
    out["loss"].backward()
    assert method.online.backbone.conv1.weight.grad is not None
    assert method.online.head[-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in method.target.parameters())
    assert not method.queue.buffer.requires_grad and method.queue.buffer.grad is None
    for level in method.prototypes:
        assert not level.centroids.requires_grad and level.centroids.grad is None
    assert all(value.grad_fn is None for name, value in out.items() if name != "loss")


# -- the cached instance-selection tables ---------------------------------------------------
def test_keep_tables_equal_the_direct_keep_probabilities():
    """Each table row is 32768 x (1 - softmax assignment), clamped and rounded."""
    method = _clustered()
    queue = method.queue.keys.clone()
    for level in method.prototypes:
        table = instance_keep_thresholds(queue, level.centroids, level.density)
        every = torch.arange(len(level.centroids))
        direct = instance_keep_probability(queue, log_normalizer(queue, level.centroids,
                                                                 level.density),
                                           level.centroids, level.density, every)  # fmt: skip
        assert table.dtype == torch.int16 and table.shape == (len(level.centroids), len(queue))
        assert (table.float() - (direct * KEEP_SCALE).round()).abs().max() <= 1


def test_table_and_product_paths_give_the_same_thresholds():
    """The cached tables and the per-step product agree (to one unit of 1/32768)."""
    cached, computed = _clustered(), _clustered(selection_table_mb=0)
    assert cached._table_fits() and not computed._table_fits()
    positives = [level.assignments[INDICES] for level in cached.prototypes]
    queue = cached.queue.keys.clone()
    a = cached._instance_thresholds(queue, cached.queue_log_norm, positives)
    b = computed._instance_thresholds(queue, computed.queue_log_norm, positives)
    assert a.shape == b.shape == (len(positives), len(INDICES), len(queue))
    assert (a.float() - b).abs().max() <= 1


def test_tables_follow_the_queue_through_enqueues():
    """After steps that push keys, the incrementally updated tables equal rebuilt ones."""
    method = _clustered()
    for seed in range(3):
        method.training_step(_batch(), _ctx(seed=seed))
    assert method._keep_tables is not None
    for table, level in zip(method._keep_tables, method.prototypes, strict=True):
        fresh = instance_keep_thresholds(method.queue.keys, level.centroids, level.density)
        assert (table.float() - fresh.float()).abs().max() <= 1


def test_tables_are_dropped_when_the_clustering_changes():
    """A new clustering (or a checkpoint load) invalidates the cached tables."""
    method = _clustered()
    method.training_step(_batch(), _ctx())
    assert method._keep_tables is not None
    method._refresh_selection_cache()
    assert method._keep_tables is None
    method.training_step(_batch(), _ctx())
    method.load_state_dict(method.state_dict())
    assert method._keep_tables is None
