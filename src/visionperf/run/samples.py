"""The run's samples: its dataset, and the preprocessed cache the machine holds for it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cache import Cache
from ..datasets import Dataset, open_dataset
from .config import RunSpec
from .machine import Machine
from .memory import check_memory, mem_available, memory_needed


@dataclass
class Samples:
    dataset: Dataset
    cache: Cache
    labels: np.ndarray  # per cache row (images skipped when it was built are left out)

    @property
    def total(self) -> int:
        return len(self.cache.data)


def prepare_samples(spec: RunSpec, machine: Machine, notes: list[str], log=print) -> Samples:
    """The dataset opened and its cache prepared by MACHINE, once the run's memory is known to fit
    (run.memory); NOTES says what makes the run not submittable."""
    cfg = spec.config
    dataset = open_dataset(spec.workload, cfg.dataset, cfg.count)
    check_memory(memory_needed(spec, len(dataset.labels), spec.length), mem_available())
    if dataset.synthetic:
        notes.append(f"dataset {dataset.root} is synthetic (made by sample-data): not a real accuracy figure")
    cache = machine.prepare_cache(spec, dataset, log)
    if cache.skipped:
        notes.append(f"{len(cache.skipped)} bad image(s) were skipped when the cache was built "
                     f"(listed in {cache.path / 'skipped.txt'}): not a submittable run")
    return Samples(dataset, cache, dataset.labels[cache.dataset_index])
