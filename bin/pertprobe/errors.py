"""Errors raised for bad user input."""


class InputError(ValueError):
    """Bad input: the message names the file, the field and the fix."""

    def __init__(self, file: str, field: str, problem: str, fix: str) -> None:
        self.file, self.field, self.problem, self.fix = str(file), field, problem, fix
        super().__init__(f"{self.file}: field '{field}': {problem}. Fix: {fix}")
