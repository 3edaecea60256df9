"""Temporal task pieces: window prompts and targets, outside windows, session-level search."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, PretrainedConfig, Qwen2AudioForConditionalGeneration

from audiolora.config import AdapterConfig
from audiolora.data.sessions import BOUNDARIES, SessionRecord, Word, read_sessions
from audiolora.data.windows import Window
from audiolora.models.adapters import attach_adapters
from audiolora.models.families import QWEN2_AUDIO
from audiolora.models.heads.regression import OffsetRegressor, hidden_size_of
from audiolora.tasks.temporal import TemporalConfig, search
from audiolora.tasks.temporal.search import locate_boundaries, session_errors, session_metrics
from audiolora.tasks.temporal.windows import (
    WindowCollator,
    WindowDataset,
    offset_prior,
    outside_windows,
    predict_offsets_shared,
    predict_offsets_shared_many,
    training_windows,
    window_instruction,
)

ANY_HEAD = SimpleNamespace(
    boundaries=list(BOUNDARIES),
    family=QWEN2_AUDIO,
    backbone=SimpleNamespace(config=PretrainedConfig()),
)
"""Stands for the model where `predict_offsets` is replaced: only its output names and its
attention (whether prompts can share a prefix) are read."""


def sessions(tiny_sessions: Path, split: str = "train", window_s: float = 20) -> list:
    found, problems = read_sessions(
        tiny_sessions / f"{split}.jsonl", window_s=window_s, boundaries=BOUNDARIES
    )
    assert not problems
    return found


def test_instruction_names_the_boundary_and_lists_the_window_words() -> None:
    window = Window(0, "P2_start", 10.0, 30.0, 0.5, ("i", "walk"))
    text = window_instruction(window, transcript=True)
    assert "imaginal exposure narrative (P2) begin" in text and "30-second" in text
    assert text.endswith("Transcript: i walk")
    assert "Transcript" not in window_instruction(window, transcript=False)
    empty = Window(0, "P2_start", 10.0, 30.0, 0.5, ())
    assert window_instruction(empty, transcript=True).endswith("(no speech)")
    last = window_instruction(window, transcript=True, question_last=True).split("\n")
    assert last[0].startswith("Answer with a position in this 30-second window")
    assert last[1:] == [
        "Transcript: i walk",
        "Where does the imaginal exposure narrative (P2) begin?",
    ]


def test_window_items_carry_the_exact_target_and_split_long_windows(
    tiny_sessions: Path, tiny_qwen2_audio_dir: Path
) -> None:
    processor = AutoProcessor.from_pretrained(tiny_qwen2_audio_dir)
    found = sessions(tiny_sessions, window_s=45)
    windows = [Window(0, "P2_start", 2.0, 45.0, 0.2889, ("hello",))]
    item = WindowDataset(QWEN2_AUDIO, found, windows, processor)[0]
    assert item["targets"].item() == pytest.approx(0.2889)
    assert item["input_features"].shape[0] == 2, "45 s = a 30 s and a 15 s segment"
    batch = WindowCollator(QWEN2_AUDIO, processor)([item, item])
    assert batch["targets"].tolist() == pytest.approx([0.2889, 0.2889])
    assert batch["input_features"].shape[0] == 4


@pytest.mark.parametrize("question_last", [False, True])
def test_a_window_read_once_for_all_its_questions_gives_the_items_read_one_by_one(
    tiny_sessions: Path, tiny_qwen2_audio_dir: Path, question_last: bool
) -> None:
    processor = AutoProcessor.from_pretrained(tiny_qwen2_audio_dir)
    found = sessions(tiny_sessions, window_s=45)
    windows = [Window(0, name, 2.0, 45.0, 0.5, ("hello",)) for name in BOUNDARIES]
    dataset = WindowDataset(QWEN2_AUDIO, found, windows, processor, question_last=question_last)
    once = dataset.same_window_items(range(len(windows)))
    for index, item in enumerate(once):
        alone = dataset[index]
        assert item.keys() == alone.keys()
        assert all(torch.equal(item[key], alone[key]) for key in alone)
    elsewhere = WindowDataset(
        QWEN2_AUDIO, found, [windows[0], Window(0, "P1_end", 3.0, 45.0, 0.5, ())], processor
    )
    with pytest.raises(ValueError, match="covers other audio"):
        elsewhere.same_window_items([0, 1])


def test_a_window_whose_prompts_reencode_otherwise_is_read_item_by_item(
    tiny_sessions: Path, tiny_qwen2_audio_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where expanding the placeholders would not give the processor's tokens (a tokenizer
    adding tokens of its own), every item is encoded anew rather than wrongly reused."""
    processor = AutoProcessor.from_pretrained(tiny_qwen2_audio_dir)
    found = sessions(tiny_sessions, window_s=45)
    windows = [Window(0, name, 2.0, 45.0, 0.5, ("hello",)) for name in BOUNDARIES[:2]]
    dataset = WindowDataset(QWEN2_AUDIO, found, windows, processor)
    monkeypatch.setattr(
        type(QWEN2_AUDIO), "expand_audio_placeholders", lambda *_: torch.tensor([[1, 2, 3]])
    )
    once = dataset.same_window_items([0, 1])
    assert all(
        torch.equal(item["input_ids"], dataset[i]["input_ids"]) for i, item in enumerate(once)
    )


def test_text_only_windows_hold_the_transcript_and_no_audio(
    tiny_sessions: Path, tiny_qwen2_audio_dir: Path
) -> None:
    processor = AutoProcessor.from_pretrained(tiny_qwen2_audio_dir)
    found = sessions(tiny_sessions, window_s=45)
    windows = [Window(0, "P2_start", 2.0, 45.0, 0.2889, ("hello", "there"))]
    with_audio = WindowDataset(QWEN2_AUDIO, found, windows, processor)[0]
    item = WindowDataset(QWEN2_AUDIO, found, windows, processor, audio=False)[0]
    assert item["input_features"].shape[0] == 0, "no audio segment in a text-only prompt"
    audio_id = processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    assert audio_id not in item["input_ids"].tolist()
    assert "Transcript: hello there" in processor.tokenizer.decode(item["input_ids"])
    assert len(item["input_ids"]) < len(with_audio["input_ids"])
    assert item["targets"].item() == pytest.approx(0.2889)
    with pytest.raises(ValueError, match="nothing to localize from"):
        TemporalConfig(audio=False, transcript=False)


def test_offset_prior_averages_each_boundary_type_over_inside_windows_only(
    tiny_sessions: Path,
) -> None:
    windows = [
        Window(0, "P1_start", 0.0, 30.0, 0.1),
        Window(1, "P1_start", 0.0, 30.0, 0.3),
        Window(0, "P2_end", 100.0, 30.0, 0.6),
        Window(0, "P2_end", 50.0, 30.0, 1.0, inside=False),  # misses it: says nothing of offsets
    ]
    assert offset_prior(windows) == pytest.approx({"P1_start": 0.2, "P2_end": 0.6})
    found = sessions(tiny_sessions)
    assert not any(w.inside for w in outside_windows(found, 20, 20.0, BOUNDARIES, random.Random(0)))


def test_outside_windows_miss_their_boundary_and_say_on_which_side(tiny_sessions: Path) -> None:
    found = sessions(tiny_sessions)
    windows = outside_windows(found, 200, 20.0, BOUNDARIES, random.Random(0))
    assert len(windows) == 200
    for w in windows:
        t = found[w.session].boundaries[w.boundary]
        assert w.start >= 0 and w.start + w.length <= found[w.session].duration + 1e-9
        if w.offset == 1.0:
            assert w.start + w.length <= t + 1e-9, "target 1: the boundary comes after"
        else:
            assert w.offset == 0.0 and w.start >= t - 1e-9, "target 0: it came before"
    assert {w.offset for w in windows} == {0.0, 1.0}


def test_training_windows_add_the_outside_share(tiny_sessions: Path) -> None:
    found = sessions(tiny_sessions)
    cfg = TemporalConfig(window_s=20, windows_per_boundary=3, outside_fraction=0.25)
    windows = training_windows(found, cfg, seed=1)
    inside = [w for w in windows if 0 < w.offset < 1]
    assert len(windows) == 48  # 2 sessions x 6 boundaries x 3 + a third as many outside
    assert len(inside) >= 30
    assert training_windows(found, cfg, seed=1) == windows
    none = training_windows(found, cfg.model_copy(update={"outside_fraction": 0.0}), seed=1)
    assert len(none) == 36


def oracle_offsets(model: object, dataset: WindowDataset, **_: object) -> list[float]:
    """What a perfect head says: the clamped true offset of each window."""
    out = []
    for w in dataset.windows:
        t = dataset.sessions[w.session].boundaries[w.boundary]
        out.append(min(max((t - w.start) / w.length, 0.0), 1.0))
    return out


def use_head(monkeypatch: pytest.MonkeyPatch, answer: object) -> None:
    """Both prediction paths of the search (one prompt at a time, shared prefix) answer by
    `answer(model, dataset)`, which reads the windows in the dataset's own order."""
    monkeypatch.setattr(search, "predict_offsets", answer)
    monkeypatch.setattr(search, "predict_offsets_shared", answer)


def test_session_search_finds_every_boundary_with_a_perfect_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_head(monkeypatch, oracle_offsets)
    truth = {
        "P1_start": 3.0,
        "P1_end": 61.0,
        "P2_start": 64.5,
        "P2_end": 190.2,
        "P3_start": 192.0,
        "P3_end": 280.0,
    }
    session = SessionRecord(1, Path("x.wav"), 283.0, truth, (Word("a", 1.0, 1.2),))
    found = locate_boundaries(ANY_HEAD, None, session, BOUNDARIES, window_s=30, hop_s=15)  # type: ignore[arg-type]
    for name, t in truth.items():
        assert found[name]["time_s"] == pytest.approx(t, abs=1e-6)
        assert abs(found[name]["coarse_s"] - t) < 1e-6
    metrics = session_metrics([{n: abs(found[n]["time_s"] - t) for n, t in truth.items()}])
    assert metrics["mae_s"] == pytest.approx(0.0, abs=1e-6) and metrics["count"] == 6


def test_session_search_refines_a_coarse_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    """A head that shrinks offsets toward the centre (right only at the centre itself): the
    coarse estimate is off, and the re-centred second pass brings it closer."""
    truth = {"P2_start": 100.0}

    def centre_biased(model: object, dataset: WindowDataset, **_: object) -> list[float]:
        exact = oracle_offsets(model, dataset)
        return [0.5 + (p - 0.5) * 0.6 for p in exact]

    use_head(monkeypatch, centre_biased)
    session = SessionRecord(1, Path("x.wav"), 300.0, truth)
    found = locate_boundaries(ANY_HEAD, None, session, ["P2_start"], window_s=30, hop_s=15)  # type: ignore[arg-type]
    coarse_error = abs(found["P2_start"]["coarse_s"] - 100.0)
    assert coarse_error > 1.0  # window at 90 s: true 0.333 -> said 0.4 -> 102 s
    assert abs(found["P2_start"]["time_s"] - 100.0) < coarse_error / 2


def skewed_refining(model: object, dataset: WindowDataset, **_: object) -> list[float]:
    """Exact in the coarse pass (more than two windows asked); in the re-centred windows
    P1_end is said late and P2_start early."""
    if len(dataset) > 2:
        return oracle_offsets(model, dataset)
    late = {"P1_end": 0.9, "P2_start": 0.1}
    return [late[w.boundary] for w in dataset.windows]


def test_a_wrong_recentred_answer_is_outvoted_by_the_coarse_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The re-centred window's answer joins the coarse windows' vote: two coarse windows that
    see P1_end at 61 s outvote one re-centred window that says 73 s."""
    truth = {"P1_end": 61.0, "P2_start": 63.0}  # refining windows at 46 and 48 s: not coarse
    use_head(monkeypatch, skewed_refining)
    session = SessionRecord(1, Path("x.wav"), 200.0, truth)
    names = ["P2_start", "P1_end"]  # any order: the search sorts them by phase
    found = locate_boundaries(ANY_HEAD, None, session, names, window_s=30, hop_s=15)  # type: ignore[arg-type]
    for name, t in truth.items():
        assert found[name]["time_s"] == pytest.approx(t)
    assert found["P1_end"]["window_start_s"] == 46.0
    assert found["P1_end"]["refined_offset"] == 0.9  # asked, and outvoted


def test_fill_in_asks_the_window_half_a_hop_over_that_holds_each_estimate() -> None:
    """Windows that touch (hop = window): the window between two coarse ones whose centre is
    nearest each estimate votes before the re-centring; a perfect head stays exact."""
    truth = {"P2_start": 100.0, "P2_end": 200.0}
    names = list(truth)
    length, starts = search.coarse_grid(300.0, 30, 30)
    assert starts[:4] == [0.0, 30.0, 60.0, 90.0]
    said = np.clip((np.array([[truth[n]] for n in names]) - np.array(starts)) / length, 0, 1)
    asked: list[list[tuple[str, float]]] = []

    def ask(pairs: list[tuple[str, float]]) -> list[float]:
        asked.append(pairs)
        return [min(max((truth[name] - start) / length, 0.0), 1.0) for name, start in pairs]

    found = search.search_session(300.0, names, starts, length, said, ask, fill_in=True)
    # centres 90 s (window 75) and 210 s (window 195) are the nearest to 100 s and 200 s
    assert asked[0] == [("P2_start", 75.0), ("P2_end", 195.0)]
    assert asked[1] == [("P2_start", 85.0), ("P2_end", 185.0)]  # then re-centred
    for name, t in truth.items():
        assert found[name]["time_s"] == pytest.approx(t)
    asked.clear()
    search.search_session(300.0, names, starts, length, said, ask)
    assert asked == [[("P2_start", 85.0), ("P2_end", 185.0)]]  # without: re-centred only


def test_fill_in_outvotes_a_confused_coarse_window() -> None:
    """Windows that touch: the only coarse window holding the boundary (110 s) is confused and
    says 93 s. The re-centred window alone contradicts it, a tie the vote breaks at 93 s; the
    in-between window that fill-in adds sides with the re-centred one."""
    truth = 110.0
    length, starts = search.coarse_grid(300.0, 30, 30)
    said = np.clip((truth - np.array(starts)) / length, 0, 1)[None, :]
    said[0, starts.index(90.0)] = 0.1
    asked: list[list[tuple[str, float]]] = []

    def ask(pairs: list[tuple[str, float]]) -> list[float]:
        asked.append(pairs)
        return [min(max((truth - start) / length, 0.0), 1.0) for _, start in pairs]

    plain = search.search_session(300.0, ["P2_start"], starts, length, said, ask)["P2_start"]
    assert plain["time_s"] == pytest.approx(93.0) and "filled_s" not in plain
    asked.clear()
    filled = search.search_session(300.0, ["P2_start"], starts, length, said, ask, fill_in=True)
    assert asked == [[("P2_start", 75.0)], [("P2_start", 78.0)]]
    assert abs(filled["P2_start"]["time_s"] - truth) <= 5.0
    assert filled["P2_start"]["coarse_s"] == pytest.approx(93.0)  # the coarse pass's, kept


def test_fill_in_windows_lie_between_the_actual_coarse_windows() -> None:
    """A recording the hop does not divide: the last coarse window is pulled back to end with
    the recording (starts 0, 30, 60, 70), and the window between 60 and 70 (65-95 s) is the
    one that holds a boundary at 90 s."""
    length, starts = search.coarse_grid(100.0, 30, 30)
    assert starts == [0.0, 30.0, 60.0, 70.0]
    said = np.clip((90.0 - np.array(starts)) / length, 0, 1)[None, :]
    asked: list[list[tuple[str, float]]] = []

    def ask(pairs: list[tuple[str, float]]) -> list[float]:
        asked.append(pairs)
        return [min(max((90.0 - start) / length, 0.0), 1.0) for _, start in pairs]

    found = search.search_session(100.0, ["P3_end"], starts, length, said, ask, fill_in=True)
    assert asked[0] == [("P3_end", 65.0)]
    assert found["P3_end"]["time_s"] == pytest.approx(90.0)


def test_refined_boundaries_stay_in_phase_order() -> None:
    """Without the final vote (`revote=False`, the re-centred answers alone) the refining pass
    would put P1_end after P2_start; the result keeps the phases in order. The search runs on
    answers given directly (`search_session`): an exact coarse pass, the skewed refining one."""
    truth = {"P1_end": 61.0, "P2_start": 63.0}
    session = SessionRecord(1, Path("x.wav"), 200.0, truth)
    length, starts = search.coarse_grid(session.duration, 30, 15)
    names = ["P1_end", "P2_start"]
    said = np.clip((np.array([[truth[n]] for n in names]) - np.array(starts)) / length, 0, 1)
    answers = {"P1_end": 0.9, "P2_start": 0.1}

    def ask(pairs: list[tuple[str, float]]) -> list[float]:
        return [answers[name] for name, _ in pairs]

    found = search.search_session(200.0, names, starts, length, said, ask, revote=False)
    assert found["P1_end"]["time_s"] == pytest.approx(73.0)  # 46 + 0.9 * 30
    assert found["P2_start"]["time_s"] == pytest.approx(73.0)  # 48 + 0.1 * 30 = 51, raised


@pytest.mark.parametrize("share_prefix", [True, False], ids=["shared", "one-by-one"])
def test_refining_asks_only_windows_the_coarse_pass_did_not(
    monkeypatch: pytest.MonkeyPatch, share_prefix: bool
) -> None:
    """P1_start near the recording's start is re-centred on the coarse window at 0 s (asked
    already: reused); P1_end and P2_start meet at 100 s, so their re-centred windows coincide
    and share one pass; only P3_end's window is new besides. The answers are the same as a
    fresh question of each window would get (a perfect head)."""
    truth = {"P1_start": 3.0, "P1_end": 100.0, "P2_start": 100.0, "P3_end": 250.0}
    asked: list[list[tuple[str, float]]] = []

    def recording(model: object, dataset: WindowDataset, **_: object) -> list[float]:
        asked.append([(w.boundary, w.start) for w in dataset.windows])
        return oracle_offsets(model, dataset)

    use_head(monkeypatch, recording)
    session = SessionRecord(1, Path("x.wav"), 283.0, truth)
    found = locate_boundaries(
        ANY_HEAD, None, session, list(truth), window_s=30, hop_s=15, share_prefix=share_prefix
    )  # type: ignore[arg-type]
    refined = sorted(pair for call in asked[1:] for pair in call)
    assert refined == [("P1_end", 85.0), ("P2_start", 85.0), ("P3_end", 235.0)]
    if share_prefix:  # one pass per new window: [P1_end, P2_start] at 85 s, then P3_end
        assert sorted(len(call) for call in asked[1:]) == [1, 2]
    for name, t in truth.items():
        assert found[name]["time_s"] == pytest.approx(t, abs=1e-6)


def test_session_metrics_are_seconds_per_boundary_type() -> None:
    m = session_metrics([{"P1_start": 2.0, "P2_start": 8.0}, {"P1_start": 4.0}])
    assert m["mae_s"] == pytest.approx(14 / 3)
    assert m["P1_start/mae_s"] == pytest.approx(3.0)
    assert m["within_5s"] == pytest.approx(2 / 3)
    assert session_metrics([]) == {}


def test_one_confused_window_cannot_move_the_session_estimate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A window far from the boundary that says 0.5 looks perfectly 'central'; the other
    windows outvote it."""
    truth = {"P2_start": 100.0}

    def one_confused(model: object, dataset: WindowDataset, **_: object) -> list[float]:
        exact = oracle_offsets(model, dataset)
        return [0.5 if w.start == 240.0 else p for w, p in zip(dataset.windows, exact, strict=True)]

    use_head(monkeypatch, one_confused)
    session = SessionRecord(1, Path("x.wav"), 300.0, truth)
    found = locate_boundaries(ANY_HEAD, None, session, ["P2_start"], window_s=30, hop_s=15)  # type: ignore[arg-type]
    assert found["P2_start"]["coarse_s"] == pytest.approx(100.0, abs=1e-6)
    assert found["P2_start"]["time_s"] == pytest.approx(100.0, abs=1e-6)
    said = dict(map(tuple, found["P2_start"]["coarse_pass"]))
    assert said[240.0] == 0.5 and said[90.0] == pytest.approx(1 / 3, abs=1e-4)


def test_ordered_search_is_the_best_ordered_choice() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        costs = rng.random((3, 7))
        picks = search.ordered_argmin(costs)
        assert list(picks) == sorted(picks)
        best = min(
            costs[0, a] + costs[1, b] + costs[2, c]
            for a in range(7)
            for b in range(a, 7)
            for c in range(b, 7)
        )
        assert costs[[0, 1, 2], picks].sum() == pytest.approx(best)
    # each row alone would pick out of order (row 0 late, row 1 early): order wins
    costs = np.array([[5.0, 5.0, 0.0], [0.0, 5.0, 5.0]])
    assert list(search.ordered_argmin(costs)) in ([0, 0], [2, 2])


def test_phase_prior_is_the_mean_share_of_the_recording() -> None:
    a = SessionRecord(1, Path("a.wav"), 100.0, {"P1_end": 20.0, "P2_start": 25.0})
    b = SessionRecord(2, Path("b.wav"), 200.0, {"P1_end": 60.0})
    prior = search.phase_prior([a, b], ["P1_end", "P2_start", "P3_end"])
    assert prior == pytest.approx({"P1_end": 0.25, "P2_start": 0.25})  # P3_end: never annotated


def test_shared_prefix_search_finds_what_the_one_by_one_search_finds(
    tiny_sessions: Path, tiny_qwen2_audio_dir: Path
) -> None:
    """The fast coarse pass (each window's audio and prompt beginning once for all six
    boundary questions) returns the same answers and boundaries as one prompt at a time."""
    torch.manual_seed(0)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio_dir)
    QWEN2_AUDIO.configure(model, None)
    backbone = attach_adapters(model, AdapterConfig(r=4, dropout=0.0), QWEN2_AUDIO, 10)
    for name, p in backbone.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)
    head = OffsetRegressor(backbone, QWEN2_AUDIO, hidden_size_of(model), boundaries=BOUNDARIES)
    torch.nn.init.normal_(head.head.weight, std=0.5)
    head.eval()
    processor = AutoProcessor.from_pretrained(tiny_qwen2_audio_dir)
    session = sessions(tiny_sessions, "eval")[0]
    for question_last in (False, True):
        found = {
            shared: locate_boundaries(
                head, processor, session, BOUNDARIES, window_s=20, hop_s=10,
                share_prefix=shared, question_last=question_last,
            )
            for shared in (True, False)
        }  # fmt: skip
        same_search(found[True], found[False])


def test_coarse_passes_of_several_recordings_spread_over_processes_equal_each_alone(
    tiny_sessions: Path, tiny_qwen2_audio_dir: Path
) -> None:
    """What `audiolora predict --sessions` does by default on a CPU: every recording's coarse
    windows in one list over forked single-thread workers; the answers are each recording's
    own pass in this process, and feeding them to the search changes nothing."""
    torch.manual_seed(0)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio_dir)
    QWEN2_AUDIO.configure(model, None)
    backbone = attach_adapters(model, AdapterConfig(r=4, dropout=0.0), QWEN2_AUDIO, 10)
    head = OffsetRegressor(backbone, QWEN2_AUDIO, hidden_size_of(model), boundaries=BOUNDARIES)
    torch.nn.init.normal_(head.head.weight, std=0.5)
    head.eval()
    processor = AutoProcessor.from_pretrained(tiny_qwen2_audio_dir)
    recordings = sessions(tiny_sessions, "train") + sessions(tiny_sessions, "eval")
    options = {"window_s": 20, "hop_s": 10, "question_last": True}
    datasets = [
        search.coarse_pass_windows(head, processor, r, BOUNDARIES, **options) for r in recordings
    ]
    spread = predict_offsets_shared_many(head, datasets, group=6, workers=2, progress=False)
    alone = [predict_offsets_shared(head, d, group=6, progress=False) for d in datasets]
    assert [len(a) for a in spread] == [len(d) for d in datasets]
    assert np.concatenate(spread) == pytest.approx(np.concatenate(alone), abs=1e-5)
    first = (head, processor, recordings[0], BOUNDARIES)
    given = locate_boundaries(*first, **options, coarse=spread[0])
    asked = locate_boundaries(*first, **options)
    same_search(given, asked)
    # The answers given are the ones used, and they must fit the pass.
    halves = locate_boundaries(*first, **options, coarse=[0.5] * len(spread[0]))
    assert {q for name in BOUNDARIES for _, q in halves[name]["coarse_pass"]} == {0.5}
    with pytest.raises(ValueError, match="answers given"):
        locate_boundaries(*first, **options, coarse=spread[0][:-1])


def same_search(fast_search: dict, slow_search: dict) -> None:
    for name in BOUNDARIES:
        fast, slow = fast_search[name], slow_search[name]
        assert np.asarray(fast["coarse_pass"]) == pytest.approx(
            np.asarray(slow["coarse_pass"]), abs=2e-4
        )
        assert fast["time_s"] == pytest.approx(slow["time_s"], abs=0.01)
        assert fast["coarse_s"] == pytest.approx(slow["coarse_s"], abs=0.01)


def test_a_phase_found_shorter_than_min_phase_s_is_reported_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The head answers as if P1 had no length (start = end = 40 s); with `min_phase_s` the
    search reports P1 absent instead of forcing it, and presence mistakes are counted apart
    from the MAE."""
    belief = {"P1_start": 40.0, "P1_end": 40.0, "P2_start": 64.5, "P2_end": 190.2,
              "P3_start": 192.0, "P3_end": 280.0}  # fmt: skip
    heard = SessionRecord(1, Path("x.wav"), 283.0, belief)

    def head(model: object, dataset: WindowDataset, **_: object) -> list[float]:
        dataset.sessions = [heard]
        return oracle_offsets(model, dataset)

    use_head(monkeypatch, head)
    without_p1 = {k: v for k, v in belief.items() if not k.startswith("P1")}
    absent = SessionRecord(1, Path("x.wav"), 283.0, without_p1,
                           absent=frozenset({"P1_start", "P1_end"}))  # fmt: skip
    found = locate_boundaries(ANY_HEAD, None, absent, BOUNDARIES, window_s=30, hop_s=15,
                              min_phase_s=5.0)  # type: ignore[arg-type]  # fmt: skip
    assert found["P1_start"]["time_s"] is None and found["P1_end"]["time_s"] is None
    assert found["P2_start"]["time_s"] == pytest.approx(64.5, abs=1e-6)
    agreed = session_errors(found, absent)
    assert "P1_start" not in agreed and agreed["P2_start"] == pytest.approx(0, abs=1e-6)

    present = SessionRecord(1, Path("x.wav"), 283.0, {**belief, "P1_start": 10.0, "P1_end": 38.0})
    missed = session_errors(found, present)
    assert missed["P1_start"] == missed["P1_end"] == "missed"
    forced = locate_boundaries(ANY_HEAD, None, absent, BOUNDARIES, window_s=30, hop_s=15)  # type: ignore[arg-type]
    invented = session_errors(forced, absent)
    assert invented["P1_start"] == "invented"
    metrics = session_metrics([missed, invented])
    assert metrics["missed"] == 2 and metrics["invented"] == 2
    assert metrics["count"] == 8  # the timed P2/P3 boundaries of both sessions only


def test_any_order_search_finds_reordered_phases(monkeypatch: pytest.MonkeyPatch) -> None:
    use_head(monkeypatch, oracle_offsets)
    truth = {"P2_start": 5.0, "P2_end": 100.0, "P1_start": 104.0, "P1_end": 160.0,
             "P3_start": 165.0, "P3_end": 270.0}  # fmt: skip
    session = SessionRecord(1, Path("x.wav"), 280.0, truth, phase_order=("P2", "P1", "P3"))
    found = locate_boundaries(ANY_HEAD, None, session, BOUNDARIES, window_s=30, hop_s=15,
                              any_order=True)  # type: ignore[arg-type]  # fmt: skip
    for name, t in truth.items():
        assert found[name]["time_s"] == pytest.approx(t, abs=1e-6), name
    assert found["P1_start"]["phase_order"] == ["P2", "P1", "P3"]
    usual = locate_boundaries(ANY_HEAD, None, session, BOUNDARIES, window_s=30, hop_s=15)  # type: ignore[arg-type]
    assert max(abs(usual[n]["time_s"] - t) for n, t in truth.items()) > 30  # forced P1 first
