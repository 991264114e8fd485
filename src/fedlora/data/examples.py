"""Small own-data example files, written on demand: the data of configs/examples/ and of the tests.

    python -m fedlora.data.examples runs/example-data

writes three datasets, each a directory of train and validation files with an owner column (`user_id`):

- `tickets/` (CSV): support tickets labelled billing, bug or question; owners differ in size (one holds a
  single training row) and in label mix, as real data owners do.
- `instructions/` (JSON Lines, Alpaca columns instruction/input/output): four small tasks (add two numbers,
  spell a word backwards, give an antonym, say whether a number is even or odd), short answers.
- `chat/` (JSON Lines, a `messages` column): the same instructions as conversations.

Nothing is downloaded: rows come from templates and a seeded generator, so every call writes the same bytes.
`write_rows` saves rows in any supported format (by suffix); the tests use it for every format.

    python -m fedlora.data.examples --glue rte --glue-dir ../shared/data/glue runs/rte-jsonl
    python -m fedlora.data.examples --glue mrpc --glue-dir ../shared/data/glue --as instruction runs/mrpc-inst

rewrite a GLUE task's train and dev files as own data (train/validation, JSON Lines by default): string
labels for text_classification (RTE: entailment/not_entailment; MRPC: different/paraphrase, which sort into
GLUE's own ids, so a run on them matches the GLUE path number for number), or instructions with the
question, the pair as input, the answer yes/no and the choices [no, yes] (instruction).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedlora.seeding import numpy_rng

Row = dict[str, Any]

TICKETS = {
    "billing": [
        "I was charged twice for my {plan} plan this month",
        "Please refund the {amount} charge on my card",
        "My invoice for {month} shows the wrong amount",
        "Why did my {plan} subscription renew at a higher price?",
        "The payment for {month} was taken but my account says unpaid",
    ],
    "bug": [
        "The app crashes every time I open {feature}",
        "{feature} shows a blank screen since the last update",
        "I get error {code} when I try to save in {feature}",
        "Notifications from {feature} arrive twice",
        "Search in {feature} returns nothing even for exact names",
    ],
    "question": [
        "How do I export my {thing} to a spreadsheet?",
        "Is there a way to change my {thing}?",
        "Where can I find the settings for {feature}?",
        "Can I share my {thing} with a colleague?",
        "What is the difference between the {plan} plan and the others?",
    ],
}
SLOTS = {
    "plan": ["basic", "team", "premium", "family"],
    "amount": ["$12.99", "$49", "$5", "$120"],
    "month": ["March", "June", "October", "January"],
    "feature": ["the calendar", "reports", "the inbox", "file upload", "the dashboard"],
    "code": ["E102", "500", "E7", "403"],
    "thing": ["contacts", "password", "project list", "profile photo", "notes"],
}
# training rows per owner, and each owner's label mix (billing, bug, question)
TICKET_OWNERS = {
    "u01": (40, (0.6, 0.2, 0.2)),
    "u02": (30, (0.1, 0.8, 0.1)),
    "u03": (24, (0.2, 0.2, 0.6)),
    "u04": (18, (0.34, 0.33, 0.33)),
    "u05": (14, (0.7, 0.0, 0.3)),
    "u06": (10, (0.0, 0.5, 0.5)),
    "u07": (7, (0.3, 0.4, 0.3)),
    "u08": (1, (0.0, 1.0, 0.0)),
}
TICKET_DEV = 36

WORDS = ["planet", "garden", "silver", "window", "rocket", "pencil", "forest", "bridge", "candle", "marble"]
ANTONYMS = {
    "hot": "cold",
    "up": "down",
    "early": "late",
    "happy": "sad",
    "full": "empty",
    "fast": "slow",
    "light": "dark",
    "open": "closed",
}
INSTRUCTION_KINDS = ("add", "reverse", "antonym", "parity")
# training rows per owner, and each owner's mix of the four instruction kinds
INSTRUCTION_OWNERS = {
    "alice": (32, (0.7, 0.1, 0.1, 0.1)),
    "bob": (28, (0.1, 0.7, 0.1, 0.1)),
    "carol": (20, (0.1, 0.1, 0.7, 0.1)),
    "dave": (16, (0.25, 0.25, 0.25, 0.25)),
}
INSTRUCTION_DEV = 24


def ticket(rng: np.random.Generator, label: str) -> str:
    template = TICKETS[label][int(rng.integers(len(TICKETS[label])))]
    return template.format(**{k: v[int(rng.integers(len(v)))] for k, v in SLOTS.items()})


def ticket_rows(seed: int = 0) -> tuple[list[Row], list[Row]]:
    rng = numpy_rng(seed, "example-tickets")
    labels = list(TICKETS)
    train: list[Row] = []
    for user, (count, mix) in TICKET_OWNERS.items():
        for _ in range(count):
            label = labels[int(rng.choice(3, p=np.asarray(mix) / sum(mix)))]
            train.append({"user_id": user, "text": ticket(rng, label), "label": label})
    order = rng.permutation(len(train))  # owners interleaved, as rows arrive in a real export
    train = [{"ticket_id": i + 1, **train[j]} for i, j in enumerate(order)]
    dev = []
    for i in range(TICKET_DEV):
        label = labels[i % 3]
        dev.append({"ticket_id": 1000 + i, "user_id": "u99", "text": ticket(rng, label), "label": label})
    return train, dev


def instruction(rng: np.random.Generator, kind: str) -> tuple[str, str, str, list[str] | None]:
    """(instruction, input, output, choices or None) of one example of `kind`."""
    if kind == "add":
        a, b = (int(x) for x in rng.integers(1, 50, size=2))
        return "Add the two numbers.", f"{a} and {b}", str(a + b), None
    if kind == "reverse":
        word = WORDS[int(rng.integers(len(WORDS)))]
        return "Spell the word backwards.", word, word[::-1], None
    if kind == "antonym":
        word = list(ANTONYMS)[int(rng.integers(len(ANTONYMS)))]
        return "Give the opposite of the word.", word, ANTONYMS[word], None
    n = int(rng.integers(1, 100))
    return "Is the number even or odd?", str(n), "even" if n % 2 == 0 else "odd", ["even", "odd"]


def instruction_rows(seed: int = 0) -> tuple[list[Row], list[Row]]:
    rng = numpy_rng(seed, "example-instructions")
    train: list[Row] = []
    for user, (count, mix) in INSTRUCTION_OWNERS.items():
        for _ in range(count):
            kind = INSTRUCTION_KINDS[int(rng.choice(4, p=np.asarray(mix) / sum(mix)))]
            text, given, output, _ = instruction(rng, kind)
            train.append({"user_id": user, "instruction": text, "input": given, "output": output})
    train = [train[j] for j in rng.permutation(len(train))]
    dev = []
    for i in range(INSTRUCTION_DEV):
        text, given, output, _ = instruction(rng, INSTRUCTION_KINDS[i % 4])
        dev.append({"user_id": "eve", "instruction": text, "input": given, "output": output})
    return train, dev


def as_messages(rows: Sequence[Row]) -> list[Row]:
    """Alpaca rows as conversations: the instruction and input as the user turn, the output as the reply."""
    out = []
    for r in rows:
        user = f"{r['instruction']}\n\n{r['input']}" if r.get("input") else r["instruction"]
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": r["output"]}]
        out.append({"user_id": r["user_id"], "messages": messages})
    return out


def write_rows(path: str | Path, rows: Sequence[Row]) -> Path:
    """`rows` (dicts with the same keys) as a .csv, .tsv, .json (an array), .jsonl or .parquet file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    suffix = p.suffix.lower()
    keys = list(rows[0]) if rows else []
    if suffix in (".csv", ".tsv"):
        with p.open("w", newline="", encoding="utf-8") as fh:
            if suffix == ".csv":
                writer = csv.writer(fh)
            else:  # TSV: no quoting, as the reader expects (a tab never occurs in a field)
                writer = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=None, quotechar=None)
            writer.writerow(keys)
            writer.writerows([[r[k] for k in keys] for r in rows])
    elif suffix == ".jsonl":
        p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".json":
        p.write_text(json.dumps(list(rows), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(list(rows)), p)
    else:
        raise ValueError(f"write_rows: unknown suffix {p.suffix!r}")
    return p


def write_examples(out_dir: str | Path) -> dict[str, Path]:
    """The three example datasets under `out_dir`; returns their directories by name."""
    out = Path(out_dir)
    tickets_train, tickets_dev = ticket_rows()
    inst_train, inst_dev = instruction_rows()
    dirs = {"tickets": out / "tickets", "instructions": out / "instructions", "chat": out / "chat"}
    write_rows(dirs["tickets"] / "train.csv", tickets_train)
    write_rows(dirs["tickets"] / "validation.csv", tickets_dev)
    write_rows(dirs["instructions"] / "train.jsonl", inst_train)
    write_rows(dirs["instructions"] / "validation.jsonl", inst_dev)
    write_rows(dirs["chat"] / "train.jsonl", as_messages(inst_train))
    write_rows(dirs["chat"] / "validation.jsonl", as_messages(inst_dev))
    return dirs


GLUE_LABELS = {"mrpc": ("different", "paraphrase"), "rte": ("entailment", "not_entailment")}
GLUE_QUESTIONS = {
    "mrpc": ("Do the two sentences mean the same thing? Answer yes or no.", ("no", "yes")),
    "rte": ("Does the first sentence entail the second? Answer yes or no.", ("yes", "no")),
}


def glue_rows(task: str, glue_dir: str | Path, style: str = "classification") -> tuple[list[Row], list[Row]]:
    """GLUE `task`'s (train, dev) rows as own data: classification with string labels, or instructions."""
    from fedlora.data.glue import load_glue

    out = []
    for split in ("train", "dev"):
        pairs = load_glue(task, split, glue_dir)
        rows: list[Row] = []
        for i, (a, b, y) in enumerate(zip(pairs.text_a, pairs.text_b, pairs.labels, strict=True)):
            if style == "classification":
                rows.append({"idx": i, "sentence1": a, "sentence2": b, "label": GLUE_LABELS[task][y]})
            else:
                question, answers = GLUE_QUESTIONS[task]
                given = f"Sentence 1: {a}\nSentence 2: {b}"
                rows.append({"instruction": question, "input": given, "output": answers[y], "choices": list(answers)})
        out.append(rows)
    return out[0], out[1]


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fedlora.data.examples", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", help="where to write (e.g. runs/example-data)")
    parser.add_argument("--glue", choices=sorted(GLUE_LABELS), help="rewrite this GLUE task instead")
    parser.add_argument("--glue-dir", help="the GLUE root (with --glue)")
    parser.add_argument("--as", dest="style", choices=["classification", "instruction"], default="classification")
    parser.add_argument("--format", default="jsonl", choices=["csv", "tsv", "json", "jsonl", "parquet"])
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.glue is None:
        for name, path in write_examples(args.out_dir).items():
            print(f"wrote {path}/ ({name})")
        return 0
    if not args.glue_dir:
        parser.error("--glue needs --glue-dir (the GLUE root, e.g. ../shared/data/glue)")
    train, dev = glue_rows(args.glue, args.glue_dir, args.style)
    for name, rows in (("train", train), ("validation", dev)):
        path = write_rows(Path(args.out_dir) / f"{name}.{args.format}", rows)
        print(f"wrote {path} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
