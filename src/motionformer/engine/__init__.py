"""The engine: configs, training, evaluation, checkpoints and distributed runs (``motionformer train/test``)."""


class RunError(RuntimeError):
    """A run cannot go on (a non-finite loss, out of memory, no readable video); the message says why and what
    helps. Earlier checkpoints and results are kept."""


class TrainingStopped(Exception):  # noqa: N818 (a signal, not a failure)
    """Ctrl-C (SIGINT) or SIGTERM asked the run to stop; a checkpoint was written."""
