"""The rknn-toolkit2 simulator as an edgeq runner: a worker in the toolchain's interpreter converts the model again
(the simulator runs only a model built in its own process, never a loaded .rknn), checks it is the shipped file,
and answers one request per image over a Unix socket this runner listens on.

The worker runs through edgeq's worker protocol (its log, the network guard, the kill on timeout) in a thread;
the socket carries only images and outputs, so nothing the toolkit prints can corrupt it.
"""

from __future__ import annotations

import io
import socket
import struct
import threading
from pathlib import Path

import numpy as np

from edgeq.plugin import Runner, StageError, WorkerCall, run_worker

ACCEPT_POLL_S = 1.0  # how often the wait for the worker's connection looks whether the worker died
REQUEST_TIMEOUT_S = 600.0  # one image through the simulator (about 0.5 s at 640 px on 2 cores)


class RknnSimulatorRunner(Runner):
    """Runs `path` (a .rknn) by rebuilding it in the simulator; `call` is the worker's "simulate" job."""

    def __init__(self, path: Path, python: Path, call: WorkerCall, outputs: dict[str, tuple[int, ...]],
                 toolkit_version: str) -> None:
        super().__init__(path)
        self.python, self.call, self.outputs = python, call, outputs
        self.runtime = f"rknn-toolkit2 {toolkit_version} simulator"
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None

    def load(self) -> None:
        address = self.call.job["socket"]
        Path(address).unlink(missing_ok=True)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(address)
        self._listener.listen(1)
        self._listener.settimeout(ACCEPT_POLL_S)
        self._thread = threading.Thread(target=self._work, name=f"rknn-simulator-{self.path.name}", daemon=True)
        self._thread.start()
        while self._conn is None:
            try:
                self._conn, _ = self._listener.accept()
            except TimeoutError:
                if not self._thread.is_alive():
                    self._raise_failure("the simulator worker ended before it connected")
        self._conn.settimeout(REQUEST_TIMEOUT_S)
        self.input_shape = (1, 3, self.call.job["imgsz"], self.call.job["imgsz"])

    def _work(self) -> None:
        try:
            run_worker(self.python, self.call)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            self._failure = exc

    def _raise_failure(self, otherwise: str):
        if self._failure is not None:
            raise self._failure
        raise StageError("rknn-simulator", otherwise, str(self.call.log))

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """float32 NCHW in [0, 1] (the letterboxed uint8 image / 255) -> the uint8 NHWC image the NPU takes."""
        results = [self._one(np.clip(np.rint(image.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)[None])
                   for image in images]
        return {name: np.concatenate([r[name] for r in results]) for name in self.outputs}

    def _one(self, image: np.ndarray) -> dict[str, np.ndarray]:
        buffer = io.BytesIO()
        np.save(buffer, image)
        payload = buffer.getvalue()
        try:
            self._conn.sendall(struct.pack("<Q", len(payload)) + payload)
            answer = _receive(self._conn)
        except OSError:
            answer = None
        if answer is None:
            self._thread.join(timeout=30)
            self._raise_failure("the simulator worker hung up")
        arrays = np.load(io.BytesIO(answer))
        values = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        if len(values) != len(self.outputs):
            raise StageError("rknn-simulator", f"the simulator returned {len(values)} outputs, the model has "
                             f"{len(self.outputs)}", str(self.call.log))
        return {name: _as_onnx(value, shape, self.call.log) for (name, shape), value in zip(self.outputs.items(), values)}

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.sendall(struct.pack("<Q", 0))  # "close": the worker returns and its process ends
            except OSError:
                pass
            self._conn.close()
            self._conn = None
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self._listener is not None:
            self._listener.close()
            Path(self.call.job["socket"]).unlink(missing_ok=True)
            self._listener = None


def _as_onnx(value: np.ndarray, shape: tuple[int, ...], log: Path) -> np.ndarray:
    """One output in the ONNX model's shape: as it is, or from NHWC where the toolkit returned that layout."""
    if value.shape == shape:
        return value
    if value.ndim == 4 and value.shape == (shape[0], shape[2], shape[3], shape[1]):
        return value.transpose(0, 3, 1, 2)
    raise StageError("rknn-simulator", f"the simulator returned an output of shape {value.shape}, the model's is "
                     f"{shape}", str(log))


def _receive(conn: socket.socket) -> bytes | None:
    header = _exactly(conn, 8)
    if header is None:
        return None
    return _exactly(conn, struct.unpack("<Q", header)[0])


def _exactly(conn: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
