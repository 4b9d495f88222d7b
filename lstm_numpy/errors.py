"""Errors a user can fix: each carries one sentence saying what is wrong and how to fix it."""


class UserError(ValueError):
    """Bad input (file, column, size, option, checkpoint). The CLI prints it and exits 2."""


class NameTakenError(UserError, FileExistsError):
    """A file name already exists, so nothing was written over it. Both a UserError (the CLI prints it)
    and a FileExistsError (a caller that picks the next free name catches it)."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


class NonFiniteLossError(RuntimeError):
    """Training diverged: a NaN or infinite loss (or, as ExplodingLossError, an exploding one). The
    message names the epoch and minibatch; the CLI prints it and exits 3."""

    def __init__(self, message: str, epoch: int, minibatch: int | None):
        super().__init__(message)
        self.epoch = epoch
        self.minibatch = minibatch


class ExplodingLossError(NonFiniteLossError):
    """Training diverged while the loss was still finite: it grew far beyond its starting value
    (the rule is in ``contract.train_with``). A NonFiniteLossError, so every caller stops on it alike."""
