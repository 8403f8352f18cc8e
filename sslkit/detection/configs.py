"""detectron2 configs: the shipped bases (``configs/detectron2/``), overrides, the written YAML.

Everything here is plain dicts and pyyaml, so a config can be generated (``--dry-run``)
where detectron2 is not installed. ``_BASE_`` chains are resolved and the result is
written whole, so the file in the workdir is the one detectron2 reads.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

from sslkit.errors import BadInput

#: Shipped config name -> (file in configs/detectron2/, task).
SHIPPED: dict[str, tuple[str, str]] = {
    "voc0712-24k": ("voc0712_R50-C4_24k.yaml", "voc"),
    "voc07-9k": ("voc07_R50-C4_9k.yaml", "voc"),
    "voc0712-fpn-frozen": ("voc0712_R50-FPN_frozen.yaml", "voc"),
    "coco-2x": ("coco_R50-C4_2x.yaml", "coco"),
    "coco-1x": ("coco_R50-C4_1x.yaml", "coco"),
}
DEFAULT_CONFIG = {"voc": "voc0712-24k", "coco": "coco-2x"}
SYNC_NORMS = ("SyncBN", "naiveSyncBN", "nnSyncBN")
#: Config keys holding a norm name that a single process must not synchronise.
NORM_KEYS = ("MODEL.RESNETS.NORM", "MODEL.FPN.NORM", "MODEL.ROI_BOX_HEAD.NORM",
             "MODEL.ROI_MASK_HEAD.NORM")  # fmt: skip
DETECTRON2_WARMUP_ITERS = 1000  # detectron2's default SOLVER.WARMUP_ITERS


def configs_dir() -> Path:
    """The folder of the shipped detectron2 configs (``detectron2/`` of the recipes folder:
    the repository's ``configs/detectron2/``, ``sslkit/configs/detectron2/`` when installed)."""
    from sslkit.config import recipes_dir

    return recipes_dir() / "detectron2"


def config_path(name: str) -> Path:
    """A shipped config's file, or ``name`` itself when it is a YAML file."""
    if name in SHIPPED:
        return configs_dir() / SHIPPED[name][0]
    path = Path(name).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    raise BadInput(f"unknown detectron2 config '{name}': use one of {', '.join(SHIPPED)} "
                   "or the path of a YAML file")  # fmt: skip


def load_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config with its ``_BASE_`` chain resolved (bases relative to the file)."""
    path = Path(path).resolve()
    if path in _seen:
        raise BadInput(f"{path} is its own _BASE_: remove the loop")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BadInput(f"cannot read detectron2 config {path}: {str(exc).splitlines()[0]}") \
            from exc  # fmt: skip
    if not isinstance(data, dict):
        raise BadInput(f"{path} is not a detectron2 config (not a mapping)")
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    from sslkit.config import deep_merge

    return deep_merge(load_config(path.parent / base, (*_seen, path)), data)


def get_key(cfg: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """``cfg["A"]["B"]`` for ``"A.B"`` (``default`` when a level is missing)."""
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_key(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``"A.B"`` in a nested dict, creating the levels (upper-case keys, as detectron2)."""
    parts = dotted.split(".")
    if not all(part and part.replace("_", "").isalnum() for part in parts):
        raise BadInput(f"'{dotted}' is not a config key: use dotted names like SOLVER.BASE_LR")
    node = cfg
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise BadInput(f"{dotted}: {part} holds a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_value(text: str) -> Any:
    """An ``--opts`` value as detectron2 (yacs) reads it: a Python literal, else the string."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return list(value) if isinstance(value, tuple) else value


def scale_schedule(cfg: dict[str, Any], iters: int) -> None:
    """Shorten or lengthen the schedule to ``iters``: lr steps keep their relative place,
    warm-up is capped at ``iters``."""
    old = int(get_key(cfg, "SOLVER.MAX_ITER", iters))
    steps = [max(1, round(step * iters / old)) for step in get_key(cfg, "SOLVER.STEPS", [])]
    set_key(cfg, "SOLVER.MAX_ITER", iters)
    set_key(cfg, "SOLVER.STEPS", [step for step in steps if step < iters])
    warmup = int(get_key(cfg, "SOLVER.WARMUP_ITERS", DETECTRON2_WARMUP_ITERS))
    set_key(cfg, "SOLVER.WARMUP_ITERS", min(warmup, iters))


def use_plain_bn(cfg: dict[str, Any]) -> list[str]:
    """Replace synchronised norms by BN (one process has no group to sync); the keys changed."""
    changed = []
    for key in NORM_KEYS:
        if get_key(cfg, key) in SYNC_NORMS:
            set_key(cfg, key, "BN")
            changed.append(key)
    return changed


def set_depth(cfg: dict[str, Any], depth: int) -> None:
    """Make the config's ResNet the exported one (R18/34: basic blocks, 64 channels in res2)."""
    set_key(cfg, "MODEL.RESNETS.DEPTH", depth)
    if depth >= 50:
        return
    if get_key(cfg, "MODEL.ROI_HEADS.NAME", "").startswith("Res5ROIHeads"):
        raise BadInput(f"a ResNet-{depth} cannot fill the R50-C4 model (its res5 ROI head "
                       "uses bottleneck blocks): use a ResNet-50 checkpoint or "
                       "--config voc0712-fpn-frozen")  # fmt: skip
    set_key(cfg, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64)


def config_task(cfg: dict[str, Any]) -> str | None:
    """``voc`` or ``coco`` from the config's dataset names (None when neither)."""
    names = list(get_key(cfg, "DATASETS.TRAIN", [])) + list(get_key(cfg, "DATASETS.TEST", []))
    kinds = {"voc" if n.startswith("voc_") else "coco" if n.startswith("coco_") else None
             for n in names}  # fmt: skip
    return kinds.pop() if len(kinds) == 1 else None


def build_config(task: str, config: str, *, weights: str | Path, output_dir: str | Path,
                 depth: int, num_gpus: int, seed: int, norm: str | None = None,
                 iters: int | None = None, opts: tuple[tuple[str, str], ...] = ()
                 ) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """The full config of one ``sslkit detect`` run and the notes to show the user.

    Order: shipped/base file < sslkit's values (weights, output, seed, device, depth, norm,
    ``iters``) < ``opts``; last, a single process (``num_gpus`` <= 1) gets plain BN.
    """
    cfg = load_config(config_path(config))
    found = config_task(cfg)
    if found is not None and found != task:
        raise BadInput(f"config '{config}' trains on {found} datasets, not {task}: pass "
                       f"--task {found} or a {task} config")  # fmt: skip
    notes: list[str] = []
    set_key(cfg, "MODEL.WEIGHTS", str(Path(weights).resolve()))
    set_key(cfg, "OUTPUT_DIR", str(Path(output_dir).resolve()))
    set_key(cfg, "SEED", seed)
    set_key(cfg, "MODEL.DEVICE", "cuda" if num_gpus >= 1 else "cpu")
    set_depth(cfg, depth)
    if norm is not None:
        set_key(cfg, "MODEL.RESNETS.NORM", norm)
    if iters is not None:
        scale_schedule(cfg, iters)
    for key, value in opts:
        set_key(cfg, key, parse_value(value))
    if num_gpus <= 1:
        changed = use_plain_bn(cfg)
        if changed:
            where = "the CPU" if num_gpus < 1 else "one GPU"
            notes.append(f"one process on {where}: {', '.join(changed)} set to BN (synchronised "
                         "BN needs a process group; on one process it is plain BN)")  # fmt: skip
    return cfg, notes


def comment_text(line: str) -> str:
    """``line`` with every non-printable character escaped (``\\n``, ``\\x1b``, ...)."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in line)  # fmt: skip


def write_config(cfg: dict[str, Any], path: str | Path, header: list[str]) -> Path:
    """Write the config YAML atomically, ``header`` lines as comments on top.

    Header lines name user-given paths: a newline or other control character in one is
    written escaped (``\\n``), so it cannot end the comment and add YAML that detectron2
    would read.
    """
    from sslkit.utils.atomic import atomic_path

    text = "".join(f"# {comment_text(line)}\n" for line in header)
    text += yaml.safe_dump(cfg, sort_keys=True, default_flow_style=None, width=100)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
