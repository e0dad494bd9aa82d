"""edgeq: edge INT8 export compiler for Ultralytics YOLO detectors.

`edgeq.export(...)` and `edgeq.evaluate(...)` are the library (edgeq.api); `edgeq` on the command line is built on
them. They are imported on first use, so `import edgeq` stays light.
"""

__all__ = ["evaluate", "export"]


def __getattr__(name: str):
    if name in __all__:
        from edgeq import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgeq' has no attribute {name!r}")
