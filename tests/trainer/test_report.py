"""REPORT.md and the plots say what happened: configuration, table, sample answers, stage boundaries."""

from __future__ import annotations

import yaml

from rarl.api.reports import RunMetrics
from rarl.api.validation import parse_job
from rarl_trainer.export import RunSummary, report_markdown, write_reports
from tests.trainer.conftest import REPO


def _summary(**kw) -> RunSummary:
    spec = parse_job(yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())).spec
    return RunSummary("quickstart", spec, [1, 2, 4], **kw)


METRICS = RunMetrics.model_validate({
    "baseline": {"invalid_rate": 1.0, "n1/acc": 0.0},
    "during": [{"global_step": 20, "invalid_rate": 0.5, "n1/mae": 2.0, "n1/srcc": 0.1}],
    "stages": {"regression-warmup": {"end": {"invalid_rate": 0.25, "n1/mae": 1.5, "n1/srcc": 0.3, "n1/plcc": 0.2}},
               "ranking-aware": {"end": {"invalid_rate": 0.0, "n1/mae": 1.25, "n1/srcc": 0.5, "n2/tau": 0.4}}},
})


def test_report_has_configuration_table_and_samples():
    samples = {"baseline": [{"target": [3.0], "pred": None, "completion": "no `tags` here"}],
               "end of ranking-aware": [{"target": [3.0, 1.0], "pred": [3.0, 2.0],
                                         "completion": "<think>x</think><answer>[3, 2]</answer>"}]}
    text = report_markdown(METRICS, _summary(samples=samples, train_seconds=90.0))
    assert "`builtin:tiny-qwen2.5-vl` (full fine-tuning, float32)" in text and "80 steps in 2 stages" in text
    assert "1.5 min of training (all attempts)" in text
    assert "| ranking-aware | grpo | 40 | 1, 2, 4 | 0.005 | 1 | 0.1 |" in text
    assert "| after ranking-aware | 1.250 | - | - | 0.500 | - | 0.400 | - | 0.000 |" in text
    assert "### end of ranking-aware" in text
    assert "- target [3.0, 1.0], predicted [3.0, 2.0]: `<think>x</think><answer>[3, 2]</answer>`" in text
    assert "no 'tags' here" in text  # a backtick in a completion cannot break the markdown
    assert "A '-' is undefined, not zero" in text
    for plot in ("plots/rewards.png", "plots/eval.png", "plots/pred_vs_target.png"):
        assert f"]({plot})" in text


def test_reports_write_every_plot(tmp_path):
    history = [{"global_step": s, "reward": 0.1 * s, "rarl/mutation_rate": 0.5, "stage": "x"} for s in range(1, 81)]
    rows = [{"target": [2.0], "pred": [2.0]}, {"target": [2.0], "pred": [2.0]}, {"target": [4.0], "pred": None}]
    write_reports(tmp_path, METRICS, history, rows, _summary())
    for name in ("rewards.png", "eval.png", "pred_vs_target.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000, name
    assert (tmp_path / "REPORT.md").read_text().startswith("# RARL report: quickstart")


def test_grpo_steps_diagnostics_are_tabled_and_plotted(tmp_path):
    """A drifting stage: its first and last step's bias and spread ratio are in REPORT.md, with the plot."""
    history = [{"global_step": s, "stage": "ranking-aware", "reward": 0.5, "rarl/bias": -0.25 * s,
                "rarl/spread_ratio": 1.0 - 0.1 * s, "rarl/zero_spread_groups": 0.5, "entropy": 0.3}
               for s in range(1, 6)]
    write_reports(tmp_path, METRICS, [{"global_step": 0, "stage": "cold-start", "loss": 1.0}, *history],
                  [{"target": [2.0], "pred": [2.0]}], _summary())
    text = (tmp_path / "REPORT.md").read_text()
    assert "## GRPO step diagnostics" in text
    assert "| ranking-aware | 1 | -0.250 | 0.900 | 0.500 | - | 0.300 |" in text
    assert "| ranking-aware | 5 | -1.250 | 0.500 | 0.500 | - | 0.300 |" in text
    assert "](plots/drift.png)" in text and (tmp_path / "plots" / "drift.png").stat().st_size > 1000
    plain = tmp_path / "sft-only"
    write_reports(plain, METRICS, [{"global_step": 1, "stage": "cold-start", "loss": 1.0}], [], _summary())
    assert "diagnostics" not in (plain / "REPORT.md").read_text() and not (plain / "plots" / "drift.png").exists()
