"""Datasets as Ultralytics reads them: which folder, which images per split, which class names.

A `data.yaml` is resolved by Ultralytics' own `check_det_dataset` (keys, `names` as list or dict, `path` absent /
relative / absolute, Roboflow's `../train/images`), with downloads off, so a file that trains in Ultralytics
points edgeq at the same images. A plain folder with `images/` and `labels/` is edgeq's shortcut for data that
has no yaml. Images are listed only for the splits a job uses, the way Ultralytics lists them (recursively in
folders; `.txt` files of image paths where `./` means the list's own folder).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from edgeq.errors import EdgeqError
from edgeq.untrusted.safe_yaml import load_file
from edgeq.untrusted.text import read_text

DATA_FIX = "pass --data with an Ultralytics data.yaml or a folder holding images/ and labels/ (omit --data for the demo)"


class Dataset:
    """Class names and, per split, where its images are; image lists are read on first use."""

    def __init__(self, source: Path, root: Path, names: tuple[str, ...], locations: dict[str, tuple[Path, ...]]):
        self.source = source  # what the user passed
        self.root = root  # the folder the splits were resolved against (Ultralytics' `path`), named in the report
        self.names = names
        self.locations = locations  # split -> folders or .txt lists
        self._listed: dict[str, tuple[Path, ...]] = {}

    def images(self, split: str) -> tuple[Path, ...]:
        if split not in self.locations:
            raise EdgeqError(f"dataset '{self.source}' has no '{split}' split (it has: {', '.join(self.locations)})",
                             f"add '{split}:' to the data.yaml or choose another split in the recipe")
        if split not in self._listed:
            listed = [image for location in self.locations[split]
                      for image in _list_images(location, split, self.source)]
            self._listed[split] = tuple(sorted(set(listed)))
        images = self._listed[split]
        if not images:
            where = ", ".join(str(p) for p in self.locations[split])
            raise EdgeqError(f"split '{split}' of dataset '{self.source}' holds no images ({where})", DATA_FIX)
        return images


def load_dataset(path: Path) -> Dataset:
    path = Path(path)
    if not path.exists():
        raise EdgeqError(f"dataset '{path}' does not exist", DATA_FIX)
    if path.is_dir():
        if (path / "images").is_dir() and (path / "labels").is_dir():
            return _from_folder(path)
        yamls = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        if len(yamls) != 1:
            raise EdgeqError(f"folder '{path}' has no images/ and labels/ sub-folders and "
                             f"{'no' if not yamls else len(yamls)} data yaml files", DATA_FIX)
        path = yamls[0]
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise EdgeqError(f"dataset '{path}' is neither a data.yaml nor a folder", DATA_FIX)
    return _from_yaml(path)


def _from_yaml(path: Path) -> Dataset:
    raw = load_file(path, "dataset file", DATA_FIX)  # Ultralytics' own read below goes through the same loader
    if not isinstance(raw, dict):
        raise EdgeqError(f"dataset file '{path}' does not hold a mapping of keys", DATA_FIX)
    if raw.get("names") is None and "nc" not in raw:
        raise EdgeqError(f"dataset file '{path}' has no 'names:' key", "list the class names under 'names:'")
    data = _ultralytics_resolve(path)
    names = data["names"]  # check_class_names made it {int: str}
    names = tuple(str(names[i]) for i in sorted(names))
    locations = {}
    for split in ("train", "val", "test"):
        entry = data.get(split)
        if entry:
            locations[split] = tuple(Path(p) for p in (entry if isinstance(entry, list) else [entry]))
    return Dataset(source=path, root=Path(data["path"]).resolve(), names=names, locations=locations)


def _ultralytics_resolve(path: Path) -> dict:
    """`check_det_dataset` without its two side effects edgeq must not have: downloads (autodownload off: a
    missing split is an error, never a `download:` script run) and the plot-font check at its end, which asks
    the network for Arial.ttf (edgeq draws no labelled plots)."""
    from edgeq.env import offline_ultralytics

    offline_ultralytics()
    from ultralytics.data import utils as data_utils

    try:
        with _no_font_check(data_utils):
            return data_utils.check_det_dataset(str(path), autodownload=False)
    except (SyntaxError, TypeError, FileNotFoundError, ValueError, KeyError) as exc:
        raise EdgeqError(f"dataset '{path}': {_one_line(str(exc))}", DATA_FIX) from None


@contextlib.contextmanager
def _no_font_check(data_utils):
    original = data_utils.check_font
    data_utils.check_font = lambda *args, **kwargs: None
    try:
        yield
    finally:
        data_utils.check_font = original


def _one_line(message: str) -> str:
    """Ultralytics' messages carry emojis and a second line of advice; keep the first line's words."""
    first = next((line for line in message.splitlines() if line.strip()), message)
    return re.sub(r"[^\x00-\x7f]+", "", first).strip().rstrip(".")


def _from_folder(path: Path) -> Dataset:
    images_dir = path / "images"
    subdirs = sorted(d for d in images_dir.iterdir() if d.is_dir())
    if subdirs:
        locations = {d.name: (d,) for d in subdirs}
    else:  # one flat folder: it serves every split
        locations = {"train": (images_dir,), "val": (images_dir,)}
    names_file = path / "classes.txt"
    names = tuple(read_text(names_file, "class list", DATA_FIX).split()) if names_file.exists() else ()
    return Dataset(source=path, root=path.resolve(), names=names, locations=locations)


def _list_images(location: Path, split: str, source: Path) -> list[Path]:
    """Ultralytics' listing (BaseDataset.get_img_files): folders recursively, `.txt` files line by line with
    `./` meaning the list's folder and other relative lines the working directory; image suffixes only."""
    from ultralytics.data.utils import IMG_FORMATS

    if location.is_dir():
        candidates = [p for p in location.rglob("*.*") if p.is_file()]
    elif location.is_file():
        lines = read_text(location, f"image list of split '{split}'", DATA_FIX, limit=1 << 30).strip().splitlines()
        candidates = [location.parent / line[2:] if line.startswith("./") else Path(line) for line in lines
                      if line.strip()]
    else:
        raise EdgeqError(f"split '{split}' of '{source}' points at '{location}', which does not exist", DATA_FIX)
    return [p.resolve() for p in candidates if p.suffix[1:].lower() in IMG_FORMATS]
