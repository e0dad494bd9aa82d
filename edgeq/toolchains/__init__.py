"""Vendor toolchains in interpreters of their own, and the one small protocol edgeq talks to them through.

Some vendor toolchains cannot share edgeq's environment (Rockchip's rknn-toolkit2 pins numpy 1.26 and onnx 1.18;
edgeq runs numpy 2 and onnx 1.23). A family declares its toolchain (`ToolchainSpec`: pinned requirements in the
family's folder, a probe); `edgeq toolchains install NAME` makes the environment under edgeq's cache, an explicit
step like `pip install` (nothing is installed at export time, and never into the user's own environment);
`EDGEQ_<NAME>_PYTHON` points at an interpreter the user made instead. The family then runs its worker script
there through `run_worker`: a job file in, a result file out, the log kept, a timeout, the child killed on
Ctrl-C, and a crash turned into one line naming the log.
"""

from edgeq.toolchains.spec import ToolchainSpec, install_toolchain, known_toolchains
from edgeq.toolchains.worker import WorkerCall, run_worker

__all__ = ["ToolchainSpec", "WorkerCall", "install_toolchain", "known_toolchains", "run_worker"]
