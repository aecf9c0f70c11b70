"""ListOps (Nangia and Bowman, 2018) as Long Range Arena uses it, generated here.

An expression is a tree. A node below depth 10 (the root is at depth 1) becomes an operator with probability 0.25,
otherwise a digit 0-9; an operator takes 2 to 10 arguments (uniform), each a node one level deeper, and is one of
MIN, MAX, MED (the median, floored) and SM (the sum modulo 10). The length of an expression is its number of tokens:
digits, operators and closing brackets. Expressions are drawn until enough have 500 < length < 2000 (both bounds
exclusive, as in the benchmark), duplicates are dropped, and the first ``size`` go into the splits (96% / 2% / 2%:
96,000 / 2,000 / 2,000 for 100,000).

Text format (the benchmark's TSV): a header ``Source<TAB>Target``, then one expression per line, written as nested
binary pairs in parentheses (``[MAX 2 9 ]`` is ``( ( ( [MAX 2 ) 9 ) ] )``), and its value. ``tokenize`` reads it as the
benchmark does: parentheses dropped, every other whitespace-separated piece (``[MAX``, ``]``, a digit) one token.

Generation is deterministic for a seed whatever the number of workers: chunk ``j`` of candidates is drawn from its own
generator seeded by (seed, j), and chunks are taken in order.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from motionformer.io import atomic_write

__all__ = ["OPERATORS", "VOCABULARY", "ListOpsSettings", "evaluate", "generate_listops", "parse", "read_listops",
           "sample_expression", "to_source", "tokenize"]

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
PAD = "<pad>"
VOCABULARY: tuple[str, ...] = (PAD, *OPERATORS, END, *(str(digit) for digit in range(10)))
TOKEN_IDS = {token: index for index, token in enumerate(VOCABULARY)}
SPLITS = ("train", "val", "test")

Expression = int | tuple[str, list["Expression"]]


@dataclass(frozen=True)
class ListOpsSettings:
    """The published definition by default; the reduced CPU preset changes the lengths only."""

    max_depth: int = 10
    max_args: int = 10
    operator_probability: float = 0.25
    min_length: int = 500  # exclusive
    max_length: int = 2000  # exclusive
    operators: tuple[str, ...] = OPERATORS

    def check(self) -> None:
        if not 0.0 < self.operator_probability < 1.0:
            raise ValueError(f"operator_probability={self.operator_probability} must be in (0, 1)")
        if self.max_args < 2 or self.max_depth < 2:
            raise ValueError(f"max_args={self.max_args} and max_depth={self.max_depth} must be at least 2")
        if not 0 <= self.min_length < self.max_length - 1:
            raise ValueError(f"no length L with {self.min_length} < L < {self.max_length}")
        unknown = [operator for operator in self.operators if operator not in OPERATORS]
        if unknown or not self.operators:
            raise ValueError(f"operators {list(self.operators)}: expected a non-empty subset of {list(OPERATORS)}")


class _TooLongError(Exception):
    pass


def sample_expression(rng: random.Random, settings: ListOpsSettings = ListOpsSettings(), limit: int | None = None
                      ) -> tuple[Expression, int] | None:
    """One random expression and its length in tokens; None as soon as it reaches ``limit`` tokens (the rest of
    the tree is then not drawn, which is what makes short expressions quick to sample)."""
    length = 0

    def node(depth: int) -> Expression:
        nonlocal length
        if depth < settings.max_depth and rng.random() < settings.operator_probability:
            length += 2  # the operator and its closing bracket
            count = rng.randint(2, settings.max_args)
            arguments = [node(depth + 1) for _ in range(count)]
            operator = settings.operators[rng.randrange(len(settings.operators))]
            return operator, arguments
        length += 1
        if limit is not None and length >= limit:
            raise _TooLongError
        return rng.randrange(10)

    try:
        expression = node(1)
    except _TooLongError:
        return None
    if limit is not None and length >= limit:
        return None
    return expression, length


def evaluate(expression: Expression) -> int:
    """The value of an expression: MIN, MAX, MED (median of the arguments, floored), SM (sum modulo 10)."""
    if isinstance(expression, int):
        return expression
    operator, arguments = expression
    values = sorted(evaluate(argument) for argument in arguments)
    if operator == "[MIN":
        return values[0]
    if operator == "[MAX":
        return values[-1]
    if operator == "[MED":
        middle = len(values) // 2
        return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) // 2
    if operator == "[SM":
        return sum(values) % 10
    raise ValueError(f"unknown operator {operator!r}")


def to_source(expression: Expression) -> str:
    """The benchmark's text: an operator node with arguments a1..an is ((...((op a1) a2)... an) ])."""
    if isinstance(expression, int):
        return str(expression)
    operator, arguments = expression
    text = f"( {operator} {to_source(arguments[0])} )"
    for argument in arguments[1:]:
        text = f"( {text} {to_source(argument)} )"
    return f"( {text} {END} )"


def tokenize(source: str) -> list[str]:
    """Parentheses dropped; operators, digits and the closing bracket one token each."""
    return [piece for piece in source.replace("(", " ").replace(")", " ").split()]


def parse(tokens: Sequence[str] | str) -> Expression:
    """The expression of a token list (or of source text); raises ValueError naming what is malformed."""
    tokens = tokenize(tokens) if isinstance(tokens, str) else list(tokens)
    position = 0

    def node() -> Expression:
        nonlocal position
        if position >= len(tokens):
            raise ValueError("the expression ends early")
        token = tokens[position]
        position += 1
        if token.isdigit() and len(token) == 1:
            return int(token)
        if token not in OPERATORS:
            raise ValueError(f"unexpected token {token!r} at position {position - 1}")
        arguments = []
        while position < len(tokens) and tokens[position] != END:
            arguments.append(node())
        if position >= len(tokens):
            raise ValueError(f"operator {token} at position {position} is never closed")
        position += 1
        if not arguments:
            raise ValueError(f"operator {token} has no arguments")
        return token, arguments

    expression = node()
    if position != len(tokens):
        raise ValueError(f"unexpected token {tokens[position]!r} at position {position} after a whole expression")
    return expression


# ---------------------------------------------------------------------- the dataset


_CHUNK = 500  # accepted expressions per chunk


def _chunk(job: tuple[int, int, ListOpsSettings]) -> list[tuple[str, int]]:
    seed, index, settings = job
    rng = random.Random(f"listops-{seed}-{index}")
    rows = []
    while len(rows) < _CHUNK:
        sample = sample_expression(rng, settings, limit=settings.max_length)
        if sample is not None and sample[1] > settings.min_length:
            rows.append((to_source(sample[0]), evaluate(sample[0])))
    return rows


def _chunks(seed: int, settings: ListOpsSettings, workers: int) -> Iterator[list[tuple[str, int]]]:
    jobs = ((seed, index, settings) for index in range(sys.maxsize))
    if workers <= 1:
        yield from map(_chunk, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        while True:  # a window of chunks at a time, in order
            yield from pool.map(_chunk, [next(jobs) for _ in range(4 * workers)])


def split_sizes(size: int) -> dict[str, int]:
    held_out = round(size * 0.02)
    return {"train": size - 2 * held_out, "val": held_out, "test": held_out}


def generate_listops(root: str | os.PathLike, *, size: int = 100_000, seed: int = 0,
                     settings: ListOpsSettings = ListOpsSettings(), workers: int | None = None,
                     progress: bool = True) -> dict[str, object]:
    """Write ``root/basic_{train,val,test}.tsv`` and ``root/settings.json``; returns a summary.

    A folder already complete with the same size, seed and settings is left as it is.
    """
    settings.check()
    if size < 3:
        raise ValueError(f"size={size}: at least 3 expressions (one per split)")
    root = Path(root)
    info = json.loads(json.dumps({"task": "listops", "size": size, "seed": seed, "settings": asdict(settings),
                                  "splits": split_sizes(size)}))
    paths = {split: root / f"basic_{split}.tsv" for split in SPLITS}
    try:
        if json.loads((root / "settings.json").read_text()) == info and all(p.exists() for p in paths.values()):
            return {**info, "root": str(root), "generated": False}
    except (OSError, ValueError):
        pass
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    begin, seen, rows, stale = time.perf_counter(), set(), [], 0
    for chunk in _chunks(seed, settings, workers):
        before = len(rows)
        for source, value in chunk:
            if source not in seen:
                seen.add(source)
                rows.append((source, value))
        stale = stale + 1 if len(rows) == before else 0
        if stale >= 20:
            raise ValueError(f"size={size}: only {len(rows)} distinct expressions found under these settings")
        if progress and (sys.stderr.isatty() or len(rows) >= size or len(rows) // _CHUNK % 20 == 0):
            end = "" if sys.stderr.isatty() else "\n"
            print(f"\rlistops: {min(len(rows), size)}/{size} expressions", end=end, file=sys.stderr, flush=True)
        if len(rows) >= size:
            break
    if progress:
        print(f" ({time.perf_counter() - begin:.0f} s)", file=sys.stderr)
    rows = rows[:size]
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.json").unlink(missing_ok=True)  # marks the folder complete: written last
    start = 0
    for split, count in split_sizes(size).items():
        text = "Source\tTarget\n" + "".join(f"{source}\t{value}\n" for source, value in rows[start:start + count])
        atomic_write(paths[split], lambda temp, t=text: Path(temp).write_text(t))
        start += count
    atomic_write(root / "settings.json", lambda temp: Path(temp).write_text(json.dumps(info, indent=1) + "\n"))
    return {**info, "root": str(root), "generated": True}


def read_listops(path: str | os.PathLike) -> tuple[list[list[int]], list[int]]:
    """Token ids and targets of a ``basic_*.tsv`` file; errors name the file and line."""
    path = Path(path)
    sequences, targets = [], []
    with path.open() as lines:
        header = next(lines, "").rstrip("\n").split("\t")
        if header != ["Source", "Target"]:
            raise ValueError(f"{path}:1: expected the header 'Source<TAB>Target', got {header!r}")
        for number, line in enumerate(lines, start=2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 2 or not fields[1].strip().isdigit() or not 0 <= int(fields[1]) <= 9:
                raise ValueError(f"{path}:{number}: expected 'source<TAB>digit', got {line[:80]!r}")
            tokens = tokenize(fields[0])
            unknown = [token for token in tokens if token not in TOKEN_IDS or token == PAD]
            if unknown:
                raise ValueError(f"{path}:{number}: unknown token {unknown[0]!r}")
            sequences.append([TOKEN_IDS[token] for token in tokens])
            targets.append(int(fields[1]))
    return sequences, targets
