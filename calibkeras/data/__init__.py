"""Data loading for calibkeras: CSV / DataFrame / directory / TFDS loaders to tf.data
(their shared pipeline options in `LoaderOptions`), the shared image preprocessing,
augmentation, class counts and priors, and a stratified split."""

from calibkeras.data.augmentation import build_augmentation
from calibkeras.data.csv_dataset import dataset_from_csv, dataset_from_dataframe
from calibkeras.data.directory_dataset import IMAGE_EXTENSIONS, dataset_from_directory
from calibkeras.data.labeled_dataset import LabeledDataset
from calibkeras.data.loader_options import LoaderOptions
from calibkeras.data.preprocessing import decode_image, load_image
from calibkeras.data.sampling import SAMPLING_MODES
from calibkeras.data.split import stratified_split
from calibkeras.data.tfds_dataset import dataset_from_tfds
from calibkeras.priors import class_counts, prior_from_counts
from calibkeras.utils.deprecation import deprecated_names

__getattr__ = deprecated_names(__name__, {
    "decode_images": "calibkeras.data.preprocessing:decode_images",
    "decode_rgb": "calibkeras.data.preprocessing:decode_rgb",
})

__all__ = [
    "IMAGE_EXTENSIONS",
    "LabeledDataset",
    "LoaderOptions",
    "SAMPLING_MODES",
    "build_augmentation",
    "class_counts",
    "dataset_from_csv",
    "dataset_from_dataframe",
    "dataset_from_directory",
    "dataset_from_tfds",
    "decode_image",
    "load_image",
    "prior_from_counts",
    "stratified_split",
]
