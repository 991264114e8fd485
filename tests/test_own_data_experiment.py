"""Own data end to end on tiny random models: the shipped example configs run (three string labels, both
instruction layouts, the by-owner split); a GLUE task rewritten as JSON Lines trains to the GLUE path's exact
numbers; `fedlora partition` works for every partitioner on the new tasks; data errors are one line, exit 2."""

import json

import pytest
from typer.testing import CliRunner

from fedlora.cli import app
from fedlora.config import load_config
from fedlora.data.examples import glue_rows, write_examples, write_rows
from fedlora.experiment import deterministic_view, partition_report, prepare, prepare_data, run_experiment

from .conftest import REPO

EXAMPLES = REPO / "configs" / "examples"
TINY_BERT = "model.random_init={hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64}"
TINY_LLAMA = [
    "model.name=tiny-random-llama",
    "model.tokenizer=minilm",
    "model.random_init={model_type: llama, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, "
    "num_key_value_heads: 2, intermediate_size: 64}",
    "lora.target_modules=null",
]
FAST = ["output.progress=false", "training.threads=1", "stop.versions=2", "training.local_steps=2"]
# MiniLM's BERT tokenizer has no chat template: the messages example gets this one
CHAT = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} [end] {% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)


@pytest.fixture(scope="module")
def example_data(tmp_path_factory):
    return write_examples(tmp_path_factory.mktemp("example-data"))


def example(name: str, data_dir, tmp_path, *overrides: str):
    tiny = [TINY_BERT] if name == "classification" else TINY_LLAMA
    sets = [f"task.data_dir={data_dir}", f"output.dir={tmp_path}", *tiny, *FAST, *overrides]
    return load_config(EXAMPLES / f"{name}.yaml", sets)


def test_the_classification_example_trains_a_three_class_head(example_data, tmp_path):
    cfg = example("classification", example_data["tickets"], tmp_path)
    prep = prepare(cfg)
    head = prep.host.head_template()
    assert [tuple(t.shape) for k, t in head.items() if k.endswith("classifier.weight")] == [(3, 32)]
    summary = run_experiment(cfg, out=tmp_path / "run")
    final = summary["history"][-1]["metrics"]
    assert {"accuracy", "macro_f1", "loss"} <= set(final) and "f1" not in final
    table = json.loads((tmp_path / "run" / "partition.json").read_text())
    assert table["label_names"] == ["billing", "bug", "question"] and len(table["rows"]) == 4
    assert sorted(o for r in table["rows"] for o in r["owners"]) == [f"u0{i}" for i in range(1, 9)]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["data"]["source"] == str(example_data["tickets"].resolve())
    again = run_experiment(cfg, out=tmp_path / "again")
    assert deterministic_view(again) == deterministic_view(summary)


@pytest.mark.parametrize("name", ["instruction", "instruction_chat"])
def test_the_instruction_examples_train_on_responses_in_both_layouts(example_data, tmp_path, name):
    folder = example_data["instructions" if name == "instruction" else "chat"]
    extra = [f"task.chat_template={json.dumps(CHAT)}"] if name == "instruction_chat" else []
    cfg = example(name, folder, tmp_path, "training.lr=0.02", *extra)
    summary = run_experiment(cfg, out=tmp_path / "run")
    history = [h["metrics"] for h in summary["history"]]
    assert {"loss", "perplexity", "exact_match"} <= set(history[-1]) and "accuracy" not in history[-1]
    assert history[-1]["loss"] < history[0]["loss"]  # the validation loss falls across versions
    assert len(summary["history"]) == 3 and summary["totals"]["versions"] == 2


def test_choices_add_choice_accuracy(tmp_path):
    rows = glue_rows("rte", REPO.parent / "shared" / "data" / "glue", "instruction")
    write_rows(tmp_path / "data" / "train.jsonl", rows[0][:48])
    write_rows(tmp_path / "data" / "validation.jsonl", rows[1][:16])
    cfg = example(
        "instruction",
        tmp_path / "data",
        tmp_path,
        "task.columns.choices=choices",
        "partition={name: iid}",
        "eval.metric=accuracy",
    )
    final = run_experiment(cfg, out=tmp_path / "run")["history"][-1]["metrics"]
    assert 0.0 <= final["accuracy"] <= 1.0 and "exact_match" in final


def test_rte_as_json_lines_with_string_labels_matches_the_glue_path(glue_dir, tmp_path, tiny_config):
    train, dev = glue_rows("rte", glue_dir)
    assert {r["label"] for r in train} == {"entailment", "not_entailment"}
    write_rows(tmp_path / "rte" / "train.jsonl", train)
    write_rows(tmp_path / "rte" / "validation.jsonl", dev)
    common = ["task.train_limit=96", "task.dev_limit=48", "stop.versions=2", "training.local_steps=2"]
    glue = tiny_config("task.name=rte", *common)
    own = tiny_config(
        "task.name=text_classification",
        f"task.data_dir={tmp_path / 'rte'}",
        "task.columns={text: [sentence1, sentence2], label: label}",
        *common,
    )
    a = run_experiment(glue, out=tmp_path / "glue")
    b = run_experiment(own, out=tmp_path / "own")
    metrics = [(h["version"], h["metrics"]["accuracy"], h["metrics"]["loss"]) for h in a["history"]]
    assert metrics == [(h["version"], h["metrics"]["accuracy"], h["metrics"]["loss"]) for h in b["history"]]
    assert a["history"][-1]["metrics"]["accuracy"] == b["history"][-1]["metrics"]["accuracy"]


PARTITIONS = [
    "partition={name: iid}",
    "partition={name: label, alpha: 0.5}",
    "partition={name: quantity, alpha: 1.0}",
    "partition={name: length, alpha: 0.5}",
    "partition={name: quality, alpha: 0.5}",
    "partition={name: noise, corrupt: text, rate: 0.3}",
    "partition={name: noise, base: {name: by_column, column: user_id, group: balanced}}",
]


@pytest.mark.parametrize("task", ["classification", "instruction"])
@pytest.mark.parametrize("partition", PARTITIONS, ids=lambda p: p.split(",")[0].split(": ")[1].rstrip("}"))
def test_every_partitioner_reports_on_the_new_tasks(example_data, tmp_path, task, partition):
    folder = example_data["tickets" if task == "classification" else "instructions"]
    if task == "instruction" and "base:" in partition:  # one class: noise flips no labels, it shuffles texts
        partition = partition.replace("{name: noise,", "{name: noise, corrupt: text,")
    cfg = example(task, folder, tmp_path, partition)
    report = partition_report(prepare_data(cfg))
    assert len(report.rows) == 4 and sum(r["examples"] for r in report.rows) == (
        144 if task == "classification" else 96
    )
    assert all(r["length_mean"] is not None and r["quality_mean"] is not None for r in report.rows)
    paths = report.write(tmp_path / "report", figure=True)
    assert paths[-1].read_bytes().startswith(b"\x89PNG")


def cli(*args: str):
    return CliRunner().invoke(app, list(args), terminal_width=1000)


def test_fedlora_partition_prints_the_by_owner_table(example_data, tmp_path):
    out = tmp_path / "report"
    args = ["partition", str(EXAMPLES / "classification.yaml"), "--set", f"task.data_dir={example_data['tickets']}"]
    args += ["--set", "partition.group=each", "--set", "clients.count=8", "--out", str(out)]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "partition: by_column" in result.output and "label mix" in result.output
    caption = " ".join(result.output.split())  # rich wraps the caption to the table's width
    assert "clients under partition.min_size=2 examples (kept, not dropped): 7" in caption  # u08, one ticket
    assert (out / "partition.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((out / "partition.json").read_text())["small_clients"] == [7]


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_data_errors_are_one_line_with_file_column_and_fix(example_data, tmp_path):
    tickets = example_data["tickets"]
    base = ["partition", str(EXAMPLES / "classification.yaml"), "--out", str(tmp_path / "r")]

    line = one_error_line(cli(*base, "--set", f"task.data_dir={tickets}", "--set", "task.columns.label=category"))
    assert "train.csv: no column 'category'" in line and "set task.columns.label" in line

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train.csv").write_text((tickets / "train.csv").read_text())
    (empty / "validation.csv").write_text("ticket_id,user_id,text,label\n")
    line = one_error_line(cli(*base, "--set", f"task.data_dir={empty}"))
    assert "validation.csv has a header but no rows" in line

    one = tmp_path / "one"
    rows = [{"user_id": "u1", "text": f"ticket {i}", "label": "bug"} for i in range(6)]
    write_rows(one / "train.jsonl", rows)
    write_rows(one / "validation.jsonl", rows)
    line = one_error_line(cli(*base, "--set", f"task.data_dir={one}"))
    assert "train.jsonl: column 'label' holds one class ('bug')" in line and "task.columns.label" in line

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": \n')
    (broken / "validation.jsonl").write_text('{"text": "a", "label": "x"}\n')
    line = one_error_line(cli(*base, "--set", f"task.data_dir={broken}"))
    assert "train.jsonl: cannot read it as JSON Lines" in line and "fix the file there" in line

    line = one_error_line(cli(*base, "--set", f"task.data_dir={tickets}", "--set", "partition.column=owner"))
    assert "train.csv: no column 'owner'" in line and "partition.column" in line

    run = ["run", str(EXAMPLES / "classification.yaml"), "--set", f"task.data_dir={one}", "--set", TINY_BERT]
    line = one_error_line(cli(*run, "--set", f"output.dir={tmp_path}"))
    assert "one class" in line and not (tmp_path / "example-classification").exists()
