"""Data sets behind one registry (`ncbench list datasets`)."""
from ncbench.data import (
                                   embedded,  # noqa: F401  (registers the embedded sets)
                                   fewshot_sets,  # noqa: F401  (cifar-fs, mini-imagenet)
                                   learn2learn_sets,  # noqa: F401  (l2l-* few-shot benchmarks, learn2learn layout)
                                   torchvision_sets,  # noqa: F401  (mnist, fashion-mnist, cifar10, cifar100, svhn)
)
from ncbench.data.dataset import ImageDataset
from ncbench.data.registry import (
                                   DATASETS,
                                   DatasetNotFoundError,
                                   list_datasets,
                                   load_dataset,
                                   register_dataset,
)

__all__ = ["DATASETS", "DatasetNotFoundError", "ImageDataset", "list_datasets", "load_dataset",
           "register_dataset"]
