"""Data sets behind one registry (`ncbench list datasets`)."""
from ncbench.data.dataset import ImageDataset
from ncbench.data.registry import (DATASETS, DatasetNotFoundError, list_datasets, load_dataset,
                                   register_dataset)
from ncbench.data import embedded  # noqa: F401  (registers the embedded sets)
from ncbench.data import torchvision_sets  # noqa: F401  (mnist, fashion-mnist, cifar10, cifar100, svhn)
from ncbench.data import fewshot_sets  # noqa: F401  (cifar-fs, mini-imagenet)
from ncbench.data import learn2learn_sets  # noqa: F401  (l2l-* few-shot benchmarks, learn2learn layout)

__all__ = ["DATASETS", "DatasetNotFoundError", "ImageDataset", "list_datasets", "load_dataset",
           "register_dataset"]
