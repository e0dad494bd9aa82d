"""Data in: datasets as Ultralytics reads them, their labels, and images turned into model inputs."""

from edgeq.data.dataset import DATA_FIX, Dataset, load_dataset
from edgeq.data.images import ImageBatches, preprocess, read_image, subsample
from edgeq.data.labels import LabelStats, label_path, read_labels
from edgeq.hostside import Letterbox

__all__ = ["DATA_FIX", "Dataset", "ImageBatches", "LabelStats", "Letterbox", "label_path", "load_dataset",
           "preprocess", "read_image", "read_labels", "subsample"]
