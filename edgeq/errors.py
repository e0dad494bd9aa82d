"""User-facing errors: one line naming the problem and the fix, exit code 2, never a traceback."""

from __future__ import annotations


class EdgeqError(Exception):
    """A mistake the user can fix. The CLI prints `error: <problem> Fix: <fix>` and exits with `exit_code`."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem.rstrip(".")
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.problem}. Fix: {self.fix}" if self.fix else f"{self.problem}."


class MissingDependencyError(EdgeqError):
    """A backend's heavy dependency is not installed."""

    def __init__(self, target: str, install: str, modules: list[str]) -> None:
        super().__init__(f"target '{target}' needs {', '.join(modules)}, which {'is' if len(modules) == 1 else 'are'} "
                         "not installed", install)


class StageError(EdgeqError):
    """An external tool (converter, quantizer, compiler) failed; its log is kept beside the report."""

    def __init__(self, stage: str, detail: str, log_path: str | None = None) -> None:
        self.stage, self.detail, self.log_path = stage, detail, log_path
        where = f" (log: {log_path})" if log_path else ""
        super().__init__(f"stage '{stage}' failed: {detail}{where}", "read the log; if the model is valid, report it")

    def moved_log(self, new_path: str) -> StageError:
        """The same error, pointing at where the pipeline kept the log."""
        return StageError(self.stage, self.detail, new_path)


class AccuracyGateError(EdgeqError):
    """--max-drop was exceeded: the artifacts were written, but CI should fail."""

    exit_code = 3


class TargetsFailedError(EdgeqError):
    """`--target all` (or a list): some targets failed to build; the others' results and the report were written."""

    exit_code = 4
