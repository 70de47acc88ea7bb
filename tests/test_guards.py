"""Guards that must trip: each test here fails when the thing it guards is broken on purpose.

Each break below was made alone on a copy of the tree and the named tests run against it
(the script is in docs/architecture.md, "Tests that can fail"); every test listed failed:

- KD loss without T² (``kd_kl_loss`` returning the bare KL): ``test_kd_soft_term_carries_t_squared``
  here; ``test_kd_loss.py``: ``test_kd_matches_hand_computation`` (every T ≠ 1),
  ``test_t_squared_keeps_gradient_scale``, ``test_ensemble_teacher_averages_softened_distributions``.
- parity bound loosened (``Bounds.fp32_max_abs_diff`` 2e-3 → 2e-2): ``test_parity_bound_rejects_a_drifted_fp32_file``.
- parity bound ignored (the max |Δlogit| test dropped from ``Task.parity_problems``):
  ``test_parity_bound_rejects_a_drifted_fp32_file`` here and
  ``test_export.py::test_parity_failure_exits_nonzero_but_writes_the_bundle``.
- manifest hash not checked (``verify_bundle`` skipping the sha256 comparison):
  ``test_verify_catches_a_same_size_change`` here, ``test_export.py::test_verify_detects_tampering``
  and ``test_bench.py::test_tampered_or_missing_bundle_is_refused``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest


def test_kd_soft_term_carries_t_squared() -> None:
    import torch

    from edgekd.train.methods import kd_kl_loss

    zs, zt = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.5]])
    t = 4.0
    ps, pt = torch.softmax(zs / t, 1), torch.softmax(zt / t, 1)
    kl = float((pt * (pt.log() - ps.log())).sum())
    assert kd_kl_loss(zs, zt, t).item() == pytest.approx(t * t * kl, rel=1e-5)
    assert not math.isclose(kd_kl_loss(zs, zt, t).item(), kl, rel_tol=0.5)


def test_parity_bound_rejects_a_drifted_fp32_file() -> None:
    from edgekd.exporters.parity import Bounds, out_of_bounds, parity_metrics

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(50, 10)).astype(np.float32) * 5
    labels = reference.argmax(1)
    close = parity_metrics(reference + 1e-3, reference, labels)
    drifted = parity_metrics(reference + 3e-3, reference, labels)  # same decisions, logits 1.5× the bound off
    assert out_of_bounds("tflite_fp32", close, Bounds()) == []
    assert any("max |Δlogit|" in p for p in out_of_bounds("tflite_fp32", drifted, Bounds()))
    assert out_of_bounds("tflite_int8", drifted, Bounds()) == []  # a quantized format is bounded by agreement instead
    flipped = reference.copy()
    flipped[:2] = -flipped[:2]  # 2 of 50 decisions change: 96 % agreement
    assert any(
        "agreement" in p for p in out_of_bounds("tflite_int8", parity_metrics(flipped, reference, labels), Bounds())
    )


def test_verify_catches_a_same_size_change(tmp_path: Path) -> None:
    from edgekd.bundle import FORMAT, MANIFEST, file_record, verify_bundle

    model = tmp_path / "student_int8.tflite"
    model.write_bytes(bytes(range(256)))
    (tmp_path / MANIFEST).write_text(json.dumps({"format": FORMAT, "files": {model.name: file_record(model)}}))
    assert verify_bundle(tmp_path).passed
    data = bytearray(model.read_bytes())
    data[100] ^= 1  # one bit: same size, other content
    model.write_bytes(bytes(data))
    result = verify_bundle(tmp_path)
    assert not result.passed and result.bad == ["student_int8.tflite: sha256 mismatch (file altered or corrupt)"]
