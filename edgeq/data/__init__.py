"""Data in: datasets as Ultralytics reads them, their labels, and images turned into model inputs."""

from edgeq.data.dataset import DATA_FIX, Dataset, load_dataset
from edgeq.data.images import BadImage, ImageBatches, UsableImages, preprocess, read_image, subsample, usable_images
from edgeq.data.labels import LabelStats, label_path, read_labels
from edgeq.hostside import Letterbox

__all__ = ["DATA_FIX", "BadImage", "Dataset", "ImageBatches", "LabelStats", "Letterbox", "UsableImages", "label_path",
           "load_dataset", "preprocess", "read_image", "read_labels", "subsample", "usable_images"]
