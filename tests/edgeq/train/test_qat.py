"""`edgeq qat` refusals that need no quantizer library, and the torch decode head it trains through."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest


def test_qat_refuses_the_tflite_family_and_names_its_training_fix(cli, tmp_path):
    code, _, err = cli("qat", "--target", "edgetpu", "--out", str(tmp_path / "o"))
    assert code == 2 and "offers no quantization-aware training" in err and "edgeq adapt --activation relu6" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(importlib.util.find_spec("nncf") is not None, reason="NNCF is installed here")
def test_qat_without_the_quantizer_library_says_which_extra(cli, tmp_path):
    code, _, err = cli("qat", "--target", "openvino", "--out", str(tmp_path / "o"))
    assert code == 2 and "needs nncf" in err and "edgeq[openvino]" in err


def test_torch_decode_head_matches_the_onnx_head(demo_pt, tmp_path):
    """The head QAT trains through must be the head that ships: same ops, same numbers."""
    import onnxruntime as ort
    import torch

    from edgeq.head import HeadLayout, build_decode_head
    from edgeq.model import load_detector
    from edgeq.train.head import DecodeHead

    spec = load_detector(demo_pt).head
    rng = np.random.default_rng(0)
    logits = [rng.normal(0, 3, (1, 4 * spec.reg_max if i % 2 == 0 else spec.nc, h, w)).astype(np.float32)
              for (h, w) in spec.grids for i in range(2)]
    onnx_head = build_decode_head(spec, HeadLayout.PIXEL, 17, 8)
    session = ort.InferenceSession(onnx_head.SerializeToString())
    expected = session.run(None, dict(zip(spec.body_outputs, logits)))[0]
    with torch.no_grad():
        got = DecodeHead(spec)(*[torch.from_numpy(x) for x in logits]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
