"""The task section for own data (text_classification, instruction): GLUE configs are unchanged, every new
field is validated with its name in the message, and a resolved config validates again as it is."""

import pytest

from fedlora.config import dump_config, load_config, validate_config
from fedlora.errors import ConfigError

from .conftest import REPO

EXAMPLES = REPO / "configs" / "examples"
CLS = ["task.name=text_classification", "task.data_dir=tickets.csv", "task.splits.dev_share=0.2"]
LLAMA = "model.random_init={model_type: llama, hidden_size: 32, num_attention_heads: 2}"
INST = ["task.name=instruction", "task.data_dir=alpaca.jsonl", "task.splits.dev_share=0.2", LLAMA]


def error(*overrides: str, path=None) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(path, list(overrides))
    return str(exc.value)


def roundtrip(cfg) -> str:
    """The resolved config validated again and resolved again (what a resume compares)."""
    import yaml

    return dump_config(validate_config(yaml.safe_load(dump_config(cfg))))


def test_glue_configs_keep_working_unchanged():
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    assert cfg.task.name == "mrpc" and cfg.task.kind == "classification" and cfg.task.hub is None
    assert roundtrip(cfg) == dump_config(cfg)
    decoder = load_config(REPO / "configs" / "decoder" / "tiny_llama.yaml")
    assert roundtrip(decoder) == dump_config(decoder)


@pytest.mark.parametrize("name", ["classification", "instruction", "instruction_chat"])
def test_the_shipped_examples_validate_and_survive_a_roundtrip(name):
    cfg = load_config(EXAMPLES / f"{name}.yaml")
    assert cfg.task.name in ("text_classification", "instruction") and cfg.partition.name == "by_column"
    assert roundtrip(cfg) == dump_config(cfg)  # flower workers and --resume re-validate the dumped config


def test_an_instruction_task_is_a_causal_lm():
    cfg = load_config(None, INST)
    assert cfg.task.kind == "causal_lm" and "kind: causal_lm" in roundtrip(cfg)
    assert "task.kind: task.name=instruction trains a decoder LM" in error(*INST, "task.kind=classification")
    assert "needs a causal (decoder) LM" in error(*INST[:-1])  # minilm is an encoder
    assert "task.kind: text_classification trains a classification head" in error(*CLS, "task.kind=causal_lm")


def test_own_data_fields_are_refused_where_they_mean_nothing():
    assert "task.columns.text: only task.name text_classification reads it (task.name is mrpc)" in error(
        "task.columns.text=[body]"
    )
    assert "task.hub: only task.name text_classification or instruction reads it" in error("task.hub.dataset=imdb")
    assert "task.template: only task.name instruction reads it (task.name is text_classification)" in error(
        *CLS, "task.template=chat"
    )
    assert "task.labels: only task.name text_classification reads it" in error(*INST, "task.labels=[a, b]")


def test_the_data_source_and_columns_are_checked():
    assert "task.data_dir: task.name=text_classification reads your own data" in error("task.name=text_classification")
    assert "task.hub: set task.data_dir or task.hub, not both" in error(*CLS, "task.hub.dataset=imdb")
    assert "task.columns.text" in error(*CLS, "task.columns.text=[a, b, c]")
    assert "must name different columns" in error(*CLS, "task.columns.text=[label]")
    assert "task.labels: list two or more different classes" in error(*CLS, "task.labels=[a, a]")
    assert "task.splits.dev_share" in error(*CLS, "task.splits.dev_share=1.5")
    assert "task.prompt:" in error(*INST, "task.prompt.template=null")


def test_instruction_templates_are_checked():
    assert "task.template: 'alpaca', 'chat', or a prompt with {instruction}" in error(*INST, "task.template=Q")
    assert load_config(None, [*INST, "task.template=Q {instruction} A"]).task.template == "Q {instruction} A"
    assert "task.template: a messages column is written with the chat template" in error(
        *INST, "task.columns.messages=messages", "task.template=chat"
    )
    assert "task.chat_template: only a messages column or task.template: chat" in error(
        *INST, 'task.chat_template="{{ messages }}"'
    )


def test_new_metrics_can_be_the_target_metric():
    assert load_config(None, [*CLS, "eval.metric=macro_f1"]).eval.metric == "macro_f1"
    assert load_config(None, [*INST, "eval.metric=exact_match"]).eval.metric == "exact_match"
