"""Training the alignment map with Lightning: the data (`data`), the LightningModule (`module`), a
run and its checkpoints (`run`) and its folder (`run_folder`). The only package of dfa that imports
Lightning."""

from dfa.training.data import EpochShuffle, TrainBatch, TransferData, source_spec
from dfa.training.module import MapTrainer
from dfa.training.run import AtomicCheckpointIO, train
from dfa.training.run_folder import CKPT, prepare_run

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
