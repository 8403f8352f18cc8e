"""Multi-crop: two global crops plus local crops, and which crop is pulled to which.

A multi-crop method sees ``[g1, g2, l1, l2, ...]``: two global crops (scale
``augment.crop_scale``, full size) followed by the local crops of ``local_crops``
(``[size fraction, [scale lo, hi]]`` each). Its loss is the mean of a pairwise term over
directed ``(query, target)`` pairs:

* ``local_to_global`` (LoGo's main step): every crop against each *global*
  crop other than itself — ``g1→g2, g2→g1`` and ``l→g1, l→g2`` for every local crop; a
  local crop is never a target. With two crops this is the usual symmetric loss.
* ``all`` (the SwAV-style multi-crop baseline of the LoGo paper, supp. eq. 1): every crop
  against every other crop, locals included.

Built-in hosts: ``moco`` (InfoNCE per pair, keys of the global crops enqueued),
``simsiam`` and ``byol`` (prediction loss per pair).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sslkit.data.base import DataInfo
from sslkit.data.views import ViewSpec, multi_crop_view_spec
from sslkit.errors import BadInput
from sslkit.methods.base import hp

CROP_PAIRINGS = ("local_to_global", "all")
GLOBAL_CROPS = 2
# LoGo's ImageNet-100 local crops: 96 px of a 224 px global crop, scale [0.08, r_l = 0.4]
LOGO_LOCAL_CROPS = [[96 / 224, [0.08, 0.4]], [96 / 224, [0.08, 0.4]]]


@dataclass
class MultiCropConfig:
    """The multi-crop fields every multi-crop host declares (off by default)."""

    multi_crop: bool = hp(False, "two global crops plus method.local_crops")
    local_crops: list = hp(LOGO_LOCAL_CROPS, "[size fraction, [scale lo, hi]] per local crop "
                           "(LoGo: [0.08, r_l])")  # fmt: skip
    crop_pairs: str = hp("local_to_global", "local_to_global (LoGo: locals only as queries) "
                         "or all (SwAV-style: every crop against every other)",
                         choices=("local_to_global", "all"))  # fmt: skip


def check_multi_crop(name: str, config: Any) -> None:
    """Refuse unusable multi-crop settings with the fix in one line."""
    if config.crop_pairs not in CROP_PAIRINGS:
        raise BadInput(f"{name}: method.crop_pairs must be one of {', '.join(CROP_PAIRINGS)}")
    if config.multi_crop:
        for crop in config.local_crops:
            if (not isinstance(crop, list | tuple) or len(crop) != 2
                    or len(crop[1]) != 2 or not 0 < crop[1][0] <= crop[1][1] <= 1):
                raise BadInput(f"{name}: bad local crop {crop!r}: use [size fraction, "
                               "[scale lo, hi]] with 0 < lo <= hi <= 1")  # fmt: skip


def multi_crop_views(augment: dict[str, Any], info: DataInfo, local_crops: list) -> ViewSpec:
    """Two global crops from ``augment`` followed by the local crops."""
    global_crop = (1.0, tuple(augment["crop_scale"]))
    crops = [global_crop] * GLOBAL_CROPS + [(float(f), tuple(s)) for f, s in local_crops]
    return multi_crop_view_spec(augment, info, crops)


def crop_pairs(num_views: int, pairing: str = "local_to_global",
               num_global: int = GLOBAL_CROPS) -> list[tuple[int, int]]:  # fmt: skip
    """Directed ``(query, target)`` view pairs, queries in view order.

    >>> crop_pairs(4)
    [(0, 1), (1, 0), (2, 0), (2, 1), (3, 0), (3, 1)]
    """
    targets = range(num_views) if pairing == "all" else range(min(num_global, num_views))
    return [(query, target) for query in range(num_views) for target in targets
            if query != target]  # fmt: skip


def pair_term_means(pairs: list[tuple[int, int]], values: list, num_global: int = GLOBAL_CROPS
                    ) -> dict[str, Any]:  # fmt: skip
    """Logged means of a pairwise term: over global-global pairs and over the others."""
    globals_ = [v for (q, t), v in zip(pairs, values, strict=True)
                if q < num_global and t < num_global]  # fmt: skip
    others = [v for (q, t), v in zip(pairs, values, strict=True)
              if q >= num_global or t >= num_global]  # fmt: skip
    means = {"global": sum(globals_) / len(globals_)} if globals_ else {}
    if others:
        means["local"] = sum(others) / len(others)
    return means
