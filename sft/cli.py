"""The `sft` command line: parse options, build the config, call one function a command.

TensorFlow is imported inside the commands that need it, so `sft --help` stays fast.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path

import click

from sft import __version__, hardware, startup
from sft.errors import SftError, one_line


class _Group(click.Group):
    """Turns `SftError`s into one line on stderr and their exit code; no traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SftError as e:
            click.echo(f"error: {one_line(str(e))}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


def echo_json(value, indent: int | None = 2) -> None:
    """`value` as JSON on stdout; NaN and infinities are refused, never printed (they are not JSON)."""
    click.echo(json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False))


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
config_option = click.option("--config", "config_path", help="YAML config file.")
set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. train.epochs=2."
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sft")
def main():
    """Fine-tune TF Hub BERT encoders into intent, dialogue-act and sentiment classifiers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger = logging.getLogger("sft")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False  # TensorFlow installs a root handler of its own: one line, not two


@main.command()
@config_option
@set_option
@click.option("--out", type=click.Path(file_okay=False), help="Prepared-data folder [default: data.prepared_dir].")
@click.option("--overwrite", is_flag=True, help="Replace an existing prepared-data folder.")
@click.option("--strict", is_flag=True,
              help="Fail on the first bad row (ragged, undecodable, empty text or label) instead of dropping and counting it.")
@json_option
def prepare(config_path, overrides, out, overwrite, strict, as_json):
    """Clean, de-duplicate and split raw dialogue files (CSV, TSV, JSON Lines) into a prepared-data folder.

    Writes train/validation/test.jsonl, labels.json and report.json; prints a summary of the report.
    """
    from sft.config import load_config
    from sft.data.prepare import format_summary, prepare as run_prepare
    from sft.hub.resolve import local_vocab

    config = load_config(config_path, overrides)
    out = out or config.data.prepared_dir
    report = run_prepare(config.data, out, overwrite=overwrite, strict=strict, vocab=local_vocab(config.model))
    if as_json:
        echo_json(report)
    else:
        click.echo(format_summary(report, out))


@main.command()
@config_option
@set_option
@click.option("--data", "data_dir", type=click.Path(file_okay=False), help="Prepared-data folder [default: data.prepared_dir].")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Run directory [default: train.run_dir].")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Delete an existing run directory and start again.")
@click.option("--dry-run", is_flag=True, help="Check config and data, print the plan as JSON on stdout; no training.")
@json_option
def train(config_path, overrides, data_dir, run_dir, resume, overwrite, dry_run, as_json):
    """Fine-tune the encoder and a classification head on prepared data.

    SIGINT or SIGTERM saves a checkpoint and exits with code 75; --resume continues.
    """
    from sft.config import load_config
    from sft.data.prepared import PreparedDir
    from sft.errors import ConfigError
    from sft.rundir import RunDir, is_chief

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    if resume:
        if not run_dir and not config_path:
            raise ConfigError("--resume needs --run-dir (or the --config that names train.run_dir)")
        run = RunDir.open(run_dir or load_config(config_path, overrides).train.run_dir)
        config = run.resumed(run.config())  # the experiment it started with, in the precision it chose
        data = PreparedDir.open(data_dir or run.run_info()["data_dir"])
    else:
        if not config_path:
            raise ConfigError("sft train needs --config FILE (see configs/)")
        config = load_config(config_path, overrides)
        data = PreparedDir.open(data_dir or config.data.prepared_dir, config_path)
        path = run_dir or config.train.run_dir
        # Other workers of a multi-worker run share the chief's --run-dir but never write to it.
        run = RunDir(Path(path)) if dry_run or not is_chief() else RunDir.new(path, overwrite=overwrite)

    startup.import_tensorflow()
    from sft.train import format_summary, train as run_train

    if dry_run:
        echo_json(run_train(config, data, run, dry_run=True))
        return
    summary = run_train(config, data, run, resume=resume)
    if as_json:
        echo_json(summary)
    else:
        click.echo(format_summary(summary, run.path))


@main.command()
@config_option
@set_option
@click.option("--data", "data_dir", type=click.Path(file_okay=False), help="Prepared-data folder [default: data.prepared_dir].")
@click.option("--out", type=click.Path(file_okay=False), help="Audit folder [default: audit.dir, or train.run_dir + '-audit'].")
@click.option("--overwrite", is_flag=True, help="Start again where the folder holds an audit of other data or settings.")
@json_option
def audit(config_path, overrides, data_dir, out, overwrite, as_json):
    """Find suspected label errors and near-duplicates with different labels in train and validation.

    Trains audit.folds models for audit.epochs epochs each, on all folds but one, and reads
    each held-out fold's probabilities with cleanlab; writes audit.csv and index.html. Stopped or
    killed, the same command resumes (SIGINT/SIGTERM save a checkpoint and exit 75).
    """
    from sft.config import load_config
    from sft.data.prepared import PreparedDir
    from sft.errors import ConfigError

    if not config_path:
        raise ConfigError("sft audit needs --config FILE (see configs/)")
    if importlib.util.find_spec("cleanlab") is None:
        raise click.UsageError("sft audit needs the audit extra (cleanlab is missing): pip install 'sft[audit]'")
    config = load_config(config_path, overrides)
    data = PreparedDir.open(data_dir or config.data.prepared_dir, config_path)
    startup.import_tensorflow()
    from sft.audit import audit as run_audit, format_summary

    summary = run_audit(config, data, out, overwrite=overwrite)
    if as_json:
        echo_json(summary)
    else:
        click.echo(format_summary(summary))


def engine_options(threads_help: str = "ONNX Runtime: threads a call (0: one a core)."):
    """--engine, --threads, --spin: which inference engine answers, and how ONNX Runtime's threads run."""

    def add(command):
        command = click.option("--spin", is_flag=True,
                               help="ONNX Runtime: let idle threads spin-wait (a little faster alone; "
                                    "hurts a shared machine).")(command)
        command = click.option("--threads", default=0, show_default=True, type=click.IntRange(0),
                               help=threads_help)(command)
        return click.option("--engine", default="tf", show_default=True,
                            type=click.Choice(["tf", "onnx", "onnx-int8"]),
                            help="tf: TensorFlow; onnx, onnx-int8: ONNX Runtime, float32 or int8, the run "
                                 "exported once into RUN/export/ (needs the onnx extra).")(command)

    return add


def check_engine(engine: str, converts: bool = True) -> None:
    """An ONNX engine's libraries are there (tf2onnx too where the run is to be exported)."""
    if engine != "tf":
        try:
            import onnxruntime  # noqa: F401
            import tokenizers  # noqa: F401

            if converts and importlib.util.find_spec("tf2onnx") is None:
                raise ImportError(name="tf2onnx")
        except ImportError as e:
            raise click.UsageError(f"--engine {engine} needs the onnx extra ({e.name} is missing): "
                                   "pip install 'sft[onnx]'") from None


@main.command()
@click.option("--run-dir", "run_dirs", multiple=True, required=True, type=click.Path(file_okay=False),
              help="A run directory written by `sft train`.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "validation", "test"]))
@click.option("--data", "data_file", type=click.Path(dir_okay=False), help="A prepared .jsonl file instead of a split.")
@click.option("--model", "which", default="best", show_default=True, type=click.Choice(["best", "last"]),
              help="Which weights to score: best on validation, or after the last epoch.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on stdout (a list for several runs).")
@click.option("--report", is_flag=True, help="Also write report_<split>/index.html (and index.md with pictures) into the run directory.")
@click.option("--exclude-label", "exclude", multiple=True,
              help="Also average without this class (repeatable) [default: the run's metrics.exclude_labels].")
@engine_options()
def evaluate(run_dirs, split, data_file, which, as_json, report, exclude, engine, threads, spin):
    """Accuracy, precision, recall, F1, confusion matrix and calibration of trained runs.

    With several --run-dir, prints their metrics side by side.
    """
    from sft.rundir import RunDir

    runs = [RunDir.open(run_dir) for run_dir in run_dirs]  # all checked before any work
    check_engine(engine)
    startup.import_tensorflow()
    from sft.evaluate import evaluate as run_evaluate, format_comparison, format_table

    results = [(str(run.path), run_evaluate(run, split=split, data_file=data_file, which=which, report=report,
                                            exclude=list(exclude) or None, engine=engine, threads=threads, spin=spin))
               for run in runs]
    if as_json:
        echo_json(results[0][1] if len(results) == 1 else [m for _, m in results])
    elif len(results) == 1:
        click.echo(format_table(results[0][1]))
    else:
        click.echo(format_comparison(results))


@main.command()
@click.option("--run-dir", required=True, type=click.Path(file_okay=False), help="A run directory written by `sft train`.")
@click.option("--text", "texts", multiple=True, help="A text to classify (repeatable).")
@click.option("--input", "input_file", type=click.Path(dir_okay=False, allow_dash=True),
              help="One text a line, a prepared .jsonl (context kept), or '-' for standard input.")
@click.option("--top-k", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--model", "which", default="best", show_default=True, type=click.Choice(["best", "last"]))
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout: one object an input, in input order.")
@engine_options()
def predict(run_dir, texts, input_file, top_k, which, as_json, engine, threads, spin):
    """Label and probability for each input text, in batches.

    Reads --text, then --input, then standard input when neither is given and it is not a terminal.
    """
    from sft.data.clean import clean_text
    from sft.data.example import Example, decode_line, read_jsonl
    from sft.rundir import RunDir

    run = RunDir.open(run_dir)
    clean = run.config().data.clean  # texts are cleaned as the run's training data was
    examples = [Example(clean_text(t, clean), "") for t in texts]
    if any(not e.text for e in examples):
        raise click.UsageError("--text is empty (after cleaning): give a text to classify")
    if input_file and input_file.endswith(".jsonl"):
        examples += read_jsonl(input_file)
    elif input_file or (not texts and not sys.stdin.isatty()):
        with click.open_file(input_file or "-", "rb") as f:
            name = input_file if input_file not in (None, "-") else "<stdin>"
            cleaned = (clean_text(decode_line(raw, name, n), clean) for n, raw in enumerate(f, 1))
            examples += [Example(text, "") for text in cleaned if text]
    if not examples:
        raise click.UsageError("give --text, --input, or texts on standard input")
    check_engine(engine)
    startup.import_tensorflow()
    from sft.predict import predict_examples
    from sft.trained import load_trained

    trained = load_trained(run, which, engine, threads, spin)
    for result in predict_examples(trained, examples, top_k=top_k):
        if as_json:
            echo_json(result, indent=None)  # JSON Lines
        else:
            click.echo(f"{result['label']}\t{result['confidence']:.4f}\t{result['text']}")


@main.command()
@click.option("--run-dir", required=True, type=click.Path(file_okay=False), help="A run directory written by `sft train`.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the serving SavedModel.")
@click.option("--model", "which", default="best", show_default=True, type=click.Choice(["best", "last"]))
@click.option("--overwrite", is_flag=True, help="Replace an existing export.")
@click.option("--format", "export_format", default="savedmodel", show_default=True,
              type=click.Choice(["savedmodel", "onnx"]),
              help="savedmodel: for TensorFlow and TF Serving; onnx: for ONNX Runtime (needs the onnx extra).")
@click.option("--quantize", type=click.Choice(["int8"]),
              help="With --format onnx: int8 weights, refused if validation accuracy drops more than "
                   "export.max_accuracy_drop.")
@click.option("--max-accuracy-drop", type=click.FloatRange(0, 1),
              help="With --quantize: override the run's export.max_accuracy_drop (0.005: half a point).")
def export(run_dir, out, which, overwrite, export_format, quantize, max_accuracy_drop):
    """A model for serving: a SavedModel (raw strings in, label, probabilities and confidence out),
    or an ONNX graph (token ids in, logits out) that sft's ONNX Runtime engine tokenises for."""
    from sft.errors import RunDirError
    from sft.files import is_nonempty_dir
    from sft.rundir import RunDir

    run = RunDir.open(run_dir)
    if is_nonempty_dir(out) and not overwrite:
        raise RunDirError(f"'{out}' already exists: choose another --out or pass --overwrite")
    if export_format != "onnx" and (quantize or max_accuracy_drop is not None):
        raise click.UsageError("--quantize and --max-accuracy-drop go with --format onnx")
    if export_format == "onnx":
        check_engine("onnx")
    startup.import_tensorflow()
    from sft.export import export as run_export, export_onnx
    from sft.trained import load_trained

    trained = load_trained(run, which, exact=True)
    if export_format == "onnx":
        click.echo(str(export_onnx(trained, out, which, quantize == "int8", overwrite, max_accuracy_drop)))
    else:
        click.echo(str(run_export(trained, out, which, overwrite=overwrite)))


@main.command()
@click.option("--run-dir", type=click.Path(file_okay=False),
              help="A run directory: exported once into RUN/export/MODEL (as `sft export` would), then served.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), help="A folder written by `sft export`.")
@click.option("--model", "which", default="best", show_default=True, type=click.Choice(["best", "last"]),
              help="With --run-dir: which weights to serve.")
@click.option("--name", "model_name", help="The model's name in TF Serving's URLs, /v1/models/NAME "
                                          "[default: the run's folder name; for --export models/NAME/1, NAME].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on; 0 picks a free one (the log says which).")
@click.option("--max-batch", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Most texts run through the model as one batch.")
@click.option("--max-wait-ms", default=5.0, show_default=True, type=click.FloatRange(0, 10_000),
              help="Longest a batch waits for requests still arriving.")
@click.option("--max-texts", default=256, show_default=True, type=click.IntRange(1),
              help="Most texts (or instances) in one request.")
@click.option("--max-text-bytes", default=4096, show_default=True, type=click.IntRange(1),
              help="Longest text (or context turn) in UTF-8 bytes.")
@click.option("--max-body-bytes", default=1 << 20, show_default=True, type=click.IntRange(1),
              help="Largest request body.")
@click.option("--batch-threads", default=0, show_default=True, type=click.IntRange(0),
              help="Batches the model runs at once, each on its own threads (0: one a core).")
@engine_options(threads_help="Threads a batch, TensorFlow's or ONNX Runtime's (0: the cores shared among "
                             "--batch-threads).")
def serve(run_dir, export_dir, which, model_name, host, port, max_batch, max_wait_ms, max_texts, max_text_bytes,
          max_body_bytes, batch_threads, engine, threads, spin):
    """Answer a chatbot's requests over HTTP: POST /v1/classify, TF Serving's REST API, /healthz, /readyz, /metrics.

    Requests that arrive together run as one batch, batches a core each. SIGTERM or SIGINT: stop accepting, answer
    what is in flight, exit 0. With --export, the export's format picks the engine (an ONNX export runs without TensorFlow).
    Needs the serve extra: pip install 'sft[serve]'.
    """
    import re

    from sft.exported import ExportInfo
    from sft.rundir import RunDir

    if (run_dir is None) == (export_dir is None):
        raise click.UsageError("give --run-dir RUN or --export DIR (one of them)")
    try:
        from sft.serve import app as serve_app, server
        from sft.serve.schema import Limits
    except ImportError as e:
        raise click.UsageError(f"sft serve needs the serve extra ({e.name} is missing): pip install 'sft[serve]'") from None
    if run_dir:
        run = RunDir.open(run_dir)
        run.require_weights(which)
        name, version = run.path.resolve().name, "1"
    else:
        if engine != "tf":
            raise click.UsageError("--engine goes with --run-dir; an export is served by the engine of its format")
        engine = "onnx" if ExportInfo.read(export_dir).format == "onnx" else "tf"  # a wrong folder fails now
        folder = Path(export_dir).resolve()
        name, version = (folder.parent.name, folder.name) if folder.name.isdigit() else (folder.name, "1")
    name = model_name or name
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise click.UsageError(f"--name '{name[:100]}': use letters, digits, '.', '_' and '-' (it is part of URLs)")
    check_engine(engine, converts=run_dir is not None)
    sock = server.listen(host, port)
    batch_threads = batch_threads or hardware.cores()
    threads = threads or max(1, hardware.cores() // batch_threads)
    if run_dir or engine == "tf":
        startup.import_tensorflow()
        from sft import runtime

        runtime.set_threads(threads, prefix="serve: ")

    def load():
        from sft.exported import load_export

        if run_dir:
            from sft.export import export_onnx_run, export_run

            export = export_run(run, which) if engine == "tf" else export_onnx_run(run, which, engine == "onnx-int8")
        return load_export(export if run_dir else export_dir, threads, spin)

    options = serve_app.ServeOptions(name, version, max_batch, max_wait_ms, batch_threads,
                                     Limits(max_texts, max_text_bytes, max_body_bytes))
    server.run(serve_app.create_app(load, options), sock)


@main.group()
def hub():
    """TF Hub-format models: export checkpoints, materialise bundled models."""


@hub.command("export")
@click.option("--checkpoint", required=True, type=click.Path(file_okay=False),
              help="A BERT checkpoint folder: config.json, model.safetensors, vocab.txt.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Writes OUT/encoder and OUT/preprocessor.")
@click.option("--random-init", is_flag=True, help="Same shape and vocabulary, random weights (an ablation baseline).")
def hub_export(checkpoint, out, random_init):
    """Convert a BERT checkpoint into TF Hub-format encoder and preprocessor SavedModels."""
    startup.import_tensorflow()
    from sft.hub.export import export_checkpoint

    click.echo(str(export_checkpoint(checkpoint, out, random_init=random_init)))


@hub.command("fetch")
@click.argument("handle")
def hub_fetch(handle):
    """Materialise a bundled:<name> handle into the cache and print its folder."""
    from sft.errors import HubError
    from sft.hub.resolve import materialise_bundled

    if not handle.startswith("bundled:"):
        raise HubError(f"'{handle}' is not a bundled:<name> handle")
    startup.import_tensorflow()
    click.echo(str(materialise_bundled(handle.removeprefix("bundled:"))))
