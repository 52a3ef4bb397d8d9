"""Training: one compiled ``lax.scan`` per chunk, vmapped over seeds x hparam sets.

* :mod:`jaxhedge.train.loop` -- pure functions (``make_train``, ``make_members``).
* :mod:`jaxhedge.train.checkpoint` -- orbax checkpoints of a members block.
* :mod:`jaxhedge.train.runner` -- the host loop (``run_training``, ``resume_training``).
* :mod:`jaxhedge.train.callbacks` -- what happens around each chunk: metrics files,
  TensorBoard, checkpoints, progress bar.
* :mod:`jaxhedge.train.record` -- ``run.json``, with every member's price.
* :mod:`jaxhedge.train.toy` -- ``ToyAgent``, a tiny protocol-conforming agent for tests/demos.
"""
from jaxhedge.train.checkpoint import (CheckpointMismatch, Checkpointer, CheckpointWarning,
                                       CorruptCheckpoint, Restored, restore_newest)
from jaxhedge.train.loop import (ChunkSummary, Members, Train, TrainState, all_finite,
                                 make_members, make_train, member_keys, shard_members,
                                 stack_hparams)
from jaxhedge.train.callbacks import (Callback, CheckpointCallback, MetricsFiles, ProgressBar,
                                      RunContext, TensorBoard)
from jaxhedge.train import toy  # noqa: F401 - registers ToyAgent with jaxhedge.codec
from jaxhedge.train.runner import (NonFiniteError, RunDirError, RunResult, agent_spec,
                                   build_agent, params_sha256, read_metrics,
                                   resume_training, run_training)

__all__ = [
    "TrainState", "Train", "Members", "ChunkSummary", "make_train", "make_members",
    "member_keys", "stack_hparams", "shard_members", "all_finite",
    "Checkpointer", "CheckpointMismatch", "CorruptCheckpoint", "CheckpointWarning", "Restored",
    "restore_newest",
    "run_training", "resume_training", "RunResult", "NonFiniteError", "RunDirError",
    "params_sha256", "read_metrics", "agent_spec", "build_agent",
    "Callback", "RunContext", "MetricsFiles", "TensorBoard", "ProgressBar", "CheckpointCallback",
]
