"""Errors a user can fix: each carries one sentence saying what is wrong and how to fix it."""


class UserError(ValueError):
    """Bad input (file, column, size, option, checkpoint). The CLI prints it and exits 2."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message names the epoch and minibatch."""

    def __init__(self, message: str, epoch: int, minibatch: int | None):
        super().__init__(message)
        self.epoch = epoch
        self.minibatch = minibatch
