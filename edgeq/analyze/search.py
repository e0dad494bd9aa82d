"""Mixed precision under an accuracy budget: keep the most sensitive layers in the target's higher precision, in
rank order, re-building and re-evaluating the real artifact at each step, until the drop is within budget or a
stop rule is met (the layer limit, or the latency gain over FP32 gone). Where the target's higher precision is the
whole model's or nothing (`HigherPrecision.scope: model`, the TFLite converter's 16x8), there is one step: the whole
model in it, built and evaluated like any other (`kept` is `[WHOLE_MODEL]`), and no ranking.

The loop is here; what a step is (build the target's artifact with some layers kept, evaluate it, time it) is a
callback from the pipeline, so this module knows no backend. Full-integer targets cannot keep float layers on
the accelerator: for them the search does not build anything; it reports what each float layer would cost and
names the training-side remedy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edgeq.analyze.scheme import WHOLE_MODEL, QuantScheme


@dataclass
class StepResult:
    """One search step as measured: the artifact built with `kept` layers in higher precision."""

    step: int
    kept: list[str]  # the layers kept out of INT8 at this step (the user's --keep-float first)
    artifact: str
    path: str
    map50_95: float
    drop_map50_95: float
    latency_ms: float | None = None  # where the target's latency is measured here
    within_budget: bool = False
    drop_interval: list[float] | None = None  # the drop's 95% interval (edgeq.evaluation.uncertainty)

    @property
    def whole_model(self) -> bool:
        return WHOLE_MODEL in self.kept

    def kept_label(self) -> str:
        """How many layers the step keeps, in words for the report: a count, or "all" for the whole model."""
        return "all" if self.whole_model else str(len(self.kept))


@dataclass
class FloatLayerCost:
    """What keeping one layer float would cost on a full-integer target."""

    layer: str
    ops_off_accelerator: int
    why: str


@dataclass
class SearchResult:
    budget: float  # in points
    requested: str = ""  # --max-drop as given ("0.2", "50%")
    higher_precision: str = ""  # "fp32 (NNCF ignored scope)", or "" where the target has none
    ranked: list[str] = field(default_factory=list)  # the sensitivity order the steps followed
    steps: list[StepResult] = field(default_factory=list)  # step 0: the default artifact
    chosen: str | None = None  # the first artifact within budget
    stopped: str = ""  # why the search ended
    costs: list[FloatLayerCost] = field(default_factory=list)
    remedy: str = ""  # the training-side fix, where mixed precision cannot reach the budget
    fp32_latency_ms: float | None = None  # the FP32 artifact, timed beside the last step (None: not measured here)
    noise: str = ""  # where the search's verdict or a step's gain lies inside the images' noise, in words
    seconds: float = 0.0


# How much slower than FP32 a step must time before the search calls its latency gain gone: the two are medians
# of a few interleaved rounds, and on a busy machine a step with one float layer once timed a little above FP32
# (the onnxruntime test's search stopped before the layer it was after)
LATENCY_NOISE = 0.10


def schedule(max_layers: int) -> list[int]:
    """How many ranked layers each step keeps: 1, 2, 4, ... up to `max_layers` (its own last step)."""
    counts, k = [], 1
    while k < max_layers:
        counts.append(k)
        k *= 2
    return [*counts, max_layers]


def run_search(start: StepResult, ranked: Sequence[str], forced: Sequence[str], budget: float, max_layers: int,
               scheme: QuantScheme, build_step: Callable[[int, list[str]], StepResult],
               fp32_latency_ms: Callable[[], float | None], log: Callable[[str], None],
               requested: str = "") -> SearchResult:
    """Steps from `start` (the default artifact) until one is within `budget`; see the module docstring.
    `fp32_latency_ms()` is the FP32 artifact's latency as last timed beside a step (None: not measured here)."""
    hp = scheme.higher_precision
    result = SearchResult(budget=budget, requested=requested or str(budget),
                          higher_precision=f"{hp.precision} ({hp.how})" if hp else "", ranked=list(ranked),
                          steps=[start])
    start.within_budget = start.drop_map50_95 <= budget
    if start.within_budget:
        result.chosen, result.stopped = start.artifact, "the default artifact is within budget"
        return result
    if hp is None:
        result.stopped = f"no higher precision on this target: {scheme.no_higher_precision_why}"
        result.remedy = scheme.training_remedy
        return result
    if hp.scope == "model":
        return _whole_model_step(result, scheme, build_step, fp32_latency_ms, log)
    if not ranked:
        result.stopped = "no layer left to keep in higher precision"
        return result
    previous = 0
    for count in schedule(min(max_layers, len(ranked))):
        kept = [*forced, *[n for n in ranked[:count] if n not in forced]]
        added = ranked[previous:count]
        previous = count
        log(f"search step {len(result.steps)}: {count} layer(s) in {hp.precision} (adding {', '.join(added[:3])}"
            f"{f' and {len(added) - 3} more' if len(added) > 3 else ''})")
        step = build_step(len(result.steps), kept)
        step.within_budget = step.drop_map50_95 <= budget
        result.fp32_latency_ms = fp32 = fp32_latency_ms()
        result.steps.append(step)
        log(f"search step {step.step}: {step.artifact} mAP50-95 {step.map50_95:.2f}, drop {step.drop_map50_95:.2f}"
            f"{'' if step.latency_ms is None else f', {step.latency_ms:.1f} ms'}")
        if step.within_budget:
            result.chosen, result.stopped = step.artifact, f"within budget with {count} layer(s) kept"
            return result
        if fp32 is not None and step.latency_ms is not None and step.latency_ms >= fp32 * (1 + LATENCY_NOISE):
            result.stopped = (f"latency gain gone: {step.latency_ms:.1f} ms with {count} layer(s) kept, FP32 "
                              f"{fp32:.1f} ms (more than {LATENCY_NOISE:.0%} over it, beyond timing noise)")
            break
    else:
        result.stopped = f"layer limit reached ({min(max_layers, len(ranked))} layers kept, search.max_layers)"
    result.remedy = scheme.training_remedy
    return result


def _whole_model_step(result: SearchResult, scheme: QuantScheme, build_step: Callable[[int, list[str]], StepResult],
                      fp32_latency_ms: Callable[[], float | None], log: Callable[[str], None]) -> SearchResult:
    """The one step of a target whose higher precision is the whole model's: built, evaluated and timed as a
    per-layer step is, within budget or not."""
    hp = scheme.higher_precision
    log(f"search step 1: the whole model in {hp.precision} ({hp.how}): {hp.scope_why}")
    step = build_step(1, [WHOLE_MODEL])
    step.within_budget = step.drop_map50_95 <= result.budget
    result.fp32_latency_ms = fp32 = fp32_latency_ms()
    result.steps.append(step)
    log(f"search step 1: {step.artifact} mAP50-95 {step.map50_95:.2f}, drop {step.drop_map50_95:.2f}"
        f"{'' if step.latency_ms is None else f', {step.latency_ms:.1f} ms'}")
    if step.within_budget:
        result.chosen = step.artifact
        result.stopped = f"within budget with the whole model in {hp.precision} ({hp.how})"
        if fp32 is not None and step.latency_ms is not None and step.latency_ms >= fp32:
            result.stopped += f", but slower than FP32 here ({step.latency_ms:.1f} ms, FP32 {fp32:.1f} ms)"
        return result
    result.stopped = (f"the whole model in {hp.precision} is still over budget (drop {step.drop_map50_95:.2f}); "
                      f"no step in between: {hp.scope_why}")
    result.remedy = scheme.training_remedy
    return result


def float_layer_costs(model, layers: Sequence[str], scheme: QuantScheme) -> list[FloatLayerCost]:
    """For a full-integer target: how many ops leave the accelerator if each layer alone stayed float."""
    if scheme.float_layer_cost is None:
        return []
    graph = model.graph
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for t in node.input:
            consumers.setdefault(t, []).append(i)
    index = {(n.name or f"{n.op_type}_{i}"): i for i, n in enumerate(graph.node)}
    costs = []
    for name in layers:
        if name not in index:
            continue
        if scheme.float_layer_cost == "op":
            costs.append(FloatLayerCost(name, 1, "the op runs on the host CPU, with a dequantize and a quantize "
                                                  "around it and a partition boundary on each side"))
            continue
        seen, todo = {index[name]}, [index[name]]
        while todo:
            for t in graph.node[todo.pop()].output:
                for c in consumers.get(t, []):
                    if c not in seen:
                        seen.add(c)
                        todo.append(c)
        costs.append(FloatLayerCost(name, len(seen), "the compiler cuts the graph at the first float op: it and "
                                                      "everything after it run on the host CPU"))
    return costs
