"""`edgeq` command line. Exit codes: 0 ok, 2 bad input or usage, 3 --max-drop exceeded, 4 a target of a
`--target all` / list run failed (the others' results were written)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeq.errors import EdgeqError
from edgeq.fallback import ALLOW_FLAG, REFUSE_FLAG

EXPORT_EPILOG = """\
examples:
  edgeq export --target openvino                      the embedded demo: synthetic data, demo detector, 320 px
  edgeq export --target all                           every target, one intake, one matrix report
  edgeq export --target openvino,edgetpu,dla --model best.pt --data data.yaml --max-drop 1.0 --fast
  edgeq export --recipe intel-cpu-openvino --model best.pt --data data.yaml --out out/ov
  edgeq export --target openvino --set options.preset=performance --max-drop 1.0
  edgeq export --target dla --model best.pt --data data.yaml --max-drop 50%    over budget: keep the most
                                                      sensitive layers in FP16 until half the INT8 loss is back
  edgeq export --target tensorrt --set calibration.method=percentile-99.999 --keep-float /cv2.0/cv2.0.2/Conv
  edgeq export --recipe jetson-agx-orin-dla --no-fallback           DLA only: a standalone loadable
  edgeq export --target edgetpu --model yolo11n.yaml --allow-fallback   SiLU ops may run on the host CPU

The output folder gets report.md (the table), report.json and report.png (search.png and search/step-N/ when
--max-drop searched), and <target>/ with the artifacts and the deploy kit (DEPLOY.md, infer.py). With several
targets, report.* compare them all and each <target>/ has its own report. Nothing is written there until the
whole export succeeded; an existing folder is only replaced with --force. `edgeq analyze` ranks the layers the
search would keep.
"""


class _FallbackFlag(argparse.Action):
    """Sets allow_fallback and remembers the spelling the user typed, which a refusal quotes back."""

    def __init__(self, option_strings, dest, const, **kwargs):
        super().__init__(option_strings, dest, nargs=0, const=const, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const)
        namespace.fallback_flag = option_string


TRUST_HELP = ("load a .pt with the full unpickler, which runs any code the file names, and build a model YAML "
              "without edgeq's layer check; only for files from a source you trust (default: weights-only against "
              "Ultralytics' allow-list, YAMLs of listed layers with literal arguments)")
BAD_IMAGES_HELP = ("an image that cannot be decoded or is truncated: refuse the run naming it (default), or skip it "
                   "(the report counts what was skipped)")


ANALYZE_EPILOG = """\
examples:
  edgeq analyze --target openvino                         the demo detector on OpenVINO's scheme
  edgeq analyze --target openvino --set options.detach_head=false   the head quantized too: it ranks first
  edgeq analyze --recipe nxp-imx8mp --model best.pt --data data.yaml --set calibration.method=mse

Each layer is quantized alone (the rest in float) under the target's scheme, emulated in ONNX Runtime, and
scored against FP32 by MSE, SNR and cosine on calibration images; the top layers also by mAP50-95. Writes
analysis.md (the ranked table), analysis.json and analysis.png. Results are cached: a second run is fast.
"""


QAT_EPILOG = """\
examples:
  edgeq qat --target openvino --model best.pt --data data.yaml --set options.detach_head=false --device 0
  edgeq qat --target dla --model best.pt --data data.yaml --set options.fp16_last_convs=false --epochs 5
  edgeq qat --recipe jetson-orin-gpu --model best.pt --data data.yaml --no-export   (GPU machine; finish with
      edgeq export --recipe jetson-orin-gpu --model best.pt --data data.yaml --qat-onnx <out>/best-qat-tensorrt.onnx)

The target's own quantizer library instruments the model (openvino: NNCF; tensorrt, dla: ModelOpt), calibrated as
the target's PTQ calibrates (same images, same method), then fine-tunes with Ultralytics' loss and augmentation
plus distillation from the FP32 model. Writes <model>-qat-<target>.onnx, qat.md and qat.json, and, where the
target's toolchain is installed, export-<target>/ with PTQ and QAT side by side. The TFLite family has no QAT
here: its converter calibrates its own ranges (`edgeq adapt` is its training fix).
"""


ADAPT_EPILOG = """\
examples:
  edgeq adapt --activation relu6                          the demo detector, on synthetic shapes
  edgeq adapt --activation relu6 --model best.pt --data data.yaml --target edgetpu --device 0
  edgeq adapt --activation relu --model best.pt --data data.yaml --epochs 20 --target tensorrt

Writes <model>-<activation>.pt (loads with YOLO(...)), adapt.md and adapt.json (FP32 mAP50-95 before and after,
epochs, time; with --target, the INT8 figures of the export in export-<target>/). Needs a CUDA device beyond a
smoke-sized job; --device cpu runs anyway.
"""


TOOLCHAINS_EPILOG = """\
A target family whose vendor toolchain cannot share edgeq's environment (its own pins of numpy, onnx, protobuf)
runs it in an interpreter of its own, talking to it through job and result files. Installing one is an explicit
step, like pip: nothing is installed while exporting, and nothing into your own environment.

  edgeq toolchains                       which toolchains the installed families declare, and whether they are ready
  edgeq toolchains install NAME          make NAME's environment under the cache (--cache-dir / $EDGEQ_CACHE)
  EDGEQ_<NAME>_PYTHON=/path/to/python    use an interpreter you made yourself instead
"""


COMPARE_EPILOG = """\
examples:
  python3 infer.py --validate data.yaml                  on the device, in the deploy kit's folder
  edgeq compare out/report.json device-validation.json   here, with the .npz beside the device's JSON

Both records name the artifact and the evaluation set by content hash; a device record of another model or
another dataset is refused, naming which. The device's mAP50-95 and drop are printed beside edgeq's figure for that
artifact (measured, simulated or emulated) and the 95% interval of its drop; where the device kept the first
images' inputs and raw outputs, the artifact runs here on those inputs and each output's largest difference and
share of equal values are printed.
"""


def _add_training_budget(parser: argparse.ArgumentParser) -> None:
    """What `adapt` and `qat` share: how long, on what, with how much data per step."""
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs (default: see the epilog)")
    parser.add_argument("--batch", type=int, default=16, help="training batch (default 16)")
    parser.add_argument("--device", help="CUDA index (0) or cpu (default: 0 where there is a GPU; a CPU only runs "
                        "smoke-sized jobs unless named)")
    parser.add_argument("--workers", type=int, default=4, help="data-loader workers (default 4)")


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """`adapt`'s inputs: the checkpoint, the data with its train split, and the training budget."""
    parser.add_argument("--model", "-m", help="Ultralytics detection checkpoint (.pt) (default: the demo detector)")
    parser.add_argument("--data", "-d", help="data.yaml with train: and val: splits (default: synthetic shapes)")
    parser.add_argument("--imgsz", type=int, help="input size (default: the size the checkpoint was trained at)")
    _add_training_budget(parser)
    parser.add_argument("--train-fraction", type=float, default=1.0, metavar="F",
                        help="share of the train split to learn from (default 1.0)")
    parser.add_argument("--val-images", type=int, help="evaluation images (default: the whole val split)")
    parser.add_argument("--out", "-o", type=Path, help="output folder (default: edgeq-out/<command>-...)")
    parser.add_argument("--force", action="store_true", help="replace an output folder that already holds files")
    parser.add_argument("--trust-model", action="store_true", help=TRUST_HELP)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_job_arguments(parser: argparse.ArgumentParser, out_default: str) -> None:
    """What `export` and `analyze` share: which target, model and data, recipe edits, output and safety flags."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--target", "-t", help="target name (see `edgeq targets`); export also takes a comma list "
                       "or all")
    which.add_argument("--recipe", "-r", help="recipe name or YAML path (see `edgeq recipes`)")
    parser.add_argument("--model", "-m", help="Ultralytics detection .pt or model .yaml, or a packaged name such as "
                        "yolo11n.yaml (default: the demo detector; demo:relu6 is its ReLU6 twin)")
    parser.add_argument("--data", "-d", help="data.yaml or images/+labels/ folder (default: synthetic demo data)")
    parser.add_argument("--imgsz", type=int, help="square input size, multiple of 32 (default: the size the "
                        "checkpoint was trained at, else 640)")
    parser.add_argument("--head-branch", choices=["one2one", "one2many"], help="where the head has both "
                        "(YOLO26, YOLOv10): one2one is NMS-free (the default), one2many runs NMS on the host")
    parser.add_argument("--out", "-o", type=Path, help=f"output folder ({out_default})")
    parser.add_argument("--calib-images", type=int, help="calibration images (deterministic subsample)")
    parser.add_argument("--val-images", type=int, help="evaluation images (deterministic subsample)")
    parser.add_argument("--keep-float", metavar="NAME,NAME", help="layers (ONNX node names, as `edgeq analyze` "
                        "lists them) to keep in the target's higher precision")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override any recipe key, e.g. --set options.preset=performance or "
                        "--set calibration.method=auto (repeatable; `edgeq recipes --schema` lists them)")
    parser.add_argument("--force", action="store_true", help="replace an output folder that already holds files")
    parser.add_argument("--trust-model", action="store_true", help=TRUST_HELP)
    parser.add_argument("--bad-images", choices=["refuse", "skip"], help=BAD_IMAGES_HELP)
    parser.add_argument("--allow-overlap", action="store_true", help="accept calibration images that are also "
                        "evaluation images (compared by content; refused by default: figures scored on them flatter "
                        "the artifact)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeq", description="Export YOLO detectors to edge targets in INT8: check the target's rules, "
        "quantize, emit deployable artifacts and an accuracy report (FP32 vs every artifact).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, help="caches (demo data, Ultralytics settings); "
                        "default $EDGEQ_CACHE or ~/.cache/edgeq")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    export = sub.add_parser("export", help="check, quantize, emit and evaluate for one target",
                            epilog=EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_job_arguments(export, "default: edgeq-out/<target>")
    export.add_argument("--batch", type=int, help="static batch of the deployable artifacts (default 1); the "
                        "report times batch 1, 4 and 8 either way where the target's runtime runs here")
    export.add_argument("--max-drop", metavar="POINTS|N%", help="accuracy budget: mAP50-95 points the INT8 artifact "
                        "may lose, or a share of what default PTQ loses (50%%: win back half); over it, the "
                        "mixed-precision search keeps the most sensitive layers in higher precision; exit 3 if no "
                        "step is within it")
    export.add_argument("--fast", action="store_true", help="with several targets: score the artifacts whose "
                        "emulation runs on slow reference kernels on the first 100 evaluation images (the report "
                        "says so)")
    export.add_argument("--jobs", "-j", type=_positive_int, metavar="N", help="with several targets: build and score "
                        "N targets at once, each in a worker process with its share of the CPUs (default: one per "
                        "CPU, as many as the memory holds at about 4 GiB each); --jobs 1 runs them one after another")
    export.add_argument("--qat-onnx", type=Path, metavar="PATH", help="also build the graph `edgeq qat` trained "
                        "for this target, beside the PTQ artifacts (PTQ and QAT side by side in the report)")
    export.add_argument("--baseline", choices=["ultralytics"], help="also run Ultralytics' own INT8 export of the "
                        "same checkpoint for each target it has a format for (calibrated on the same images, scored "
                        "by the same evaluator), a row beside edgeq's with the `yolo export` line and edgeq's gain; "
                        "targets whose format needs packages not installed here are listed as skipped")
    fallback = export.add_mutually_exclusive_group()
    fallback.add_argument(ALLOW_FLAG, "--allow-cpu-fallback", dest="allow_fallback", action=_FallbackFlag,
                          const=True, help="accept layers that run off the accelerator (Edge TPU ops on the host "
                          "CPU, DLA layers on the GPU); default: the target's (see ARCHITECTURE.md)")
    fallback.add_argument(REFUSE_FLAG, "--no-gpu-fallback", dest="allow_fallback", action=_FallbackFlag,
                          const=False, help="refuse layers the accelerator cannot run (DLA: a standalone loadable)")

    analyze = sub.add_parser("analyze", help="rank layers by quantization sensitivity on one target's scheme",
                             epilog=ANALYZE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_job_arguments(analyze, "default: edgeq-out/<target>-analysis")
    analyze.add_argument("--map-layers", type=int, help="top layers also scored by mAP (default 8)")
    analyze.add_argument("--map-images", type=int, help="evaluation images for those mAP figures (default 50)")

    adapt = sub.add_parser("adapt", help="swap activations (ReLU6/ReLU) and fine-tune with distillation",
                           epilog=ADAPT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_arguments(adapt)
    adapt.add_argument("--activation", "-a", required=True, choices=["relu6", "relu"],
                       help="the activation every SiLU/LeakyReLU/Hardswish becomes (relu6: Edge TPU, NXP, tight "
                       "INT8 ranges; relu: fuses with Conv in TensorRT)")
    adapt.add_argument("--target", "-t", help="export the adapted model for this target at the end and report its "
                       "INT8 figures (the activation must be one the target accepts)")
    adapt.add_argument("--distill", type=float, default=6.0, metavar="WEIGHT",
                       help="weight of the distillation from the original model (Ultralytics' dis; 0: off)")
    adapt.add_argument("--lr", type=float, default=0.0005, help="AdamW learning rate, cosine schedule "
                       "(default 0.0005)")
    adapt.add_argument("--no-val", action="store_true", help="no per-epoch validation: keep the last weights "
                       "(best.pt is otherwise picked on the val split)")

    qat = sub.add_parser("qat", help="quantization-aware fine-tuning with distillation, built like an export",
                         epilog=QAT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_job_arguments(qat, "default: edgeq-out/qat-<target>")
    _add_training_budget(qat)
    qat.add_argument("--lr", type=float, default=1e-5, help="AdamW learning rate, cosine to 0 (default 1e-5)")
    qat.add_argument("--distill", type=float, default=1.0, metavar="WEIGHT",
                     help="weight of the distillation from the FP32 model (default 1.0; 0: off)")
    qat.add_argument("--no-export", action="store_true", help="stop after the trained ONNX (emit it later with "
                     "`edgeq export --qat-onnx`)")

    evaluate = sub.add_parser("eval", help="evaluate any artifact (ours or from `yolo export`) on a dataset",
                              epilog="example: edgeq eval yolov8n.onnx --data data.yaml --val-images 500",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.add_argument("artifact", type=Path, help=".pt, .onnx, OpenVINO .xml, or any file a backend runs")
    evaluate.add_argument("--data", "-d", help="data.yaml or images/+labels/ folder (default: synthetic demo data)")
    evaluate.add_argument("--imgsz", type=int, help="input size (default: read from the artifact, else 640)")
    evaluate.add_argument("--split", default="val")
    evaluate.add_argument("--val-images", type=int, default=300)
    evaluate.add_argument("--layout", choices=["pixel", "normalized", "detached", "selected"],
                          help="what the outputs hold (default: told apart from the file): decoded boxes in pixels "
                               "(yolo export to ONNX/OpenVINO), normalized to 0..1 (yolo export to LiteRT / TFLite), "
                               "raw per-scale logits (needs --head-json), or detections already selected (1, k, 6) "
                               "(yolo export nms=False)")
    evaluate.add_argument("--head-json", type=Path, help="head parameters shipped beside a detached artifact")
    evaluate.add_argument("--latency-runs", type=int, default=0, help="also time N runs (median)")
    evaluate.add_argument("--trust-model", action="store_true", help=TRUST_HELP)
    evaluate.add_argument("--bad-images", choices=["refuse", "skip"], default="refuse", help=BAD_IMAGES_HELP)
    evaluate.add_argument("--no-progress", action="store_true")

    compare = sub.add_parser("compare", help="a deploy kit's figure on the device (infer.py --validate) against "
                             "the report's for the same artifact", epilog=COMPARE_EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_argument("report", type=Path, help="the export's report.json (a run of several targets: its own, or "
                         "the device's target's in <target>/)")
    compare.add_argument("device", type=Path, help="device-validation.json from the kit's `infer.py --validate`")
    compare.add_argument("--no-outputs", action="store_true",
                         help="skip running the artifact here on the device's saved inputs (per-output agreement)")

    sub.add_parser("targets", help="list targets, their backend families and missing extras")
    recipes = sub.add_parser("recipes", help="list shipped recipes, or show one resolved")
    recipes.add_argument("name", nargs="?", help="show this recipe with extends: resolved")
    recipes.add_argument("--schema", action="store_true", help="list every recipe key with its type and default")
    recipes.add_argument("--target", help="with --schema: also the target's options.* keys")

    toolchains = sub.add_parser("toolchains", help="vendor toolchains that run in interpreters of their own: list, "
                                "install", epilog=TOOLCHAINS_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    toolchain_sub = toolchains.add_subparsers(dest="toolchain_command", metavar="ACTION")
    install = toolchain_sub.add_parser("install", help="make a toolchain's environment under edgeq's cache")
    install.add_argument("name", help="the toolchain (`edgeq toolchains` lists them)")
    install.add_argument("--python", help="the interpreter to make it from (default: the toolchain's own choice)")
    install.add_argument("--force", action="store_true", help="reinstall even when it is ready")
    toolchain_sub.add_parser("list", help="every toolchain, where it is and whether it is ready (the default)")

    from edgeq.backend import families

    for backend in families():
        for command in backend.commands():
            plugin = sub.add_parser(command.name, help=f"{command.help} ({backend.family} backend)",
                                    description=command.help)
            command.add_arguments(plugin)
            plugin.set_defaults(plugin_run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Every command behind one boundary: an EdgeqError, an OS or parser error, a model runtime refusing a file
    print one line and exit 2 (3, 4 for the gates); anything else is an internal error: one line naming it and
    where its traceback was saved, exit 1 (EDGEQ_TRACEBACK=1 prints it instead). Ctrl-C exits 130."""
    from edgeq.untrusted.network import forget_attempts, refuse_network

    args = _parser().parse_args(argv)
    refuse_network()
    forget_attempts()
    try:
        _use_cache_dir(args.cache_dir)
        if hasattr(args, "plugin_run"):
            return args.plugin_run(args)
        return {"export": _export, "analyze": _analyze, "adapt": _adapt, "qat": _qat, "eval": _eval,
                "compare": _compare, "targets": _targets, "recipes": _recipes,
                "toolchains": _toolchains}[args.command](args)
    except KeyboardInterrupt:
        print("edgeq: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001  (the boundary: every error becomes one line)
        from edgeq.errors import as_user_error

        user = exc if isinstance(exc, EdgeqError) else as_user_error(exc)
        if user is not None:
            print(f"edgeq: error: {user.one_line()}", file=sys.stderr)
            return user.exit_code
        return _internal_error(exc)


def _use_cache_dir(chosen: Path | None) -> None:
    """--cache-dir, else $EDGEQ_CACHE, else ~/.cache/edgeq: refused in one line when it is a file."""
    from edgeq.env import cache_dir, contain_caches, set_cache_dir

    if chosen:
        set_cache_dir(chosen)
    where = cache_dir()
    if where.exists() and not where.is_dir():
        raise EdgeqError(f"the cache folder '{where}' is a file", "pass --cache-dir (or set EDGEQ_CACHE to) a folder")
    contain_caches()


def _positive_int(text: str) -> int:
    """argparse's type for counts that must be at least 1 (its own error line names the flag and the value)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number (give 1 or more)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1 (give 1 or more)")
    return value


def _internal_error(exc: BaseException) -> int:
    """A bug, not bad input: one line that says so, naming where the traceback was saved (the cache, else the
    temp folder), exit 1."""
    import os
    import tempfile
    import time
    import traceback

    text = "".join(traceback.format_exception(exc))
    if os.environ.get("EDGEQ_TRACEBACK"):
        print(text, file=sys.stderr, end="")
        return 1
    from edgeq.env import cache_dir

    name = f"edgeq-internal-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    saved = None
    for folder in (cache_dir() / "errors", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
            saved = folder / name
            break
        except OSError:
            continue
    where = f"the traceback is in {saved}" if saved else "the traceback could not be saved"
    detail = " ".join(str(exc).split())[:160]
    print(f"edgeq: internal error: {type(exc).__name__}{': ' + detail if detail else ''} (a bug in edgeq, not in "
          f"your input as far as it can tell; {where}: please report it)", file=sys.stderr)
    return 1


def _job_recipe(args, lists=None, **extra):
    from edgeq.recipe import load_recipe

    keep = [n.strip() for n in args.keep_float.split(",") if n.strip()] if args.keep_float else None
    return load_recipe(args.recipe, target=args.target, sets=args.sets, overrides={
        "model": args.model, "data": args.data, "imgsz": args.imgsz, "head_branch": args.head_branch,
        "calibration.images": args.calib_images, "evaluation.images": args.val_images, "bad_images": args.bad_images,
        "calibration.allow_overlap": True if args.allow_overlap else None, **extra}, lists={
        "keep_float": keep, **(lists or {})})


def _analyze(args) -> int:
    from edgeq.analyze.run import run_analyze
    from edgeq.intake import ExportRequest

    recipe = _job_recipe(args, **{"analysis.map_layers": args.map_layers, "analysis.map_images": args.map_images})
    out = args.out or Path("edgeq-out") / f"{recipe.target}-analysis"
    report = run_analyze(ExportRequest(recipe, out, force=args.force, progress=not args.no_progress,
                                       trust_model=args.trust_model))
    print(report.table(limit=15))
    print(f"\n{len(report.layers)} layers ranked; written to {out}/ (analysis.md, analysis.json, analysis.png)")
    return 0


def _adapt(args) -> int:
    from edgeq.train.adapt import DEFAULT_EPOCHS, AdaptRequest, run_adapt

    if args.epochs is not None and args.epochs < 1:
        raise EdgeqError(f"--epochs {args.epochs}: adapting needs at least one epoch", "use e.g. --epochs 40")
    if not 0 < args.train_fraction <= 1:
        raise EdgeqError(f"--train-fraction {args.train_fraction} is outside (0, 1]", "use e.g. --train-fraction 0.5")
    out = args.out or Path("edgeq-out") / f"adapt-{args.activation}"
    report = run_adapt(AdaptRequest(
        activation=args.activation, out=out, model=args.model, data=args.data, target=args.target,
        epochs=args.epochs or DEFAULT_EPOCHS, batch=args.batch, imgsz=args.imgsz, device=args.device,
        workers=args.workers, distill_weight=args.distill, train_fraction=args.train_fraction, lr=args.lr,
        validate=not args.no_val,
        val_images=args.val_images, force=args.force, trust_model=args.trust_model, progress=not args.no_progress))
    print(report.markdown())
    print(f"written to {out}/ ({report.checkpoint}, adapt.md, adapt.json)")
    return 0


def _job_args(args) -> tuple[str, ...]:
    """The job arguments as typed (target or recipe, model, data, sizes, --set), to repeat in a later command."""
    pairs = [("--target", args.target), ("--recipe", args.recipe), ("--model", args.model), ("--data", args.data),
             ("--imgsz", args.imgsz), ("--head-branch", args.head_branch), ("--calib-images", args.calib_images),
             ("--val-images", args.val_images), ("--bad-images", args.bad_images)]
    typed = [item for flag, value in pairs if value is not None for item in (flag, str(value))]
    typed += ["--allow-overlap"] if args.allow_overlap else []
    return (*typed, *[item for value in args.sets for item in ("--set", value)])


def _qat(args) -> int:
    from edgeq.intake import ExportRequest
    from edgeq.train.qat import DEFAULT_EPOCHS, QatRequest, run_qat

    if args.epochs is not None and args.epochs < 0:
        raise EdgeqError(f"--epochs {args.epochs} is negative", "give the fine-tuning epochs (0: the QAT graph at its "
                         "PTQ starting point, untrained)")
    recipe = _job_recipe(args)
    out = args.out or Path("edgeq-out") / f"qat-{recipe.target}"
    report = run_qat(QatRequest(
        intake=ExportRequest(recipe, out, force=args.force, progress=not args.no_progress,
                             trust_model=args.trust_model),
        epochs=DEFAULT_EPOCHS if args.epochs is None else args.epochs, batch=args.batch, lr=args.lr,
        device=args.device, workers=args.workers,
        distill_weight=args.distill, export=not args.no_export, export_args=_job_args(args)))
    print(report.markdown())
    print(f"written to {out}/ ({report.qat_onnx}, qat.md, qat.json)")
    return 0


def _export(args) -> int:
    from edgeq.api import export_recipe
    from edgeq.pipeline import enforce_max_drop, is_target_list

    if args.max_drop is not None and args.max_drop.strip().startswith("-"):
        raise EdgeqError(f"--max-drop {args.max_drop} is negative",
                         "give the mAP50-95 points the INT8 artifact may lose (--max-drop 0.5) or a share of the "
                         "default loss (--max-drop 50%)")
    recipe = _job_recipe(args, batch=args.batch, lists={"max_drop": args.max_drop})
    result = export_recipe(recipe, out=args.out, force=args.force, allow_fallback=args.allow_fallback,
                           fallback_flag=getattr(args, "fallback_flag", None), trust_model=args.trust_model,
                           fast=args.fast, qat_onnx=args.qat_onnx, baseline=args.baseline, verbose=True,
                           progress=not args.no_progress, jobs=args.jobs)
    out = result.out
    if is_target_list(recipe.target):
        return _matrix_outcome(result.matrix, recipe, out)
    report = result.report
    print(report.table())
    if search := report.search:
        print(f"\nmixed-precision search: {len(search.steps) - 1} step(s), {search.stopped}"
              + (f"; chosen {search.chosen}" if search.chosen else ""))
    print(f"\nwritten to {out}/ (report.md, report.json, report.png; {recipe.target}/DEPLOY.md)")
    enforce_max_drop(report, recipe)
    return 0


def _matrix_outcome(matrix, recipe, out: Path) -> int:
    from edgeq.errors import AccuracyGateError, TargetsFailedError

    print(matrix.table())
    print(f"\nwritten to {out}/ (report.md, report.json, report.png; <target>/ with its report and DEPLOY.md)")
    if failed := matrix.failed():
        raise TargetsFailedError(f"{len(failed)} target(s) failed: " + "; ".join(f"{o.target}: {o.reason}"
                                                                                  for o in failed),
                                 f"the others are in {out}/; fix the cause above, or leave the target out")
    if over := matrix.over_budget():
        raise AccuracyGateError(f"{', '.join(f'{e.name} loses {e.drop_map50_95:.2f}' for e in over)} mAP50-95 "
                                f"points, over --max-drop {recipe.max_drop}",
                                "export that target alone with --max-drop: its mixed-precision search keeps the "
                                "most sensitive layers in higher precision")
    return 0


def _eval(args) -> int:
    from edgeq.api import evaluate

    scored = evaluate(args.artifact, data=args.data, imgsz=args.imgsz, layout=args.layout, head_json=args.head_json,
                      split=args.split, val_images=args.val_images, bad_images=args.bad_images,
                      trust_model=args.trust_model, latency_runs=args.latency_runs, verbose=True,
                      progress=not args.no_progress)
    latency = "" if scored.latency_ms is None else f"{scored.latency_ms:.1f} ms"
    print("| artifact | runtime | images | mAP50-95 | mAP50 | latency |\n|---|---|---:|---:|---:|---:|")
    print(f"| {args.artifact.name} | {scored.runtime} | {scored.images} | {scored.map50_95:.2f} | "
          f"{scored.map50:.2f} | {latency} |")
    if scored.skipped_images:
        print(f"\n{scored.skipped_images} image(s) skipped (--bad-images skip): cannot be decoded or truncated")
    return 0


def _compare(args) -> int:
    from edgeq.api import compare_device
    from edgeq.deploy.compare import markdown

    print(markdown(compare_device(args.report, args.device, outputs=not args.no_outputs)), end="")
    return 0


def _targets(args) -> int:
    from edgeq.backend import discover, registry

    reg, backends = registry(), discover()
    print("| target | family | accelerator | figures here | fallback by default | calibration methods | "
          "higher precision | training fix | ready | description |\n|---|---|---|---|---|---|---|---|---|---|")
    for target, backend in sorted(backends.items()):
        missing, profile = backend.missing(target), backend.profiles[target]
        ready = "yes" if not missing else f"no: {backend.install_hint()} (missing: {', '.join(missing)})"
        fallback = f"yes (to {profile.fallback_to})" if profile.fallback_default else "no"
        scheme = profile.quantization
        methods = ", ".join(("default", "auto", *scheme.offered())) if scheme else "default"
        hp = scheme.higher_precision if scheme else None
        higher = "n/a" if not scheme else "none (full integer)" if hp is None else \
            hp.precision + (" (whole model)" if hp.scope == "model" else "")
        command = scheme.training_command if scheme else None
        training = " ".join(f"--{k} {v}" if k != "command" else f"edgeq {v}" for k, v in command.items()) \
            if command else "none"
        print(f"| {target} | {backend.family} | {profile.accelerator} | {profile.figures} | {fallback} | {methods} | "
              f"{higher} | {training} | {ready} | {profile.description} |")
    for name, why in reg.broken.items():
        print(f"| ({name}) | plugin failed to load | | | | | | | no | {why} |")
    for name, owners in reg.conflicts.items():
        print(f"| {name} | claimed twice | | | | | | | no | by {owners}: uninstall one |")
    return 0


def _toolchains(args) -> int:
    from edgeq.toolchains import install_toolchain, known_toolchains

    known = known_toolchains()
    if args.toolchain_command == "install":
        if args.name not in known:
            import difflib

            close = difflib.get_close_matches(args.name, list(known), n=1)
            raise EdgeqError(f"no installed target family declares a toolchain named '{args.name}'",
                             f"did you mean {close[0]}? " if close else
                             f"choose one of: {', '.join(sorted(known)) or 'none'} (`edgeq toolchains`)")
        spec, _ = known[args.name]
        install_toolchain(spec, python=args.python, force=args.force, log=lambda m: print(f"edgeq: {m}",
                                                                                              file=sys.stderr))
        return 0
    print("| toolchain | family | interpreter | ready | description |\n|---|---|---|---|---|")
    for name, (spec, family) in sorted(known.items()):
        why = spec.not_ready()
        ready = "yes" if why is None else f"no: {why}; `{spec.install_line()}` or set {spec.env_var}"
        print(f"| {name} | {family} | {spec.python_path()} | {ready} | {spec.description} |")
    return 0


def _recipes(args) -> int:
    import yaml

    from edgeq.recipe import _read, available

    if args.schema:
        return _schema(args.target)
    if args.name:
        print(yaml.safe_dump(_read(args.name), sort_keys=False).rstrip())
        return 0
    print("| recipe | target | description |\n|---|---|---|")
    for name, path in sorted(available().items()):
        data = _read(name)
        print(f"| {name} | {data.get('target', '?')} | {' '.join(str(data.get('description', '')).split())} |")
    return 0


def _schema(target: str | None) -> int:
    from edgeq.recipe import Recipe, schema_keys

    keys = {k: v for k, v in schema_keys(Recipe).items() if k != "options"}
    if target:
        from edgeq.backend import backend_for

        keys.update(schema_keys(backend_for(target).options_model(target), "options."))
    print("| key | type | default |\n|---|---|---|")
    for key, (kind, default) in keys.items():
        print(f"| {key} | {kind} | {default} |")
    if not target:
        print("\noptions.* depend on the target: edgeq recipes --schema --target T")
    return 0


if __name__ == "__main__":
    sys.exit(main())
