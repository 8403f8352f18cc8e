"""Where detectron2's built-in VOC and COCO dataset names live under ``--data-root``.

detectron2 registers ``voc_2007_trainval``, ``coco_2017_train``, ... under
``$DETECTRON2_DATASETS/VOC2007``, ``.../coco/train2017``. sslkit also accepts the
VOCdevkit layout (``ROOT/VOCdevkit/VOC2007``) and a COCO root given directly, resolves
the folders here (no detectron2 needed) and re-registers the names on them at launch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sslkit.errors import BadInput

#: name -> (VOC folder, split, year)
VOC_SETS = {f"voc_{year}_{split}": (f"VOC{year}", split, year)
            for year in (2007, 2012) for split in ("train", "val", "trainval", "test")
            if (year, split) != (2012, "test")}  # fmt: skip
#: name -> (image folder, annotation file), relative to the COCO root
COCO_SETS = {f"coco_2017_{split}": (f"{split}2017", f"annotations/instances_{split}2017.json")
             for split in ("train", "val")}  # fmt: skip


def _voc(name: str, root: Path, check: bool) -> dict[str, Any]:
    folder, split, year = VOC_SETS[name]
    candidates = [root / folder, root / "VOCdevkit" / folder]
    if root.name == folder:
        candidates.insert(0, root)
    found = [path for path in candidates if (path / "ImageSets/Main" / f"{split}.txt").is_file()]
    if not found and check:
        raise BadInput(f"{name} needs {folder}/ImageSets/Main/{split}.txt under {root} "
                       f"(or {root}/VOCdevkit): pass the folder holding {folder}/")  # fmt: skip
    path = (found or candidates)[0]
    return {"kind": "voc", "dirname": str(path.resolve()), "split": split, "year": year,
            "found": bool(found)}  # fmt: skip


def _coco(name: str, root: Path, check: bool) -> dict[str, Any]:
    images, annotations = COCO_SETS[name]
    candidates = [root / "coco", root]
    found = [path for path in candidates if (path / annotations).is_file()]
    if not found and check:
        raise BadInput(f"{name} needs coco/{annotations} under {root}: pass the folder "
                       "holding coco/ (with train2017/, val2017/, annotations/)")  # fmt: skip
    path = (found or candidates)[0]
    return {"kind": "coco", "image_root": str((path / images).resolve()),
            "json_file": str((path / annotations).resolve()), "found": bool(found)}  # fmt: skip


def resolve_datasets(names: list[str], root: str | Path, check: bool) -> dict[str, dict]:
    """Folder and split of every built-in VOC/COCO name; other names are left out.

    With ``check``, a missing split file or annotation file is bad input; without it (a
    dry run for another machine) detectron2's own layout under ``root`` is assumed and
    ``found`` is False.
    """
    root = Path(root).expanduser()
    if check and not root.is_dir():
        raise BadInput(f"--data-root {root} is not a folder: pass the folder holding "
                       "VOC2007/ (or VOCdevkit/) and coco/")  # fmt: skip
    out: dict[str, dict] = {}
    for name in dict.fromkeys(names):
        if name in VOC_SETS:
            out[name] = _voc(name, root, check)
        elif name in COCO_SETS:
            out[name] = _coco(name, root, check)
    return out


def register_datasets(datasets: dict[str, dict]) -> None:
    """(Re-)register the resolved names in detectron2's catalogs (imports detectron2)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances, register_pascal_voc
    from detectron2.data.datasets.builtin_meta import _get_builtin_metadata

    for name, spec in datasets.items():
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        if spec["kind"] == "voc":
            register_pascal_voc(name, spec["dirname"], spec["split"], spec["year"])
            MetadataCatalog.get(name).evaluator_type = "pascal_voc"
        else:
            register_coco_instances(name, _get_builtin_metadata("coco"), spec["json_file"],
                                    spec["image_root"])  # fmt: skip
