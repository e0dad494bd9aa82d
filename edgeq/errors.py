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


_ERRNO_FIX = {
    "EACCES": "choose a folder you can write (--out, --cache-dir) or fix its permissions",
    "EPERM": "choose a folder you can write (--out, --cache-dir) or fix its permissions",
    "EROFS": "that file system is read-only: choose --out / --cache-dir on a writable one",
    "ENOSPC": "free space on that disk, or choose --out / --cache-dir on another one",
    "EDQUOT": "free space within your disk quota, or choose --out / --cache-dir elsewhere",
    "ENOTDIR": "a part of that path is a file, not a folder: choose another path",
    "EISDIR": "that path is a folder where a file was expected: choose another path",
    "ENOENT": "check the path",
    "ENAMETOOLONG": "choose a shorter path",
    "EMFILE": "raise the open-file limit (ulimit -n)",
}
_CORE_RUNTIMES = ("onnx", "onnxruntime", "google")  # google: protobuf, under every ONNX file


def _runtime_modules() -> set[str]:
    """Top-level modules whose exceptions mean "this runtime refused a file": core's, and every installed family's
    dependencies and tools (its runtime, e.g. OpenVINO or LiteRT), as the families declare them."""
    from edgeq.backend import families

    names = {*_CORE_RUNTIMES}
    for backend in families():
        names |= {m.split(".")[0] for m in backend.requires}
        names |= {tool.replace("-", "_") for tool in backend.tools}
    return names


def as_user_error(exc: BaseException) -> EdgeqError | None:
    """The one-line form of an error the user's environment or files caused, or None for what must be an
    internal error (the CLI then says so, and keeps the traceback). Covered: the OS refusing a file operation
    (permissions, read-only or full file system, a file where a folder should be), edgeq's refusal of a network
    connection, a parser error from PyYAML, running out of memory, and a model runtime refusing a file (ONNX,
    ONNX Runtime, or an installed family's runtime: its declared dependencies and tools)."""
    from edgeq.untrusted.network import NetworkRefused, refused_attempts

    chain, link = [], exc
    while link is not None and len(chain) < 20:
        chain.append(link)
        link = link.__cause__ or link.__context__
    # libraries wrap the refusal (urllib's URLError, requests' ConnectionError, Ultralytics' "Download failure")
    wrapped = any(isinstance(e, NetworkRefused) for e in chain) or isinstance(exc, ConnectionError)
    if refused_attempts() and wrapped:
        return EdgeqError(f"a network connection was refused ({refused_attempts()[0]}); edgeq reaches nothing "
                          "off this machine at run time", "pass local files only (a model by its path, a dataset "
                          "that is on disk); if a file you passed was being fetched, report it")
    if isinstance(exc, OSError) and (exc.errno is not None or exc.filename is not None):
        import errno as errno_names

        code = errno_names.errorcode.get(exc.errno or 0, "")
        what = f"'{exc.filename}'" + (f" -> '{exc.filename2}'" if exc.filename2 else "") if exc.filename else \
            "a file operation"
        return EdgeqError(f"the operating system refused {what}: {exc.strerror or type(exc).__name__}",
                          _ERRNO_FIX.get(code, "check that path, its permissions and its disk"))
    if type(exc).__module__.startswith("yaml"):
        return EdgeqError(f"a YAML file could not be parsed ({' '.join(str(exc).split())[:160]})", "fix the YAML")
    if isinstance(exc, MemoryError):
        return EdgeqError("out of memory", "use fewer --calib-images / --val-images, a smaller --imgsz, or free memory")
    if type(exc).__module__.split(".")[0] in _runtime_modules():
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        return EdgeqError(f"{type(exc).__module__.split('.')[0]} refused a file ({type(exc).__name__}: {detail})",
                          "check that the file is complete and made for this runtime (re-export it)")
    return None
