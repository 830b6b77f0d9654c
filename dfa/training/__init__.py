"""Training the alignment map with Lightning: the data (`data`), the LightningModule (`module`) and
a run with its folder and checkpoints (`run`). The only package of dfa that imports Lightning."""

from dfa.training.data import EpochShuffle, TrainBatch, TransferData, source_spec
from dfa.training.module import MapTrainer
from dfa.training.run import CKPT, AtomicCheckpointIO, prepare_run, train

__all__ = [
    "CKPT",
    "AtomicCheckpointIO",
    "EpochShuffle",
    "MapTrainer",
    "TrainBatch",
    "TransferData",
    "prepare_run",
    "source_spec",
    "train",
]
