"""The tasks a recipe can name (`task: stt`): one line per task.

Adding a task is its module (a `Task` subclass with its config section and metrics), its tests,
and one line here; the config, run, report, sweeps and CLI pick it up from this table.
"""

from __future__ import annotations

from audiolora.tasks.base import Task
from audiolora.tasks.contrastive import Contrastive
from audiolora.tasks.paralinguistic import Paralinguistic
from audiolora.tasks.slu import SpokenLanguageUnderstanding
from audiolora.tasks.stt import SpeechToText
from audiolora.tasks.temporal import TemporalLocalization

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        SpeechToText(),
        TemporalLocalization(),
        SpokenLanguageUnderstanding(),
        Paralinguistic(),
        Contrastive(),
    )
}


def get_task(name: str) -> Task:
    """The task a recipe names."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    return TASKS[name]
