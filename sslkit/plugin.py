"""The stable surface for plugin authors: everything a method or an add-on needs.

A third-party method imports from here and nowhere else in sslkit::

    from sslkit.plugin import Batch, Method, StepContext, hp, info_nce, mlp_head

What it holds:

* the contract: :class:`Method` (a method), :class:`AddOn` and :class:`Recorded` (a loss
  term any host takes on), the step and epoch context :class:`Batch`,
  :class:`StepContext`, :class:`EpochContext`, the dataset facts :class:`DataInfo`, and
  :func:`hp` (a ``Config`` field with a default and a one-line help);
* views: :data:`COMMON_AUGMENT` (the shared augmentation defaults), :class:`ViewSpec`,
  :func:`view_spec_from_config`, :func:`multi_crop_view_spec`, and the multi-crop fields
  and pairings (:class:`MultiCropConfig`, :func:`multi_crop_views`, :func:`crop_pairs`,
  :func:`pair_term_means`, :func:`check_multi_crop`);
* distributed helpers, each the identity in a single process (:class:`DistEnv`,
  :func:`all_gather_concat`, :func:`all_gather_variable`, :func:`all_reduce_mean`,
  :func:`all_reduce_gradients`, :func:`broadcast_`, :func:`rank`, :func:`world_size`,
  :func:`shuffle_across_ranks`, :func:`unshuffle_across_ranks`);
* building blocks worth reusing: :func:`info_nce`, the heads (:func:`build_head`,
  :func:`mlp_head`, :func:`projection_head`, :class:`NormLinear`, :class:`NormMLP`,
  :class:`EncoderWithHead`, :data:`HEAD_KINDS`), the momentum encoder
  (:func:`momentum_copy`, :func:`momentum_update`), the key queue :class:`KeyQueue` and the
  memory bank :class:`MemoryBank`;
* :class:`BadInput`, the error for settings a user can fix (one line, exit code 2).

Stability: names exported here keep their meaning and signature within a major version of
sslkit. A minor version may add names and optional arguments; a name is removed or
changed only in a major version, after one minor version in which it still works and
warns. Everything else in sslkit is internal and may change in any version. Check a
method with ``sslkit.testing.check_method`` (or ``sslkit methods --check NAME``).
"""

from __future__ import annotations

from sslkit.data.base import DataInfo
from sslkit.data.views import ViewSpec, multi_crop_view_spec, view_spec_from_config
from sslkit.distributed import (
    DistEnv,
    all_gather_concat,
    all_gather_variable,
    all_reduce_gradients,
    all_reduce_mean,
    broadcast_,
    rank,
    shuffle_across_ranks,
    unshuffle_across_ranks,
    world_size,
)
from sslkit.errors import BadInput
from sslkit.methods.addons import AddOn, Recorded
from sslkit.methods.base import COMMON_AUGMENT, Batch, EpochContext, Method, StepContext, hp
from sslkit.methods.multicrop import (
    MultiCropConfig,
    check_multi_crop,
    crop_pairs,
    multi_crop_views,
    pair_term_means,
)
from sslkit.nn.heads import (
    HEAD_KINDS,
    EncoderWithHead,
    NormLinear,
    NormMLP,
    build_head,
    mlp_head,
    projection_head,
)
from sslkit.nn.losses import info_nce
from sslkit.nn.memory_bank import MemoryBank
from sslkit.nn.momentum import momentum_copy, momentum_update
from sslkit.nn.queue import KeyQueue

__all__ = [
    "COMMON_AUGMENT", "HEAD_KINDS", "AddOn", "BadInput", "Batch", "DataInfo", "DistEnv",
    "EncoderWithHead", "EpochContext", "KeyQueue", "MemoryBank", "Method", "MultiCropConfig",
    "NormLinear", "NormMLP", "Recorded", "StepContext", "ViewSpec", "all_gather_concat",
    "all_gather_variable", "all_reduce_gradients", "all_reduce_mean", "broadcast_",
    "build_head", "check_multi_crop", "crop_pairs", "hp", "info_nce", "mlp_head",
    "momentum_copy", "momentum_update", "multi_crop_view_spec", "multi_crop_views",
    "pair_term_means", "projection_head", "rank", "shuffle_across_ranks",
    "unshuffle_across_ranks", "view_spec_from_config", "world_size",
]  # fmt: skip
