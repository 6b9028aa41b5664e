"""Datasets: UTKFace, AVA, COCO-ReM, a JSONL manifest, packaged ``builtin:`` data and a synthetic generator.

``load_items(spec, split)`` (``loading``) is the entry point. One module per role: ``items``
(what readers return), ``locations`` (a location to a local path), ``images`` (image checks),
``limits`` (the line bound of the JSONL and AVA readers, the pixel bound of every image opened),
one reader per format (``utkface``, ``ava``, ``coco_rem``, ``jsonl``), ``synthetic`` and
``split`` (held-out eval, the train cap). Pure Python + numpy + Pillow; no torch.
"""

from rarl_trainer.data.ava import read_ava
from rarl_trainer.data.coco_rem import read_coco_rem
from rarl_trainer.data.images import PixelBudget, open_image, verify_image
from rarl_trainer.data.items import DataError, Dataset, Item
from rarl_trainer.data.jsonl import read_jsonl
from rarl_trainer.data.loading import load_items
from rarl_trainer.data.locations import resolve_location
from rarl_trainer.data.synthetic import generate_synthetic
from rarl_trainer.data.utkface import read_utkface

__all__ = [
    "DataError",
    "Dataset",
    "Item",
    "PixelBudget",
    "generate_synthetic",
    "load_items",
    "open_image",
    "read_ava",
    "read_coco_rem",
    "read_jsonl",
    "read_utkface",
    "resolve_location",
    "verify_image",
]
