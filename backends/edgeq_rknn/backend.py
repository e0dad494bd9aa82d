"""rknn family: Rockchip NPUs (RK3588, RK3576, RK3566/68, RV1106) through rknn-toolkit2 and its simulator.

rknn-toolkit2 pins numpy 1.26, onnx 1.18 and protobuf 4.25 and imports torch at start, so it runs in an
interpreter of its own (`edgeq toolchains install rknn`), reached through edgeq's worker protocol (`worker.py`).
Ultralytics installs it into the user's environment, downgrading numpy there; edgeq never does.

Artifacts, by role:
    <target>-int8                  (deployable) the body (images -> box_i/cls_i) quantized by the toolkit, the
                                   decode head in FP32 on the host (hostside.py): a plain ONNX with the decode head
                                   inside, quantized by it, gives every class score 0.0 (boxes in pixels and 0..1
                                   scores share one INT8 output tensor: the seed-003 collapse)
    <target>-int8-normalized-head  (comparison) the whole model, boxes divided by the image size in the graph: what
                                   Ultralytics' RKNN export ships
    <target>-int8-pixel-head       (comparison) the whole model as a plain export gives it, boxes in pixels

Every artifact is scored by the toolkit's own simulator of the chip (status `simulated`), on the evaluator's
images. The simulator runs only a model built in its own process, so the runner converts again from the same ONNX,
configuration and calibration files and checks the result is the shipped .rknn (the same bytes but for
the heap addresses the toolkit writes into it).

Precision: `options.dtype` (the toolkit's `quantized_dtype`: w8a8 by default, w8a16 / w16a16i where the chip has
them, fp16 for no quantization), per-channel weights unless `options.per_channel: false`; `calibration.method`
minmax / entropy / mse is the toolkit's quantized_algorithm normal / kl_divergence / mmse. Layers kept out of
INT8 (`--keep-float`, and every step of the `--max-drop` search) are the toolkit's hybrid quantization: float16 on
the NPU (`hybrid_layers`).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np

from edgeq.plugin import (
    Artifact,
    Backend,
    BackendOptions,
    BuildResult,
    DeploySteps,
    EdgeqError,
    Finding,
    HeadLayout,
    Job,
    Layer,
    Precision,
    Role,
    RuleTable,
    TargetProfile,
    ToolchainSpec,
    ToolkitLayerErrors,
    WorkerCall,
    attach_head,
    load_profiles,
    log,
    onnx_layers,
    run_worker,
)

HERE = Path(__file__).parent
TOOLKIT_VERSION = "2.3.2"
VERSION_WHY = "2.5.0 crashes on YOLOv8 graphs in its conv fusion; Ultralytics 8.4.190 pins <2.5 too"
# edgeq's calibration methods -> rknn-toolkit2's quantized_algorithm
ALGORITHMS = {"default": "normal", "minmax": "normal", "entropy": "kl_divergence", "mse": "mmse"}
Dtype = Literal["w8a8", "w8a16", "w16a16i", "fp16"]


class RknnProfile(TargetProfile):
    """A Rockchip target: its platform name for the toolkit, the dtypes edgeq builds for it, the board facts."""

    platform: str  # rknn.config(target_platform=...)
    dtypes: tuple[str, ...]  # options.dtype values the chip offers
    dtypes_why: str = ""  # why the others are refused, for the one-line error
    deploy: dict[str, str]  # device_needs, runtime: DEPLOY.md


class RknnOptions(BackendOptions):
    dtype: Dtype = "w8a8"  # rknn.config(quantized_dtype=...); fp16: no quantization (the NPU's float16 units)
    per_channel: bool = True  # quantized_method 'channel' (else 'layer')
    compare_heads: bool = True  # also build the normalized-head and pixel-head whole models (comparisons)
    optimization_level: int = 3  # rknn.config(optimization_level=...): the toolkit's graph optimizations
    timeout_s: float = 3600.0  # one conversion (about 10-105 s for a 640 px YOLOv8n) or one simulator session


class RknnBackend(Backend):
    family = "rknn"
    extra = "rknn"  # nothing to pip-install into edgeq's environment: the toolchain below is the install
    requires = ()
    profiles = load_profiles(HERE / "profiles.yaml", RknnProfile)
    toolchain = ToolchainSpec(
        name="rknn", description=f"Rockchip rknn-toolkit2 {TOOLKIT_VERSION} (quantizer, .rknn export, simulator)",
        python="python3.11", python_versions=("3.11",), requirements=HERE / "requirements.txt",
        no_deps=HERE / "requirements-nodeps.txt", probe="from rknn.api import RKNN")

    def options_model(self, target: str) -> type[BackendOptions]:
        return RknnOptions

    def check(self, job: Job) -> list[Finding]:
        profile: RknnProfile = job.profile
        opts: RknnOptions = job.options
        if job.keep_float and opts.dtype == "fp16":
            raise EdgeqError("--keep-float keeps layers out of INT8, but options.dtype=fp16 quantizes nothing",
                             "drop --keep-float, or build options.dtype=w8a8 with the layers kept in float16")
        if opts.dtype not in profile.dtypes:
            raise EdgeqError(f"{job.target} does not build options.dtype={opts.dtype}"
                             f"{': ' + profile.dtypes_why if profile.dtypes_why else ''}",
                             f"choose one of: {', '.join(profile.dtypes)}")
        table = RuleTable.load(HERE / profile.rules["onnx"])
        graph = job.graph(job.full_onnx)
        opset = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
        return table.evaluate([Layer(name="model", op="Model", attrs={"opset": opset}), *onnx_layers(graph)])

    def build(self, job: Job) -> BuildResult:
        import onnx

        opts: RknnOptions = job.options
        out = job.staging / job.target
        out.mkdir(parents=True, exist_ok=True)
        scratch = _scratch()  # outlives the build: the simulator converts again from these files
        dataset = _calibration_files(job, scratch)
        head_json = out / "model-int8-head.json"
        job.head.to_json(head_json)
        quantized = opts.dtype != "fp16"
        tag = "int8" if opts.dtype == "w8a8" else opts.dtype
        variants = [("", job.body_onnx, HeadLayout.DETACHED, Role.DEPLOYABLE, "fp32",
                     "decode head in FP32 on the host (hostside.py)")]
        if opts.compare_heads and not job.primary_only:
            normalized = scratch / "model-normalized-head.onnx"
            onnx.save(attach_head(onnx.load(str(job.body_onnx)), job.head, HeadLayout.NORMALIZED), str(normalized))
            variants += [("-normalized-head", normalized, HeadLayout.NORMALIZED, Role.COMPARISON, None,
                          "decode head inside, boxes divided by the image size (what Ultralytics' RKNN export ships)"),
                         ("-pixel-head", job.full_onnx, HeadLayout.PIXEL, Role.COMPARISON, None,
                          "decode head inside, boxes in pixels (a plain export)")]
        artifacts = []
        kept = f", {len(job.keep_float)} layer(s) in float16 (hybrid quantization)" if job.keep_float else ""
        for suffix, source, layout, role, head, where in variants:
            path = out / f"model-{tag}{suffix}.rknn"
            work = _conversion(job, source, dataset, mode="build", out=str(path))
            name = f"{job.target}-{tag}{suffix}"
            # a search step's logs beside the deployable's, not over them (the step's artifact is named -keepN too)
            logged = f"{name}-keep{len(job.keep_float)}" if job.keep_float else name
            log(f"{job.target}: rknn-toolkit2 converting {source.name} -> {path.name} "
                f"({len(job.calibration)} calibration images, {work['quantized_algorithm']}{kept})")
            built = run_worker(self.toolchain.python_path(), WorkerCall(
                script=HERE / "worker.py", job=work, workdir=scratch / f"build{suffix}",
                log=job.log_dir / f"{logged}-build.log", stage="rknn-build", timeout_s=opts.timeout_s))
            simulate = {**work, "mode": "simulate", 
                        "socket": str(scratch / f"sim{suffix}.sock")}
            artifacts.append(Artifact(
                name=name, target=job.target, variant=f"{tag}{suffix}", path=path, role=role,
                precision=_precision(opts.dtype, head, job.keep_float), layout=layout, status=job.profile.figures,
                note=f"rknn-toolkit2 {built['toolkit_version']} {opts.dtype} for {job.profile.platform} "
                     f"({'per-channel' if opts.per_channel else 'per-layer'} weights, quantized_algorithm "
                     f"{work['quantized_algorithm']}{kept}); {where}; scored by the toolkit's simulator",
                open_runner=self._runner(path, source, simulate, WorkerCall(
                    script=HERE / "worker.py", job=simulate, workdir=scratch / f"simulate{suffix}",
                    log=job.log_dir / f"{logged}-simulator.log", stage="rknn-simulator", timeout_s=opts.timeout_s),
                    built["toolkit_version"]),
                extra={"toolkit": f"rknn-toolkit2 {built['toolkit_version']}", "build_seconds": built["build_seconds"]},
                companions=(head_json,) if layout is HeadLayout.DETACHED else ()))
        return BuildResult(artifacts)

    def toolkit_layer_errors(self, job: Job, images: int) -> ToolkitLayerErrors:
        """rknn-toolkit2's accuracy_analysis on the deployable conversion (the body, the job's calibration, no
        layers kept): each op's output in the simulator against the toolkit's float run, "single" (the op fed the
        float input, so errors do not accumulate), on the first `images` calibration images; an edgeq layer gets
        the worst of the toolkit ops that compute it (a SiLU conv: the conv and its fused exSwish)."""
        scratch = _scratch()
        dataset = _calibration_files(job, scratch)
        paths = dataset.read_text().split()[:images]
        work = {**_conversion(replace(job, keep_float=()), job.body_onnx, dataset, mode="accuracy"), "images": paths}
        log(f"{job.target}: rknn-toolkit2 accuracy_analysis on {len(paths)} calibration image(s)")
        found = run_worker(self.toolchain.python_path(), WorkerCall(
            script=HERE / "worker.py", job=work, workdir=scratch / "accuracy",
            log=job.log_dir / f"{job.target}-accuracy-analysis.log", stage="rknn-accuracy",
            timeout_s=job.options.timeout_s))
        by_tensor = found["cosine"]
        graph = job.graph(job.body_onnx).graph
        _, _, consumers = _links(graph)
        cosine = {}
        for node in graph.node:
            ends = [t for t in dict.fromkeys((*node.output, *(_silu_end(o, consumers) for o in node.output)))
                    if t in by_tensor]
            if ends:
                cosine[node.name] = min(by_tensor[t] for t in ends)
        return ToolkitLayerErrors(tool=f"rknn-toolkit2 {found['toolkit_version']} accuracy_analysis (simulator)",
                                  metric="single-layer output cosine against the toolkit's float run",
                                  images=len(paths), cosine=cosine)

    def _runner(self, path: Path, source: Path, simulate: dict, call: WorkerCall, version: str):
        """Opens the simulator on `path`: a worker converting `source` again (see runner.py)."""
        from edgeq_rknn.runner import RknnSimulatorRunner

        outputs = _output_shapes(source)
        return lambda: RknnSimulatorRunner(path, self.toolchain.python_path(), call, outputs, version)

    def deploy_steps(self, job: Job, artifacts: list[Artifact]) -> DeploySteps:
        profile: RknnProfile = job.profile
        return DeploySteps(
            runtime=profile.deploy["runtime"], device_needs=profile.deploy["device_needs"], script=HERE / "kit_infer.py",
            input_note="The .rknn takes the letterboxed image as uint8 NHWC RGB (0..255): the /255 normalization is "
                       "inside the file (mean 0, std 255). infer.py passes it so; a C program passes the same bytes.",
            run_example="python3 infer.py image.jpg                        # the deployable file, head decoded here\n"
                        "python3 infer.py image.jpg --core-mask 0_1_2      # RK3588: all three NPU cores")


def _conversion(job: Job, source: Path, dataset: Path, **fields) -> dict:
    """The worker's job for converting `source` as `job` says (dtype, algorithm, granularity, kept layers)."""
    opts: RknnOptions = job.options
    quantized = opts.dtype != "fp16"
    return {"onnx": str(source), "dataset": str(dataset), "target_platform": job.profile.platform,
            "quantize": quantized, "quantized_dtype": "w8a8" if not quantized else opts.dtype,
            "quantized_algorithm": ALGORITHMS[job.calibration_method],
            "quantized_method": "channel" if opts.per_channel else "layer",
            "optimization_level": opts.optimization_level, "imgsz": job.head.imgsz,
            **hybrid_layers(job.graph(source).graph, job.keep_float if quantized else ()),
            "toolkit_version": TOOLKIT_VERSION, "version_why": VERSION_WHY, **fields}


def _precision(dtype: str, head: str | None, kept: tuple[str, ...] = ()) -> Precision:
    weights, activations = {"w8a8": ("int8", "int8"), "w8a16": ("int8", "int16"), "w16a16i": ("int16", "int16"),
                            "fp16": ("fp16", "fp16")}[dtype]
    return Precision(weights, activations, head, tuple((name, "fp16") for name in kept) if dtype != "fp16" else ())


def hybrid_layers(graph, layers: tuple[str, ...]) -> dict[str, list]:
    """What the worker needs to keep `layers` (ONNX node names, as edgeq's analysis and search name them) in
    float16: `float16_layers`, the toolkit's `custom_hybrid` (one [input tensor, output tensor] pair per layer, the
    subgraph between them kept in float16), and `float16_inputs`, the tensors each kept layer reads, which the
    toolkit would leave in INT8 as their producers write them (edgeq's scheme, like every target's, keeps a
    float layer's inputs unquantized). A Conv whose output feeds only a SiLU (x * sigmoid(x)) ends at the SiLU's
    output, and an input written by a SiLU brings the conv output inside it: the NPU runs the pair as one fused
    op (exSwish) with the conv output stored in INT8 between them."""
    nodes = {n.name: n for n in graph.node}
    consts, producers, consumers = _links(graph)
    pairs, inputs = [], []
    for name in layers:
        node = nodes.get(name)
        if node is None:
            raise EdgeqError(f"--keep-float names '{name}', which is not a layer of the model",
                             "name ONNX nodes as `edgeq analyze --target <rk target>` lists them")
        first = next((t for t in node.input if t and t not in consts), None)
        if first is None:
            raise EdgeqError(f"--keep-float names '{name}', which has no activation input to keep in float16",
                             "keep a layer that computes on activations (a Conv, Add, Concat ...)")
        pairs.append([first, _silu_end(node.output[0], consumers)])
        for tensor in (t for t in node.input if t and t not in consts):
            inputs.append(tensor)
            producer = producers.get(tensor)
            if producer is not None and producer.op_type == "Mul" and _silu_end(producer.input[0], consumers) == tensor:
                inputs.append(producer.input[0])
    return {"float16_layers": pairs, "float16_inputs": list(dict.fromkeys(inputs))}


def _links(graph) -> tuple[set[str], dict[str, object], dict[str, list]]:
    """The graph's constant tensors, tensor -> producing node, and tensor -> consuming nodes."""
    consts = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    return consts, producers, consumers


def _silu_end(tensor: str, consumers: dict) -> str:
    """`tensor`, or the output of the SiLU it feeds alone (Sigmoid(x) and Mul(x, Sigmoid(x)))."""
    users = consumers.get(tensor, [])
    sigmoid = next((u for u in users if u.op_type == "Sigmoid"), None)
    mul = next((u for u in users if u.op_type == "Mul"), None)
    if len(users) == 2 and sigmoid is not None and mul is not None and sigmoid.output[0] in mul.input:
        return mul.output[0]
    return tensor


def _output_shapes(onnx_path: Path) -> dict[str, tuple[int, ...]]:
    """The ONNX outputs, in order, with their static shapes: the simulator returns them in this order."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return {o.name: tuple(d.dim_value for d in o.type.tensor_type.shape.dim) for o in graph.output}


def _scratch() -> Path:
    """A folder for one build's calibration files and sockets (Unix socket paths must stay short), removed when
    edgeq exits: the simulator reads them again whenever an artifact is scored."""
    folder = Path(tempfile.mkdtemp(prefix="edgeq-rknn-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _calibration_files(job: Job, folder: Path) -> Path:
    """The job's calibration images as uint8 0..255 (letterboxed; NCHW, the layout the toolkit wants for .npy
    files) and the dataset list it reads (one path per line): it applies the /255 itself, as on the board."""
    lines = []
    for i in range(len(job.calibration)):
        image = np.asarray(job.calibration[i])
        path = folder / f"calibration-{i:05d}.npy"
        np.save(path, np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8))
        lines.append(str(path))
    dataset = folder / "dataset.txt"
    dataset.write_text("\n".join(lines) + "\n")
    return dataset
