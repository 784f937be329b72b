"""The demo report: every probed label and both encoders appear, plots are written."""

from __future__ import annotations

from pathlib import Path

from flows.report import write_report


def _probe(accuracy: float) -> dict:
    return {"accuracy": accuracy, "accuracy_std": 0.02, "best_lr": 1e-3, "heldout_clips": 144}


def test_report_lists_every_probe_label_for_both_encoders(tmp_path: Path) -> None:
    stages = {
        "curate": {"num_sources": 8, "num_clips": 24, "num_rejected": 1, "version": "abc"},
        "pretrain": {"steps": 3, "first_loss": 0.5, "final_loss": 0.2, "checkpoint": "enc"},
        "probes": {
            "shape": {"pretrained": _probe(0.71), "random": _probe(0.52)},
            "direction": {"pretrained": _probe(0.83), "random": _probe(0.86)},
        },
        "posttrain": {
            "steps": 5,
            "final_loss": 0.1,
            "heldout_rollout_error": 0.03,
            "heldout_copy_error": 0.04,
        },
        "planning": {
            "success_rate": 0.9,
            "mean_final_distance": 0.06,
            "random_success_rate": 0.3,
            "random_mean_final_distance": 0.38,
        },
    }
    report = Path(write_report(str(tmp_path / "report"), stages))
    text = report.read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| shape", "| direction"))]
    assert len(rows) == 4
    assert "| shape | pretrained | 0.71 |" in text and "| direction | random init | 0.86 |" in text
    assert (report.parent / "comparison.png").stat().st_size > 1000
