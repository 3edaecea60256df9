"""The report and the CLI table read each task's metric declarations: labels, formats, and which
way is better."""

from __future__ import annotations

from rich.console import Console

from audiolora.cli import metrics_table
from audiolora.reporting.html import before_after_rows
from audiolora.tasks.registry import get_task

SLU_BASE = {"slu_f1": 0.10, "intent_acc": 0.05, "json_valid_rate": 0.4}
SLU_FINAL = {"slu_f1": 0.25, "intent_acc": 0.03, "json_valid_rate": 0.9}


def test_a_rising_slu_f1_is_marked_better() -> None:
    rows = {row[0]: row for row in before_after_rows(get_task("slu"), SLU_BASE, SLU_FINAL)}
    assert rows["SLU-F1"][1:] == ["0.100", "0.250", "better (higher is better)"]
    assert rows["Intent accuracy"][3] == "worse (higher is better)"
    assert rows["Valid JSON"][2] == "90.0%"


def test_a_falling_wer_is_marked_better() -> None:
    rows = before_after_rows(get_task("stt"), {"wer": 0.3}, {"wer": 0.2})
    assert rows == [["WER", "30.0%", "20.0%", "better (lower is better)"]]


def test_the_cli_held_out_table_shows_slu_metrics() -> None:
    table = metrics_table("Held-out split", {"base": SLU_BASE, "adapted": SLU_FINAL}, "slu")
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "SLU-F1 (higher is better)" in text and "0.250" in text
    assert "Valid JSON" in text and "WER" not in text
