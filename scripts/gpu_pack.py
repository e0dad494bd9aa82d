#!/usr/bin/env python3
"""Build .gpu/ (ignored by git): what a GPU-machine call of scripts/train_models.py carries beside the checkout.

The GPU machine has PyTorch, torchvision, OpenCV, numpy, PyYAML, matplotlib, Pillow, SciPy, psutil and pandas but
not Ultralytics, and reaches no registry; a call carries at most 64 MiB, the whole tracked checkout included
(about 41 MiB, most of it benchmark checkpoints). So .gpu/ holds:

    whl/           the Ultralytics and ultralytics-thop wheels of the versions installed here (pure Python);
                   polars and ultralytics-platform stay behind: train_models.py registers a polars stand-in,
                   and Ultralytics imports ultralytics-platform only when its Platform API is used
    hardhat.tar.gz the hard-hat photos' train and val splits (../shared/datasets/hardhat), images re-encoded
                   (default WebP quality 40: as faithful as JPEG quality 40, PSNR about 35 dB against the
                   originals, at three quarters of its bytes), label files and data.yaml as they are, plus one
                   comment line on top of data.yaml saying so; the test split and Ultralytics' label cache are
                   left out. On the machine: tar -xzf .gpu/hardhat.tar.gz -C /tmp (gives /tmp/hardhat/data.yaml)

It then prints what one call would carry (tracked files, untracked files git does not ignore, .gpu/) and
fails above 64 MiB.

    python scripts/gpu_pack.py [--hardhat ../shared/datasets/hardhat] [--format webp|jpeg] [--quality 40]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK = REPO / ".gpu"
WHEELS = ("ultralytics", "ultralytics-thop")
MIB = 1 << 20
CALL_LIMIT = 64 * MIB  # the device tool's limit on what one call carries
COMFORT = 60 * MIB  # room left for the commits that land before the call
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")  # the machine's CPython 3.12


def download_wheels(dest: Path) -> list[Path]:
    """pip download, without dependencies, the wheels of the versions installed here (what the CPU tests ran)."""
    dest.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(dest), *pins],
                   check=True)
    wanted = {pin.replace("-", "_").replace("==", "-") for pin in pins}  # ultralytics_thop-2.2.3
    stale = [w for w in dest.glob("*.whl") if not any(w.name.startswith(f"{k}-") for k in wanted)]
    for wheel in stale:  # one version of each: pip refuses to install two
        wheel.unlink()
    return sorted(dest.glob("*.whl"))


def _encode(path: Path, fmt: str, quality: int) -> bytes:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    ext, flag = (".webp", cv2.IMWRITE_WEBP_QUALITY) if fmt == "webp" else (".jpg", cv2.IMWRITE_JPEG_QUALITY)
    ok, buf = cv2.imencode(ext, image, [flag, quality])
    if not ok:
        raise SystemExit(f"cannot encode {path} as {fmt}")
    return buf.tobytes()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # same bytes in, same archive out
    tar.addfile(info, io.BytesIO(data))


def pack_hardhat(source: Path, dest: Path, fmt: str, quality: int) -> tuple[int, int]:
    """Write dest (a .tar.gz with hardhat/{data.yaml,images,labels}); returns (images, labels) written."""
    data_yaml = source / "data.yaml"
    if not data_yaml.is_file():
        raise SystemExit(f"no data.yaml in {source}: pass --hardhat the dataset folder")
    ext = ".webp" if fmt == "webp" else ".jpg"
    images = labels = 0
    with tarfile.open(dest, "w:gz", compresslevel=6) as tar:
        note = (f"# Re-encoded for the GPU machine by scripts/gpu_pack.py: {fmt} quality {quality}, train and val "
                f"splits only; label files unchanged.\n")
        _add(tar, "hardhat/data.yaml", note.encode() + data_yaml.read_bytes())
        for split in ("train", "val"):
            for image in sorted((source / "images" / split).iterdir()):
                if image.suffix.lower() not in {".jpg", ".jpeg", ".png"}:
                    continue
                _add(tar, f"hardhat/images/{split}/{image.stem}{ext}", _encode(image, fmt, quality))
                images += 1
            for label in sorted((source / "labels" / split).glob("*.txt")):
                _add(tar, f"hardhat/labels/{split}/{label.name}", label.read_bytes())
                labels += 1
    return images, labels


def travelling_bytes() -> dict[str, int]:
    """Bytes one call carries from this checkout: tracked files, untracked ones git does not ignore, and .gpu/."""

    def listed(*flags: str) -> int:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", *flags], check=True,
                             capture_output=True).stdout
        return sum((REPO / p).stat().st_size for p in out.decode().split("\0") if p and (REPO / p).is_file())

    return {"tracked": listed(), "untracked": listed("-o", "--exclude-standard"),
            ".gpu": sum(p.stat().st_size for p in PACK.rglob("*") if p.is_file())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hardhat", type=Path, default=REPO.parent / "shared" / "datasets" / "hardhat")
    ap.add_argument("--format", choices=("webp", "jpeg"), default="webp")
    ap.add_argument("--quality", type=int, default=40)
    args = ap.parse_args(argv)
    PACK.mkdir(exist_ok=True)
    for wheel in download_wheels(PACK / "whl"):
        print(f"{wheel.relative_to(REPO)}: {wheel.stat().st_size / MIB:.2f} MiB")
    tar = PACK / "hardhat.tar.gz"
    images, labels = pack_hardhat(args.hardhat.resolve(), tar, args.format, args.quality)
    print(f"{tar.relative_to(REPO)}: {images} images ({args.format} q{args.quality}), {labels} label files, "
          f"{tar.stat().st_size / MIB:.2f} MiB")
    sizes = travelling_bytes()
    total = sum(sizes.values())
    print("one call carries: " + ", ".join(f"{k} {v / MIB:.2f} MiB" for k, v in sizes.items())
          + f"; total {total / MIB:.2f} MiB of {CALL_LIMIT // MIB}")
    if total > CALL_LIMIT:
        print("over the device tool's limit: lower --quality, or carry less", file=sys.stderr)
        return 1
    if total > COMFORT:
        print(f"warning: above {COMFORT // MIB} MiB, little room for what lands before the call", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
