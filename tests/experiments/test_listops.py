"""ListOps: values of hand-made expressions, the benchmark's text and tokens, the generator's properties."""

from __future__ import annotations

import os
import random

import pytest

from motionformer_experiments.lra.listops import (
    OPERATORS,
    VOCABULARY,
    ListOpsSettings,
    evaluate,
    generate_listops,
    parse,
    read_listops,
    sample_expression,
    split_sizes,
    to_source,
    tokenize,
)


@pytest.mark.parametrize(("expression", "value"), [
    (("[MIN", [4, 7, 2]), 2),
    (("[MAX", [4, 7, 2]), 7),
    (("[MED", [4, 7, 2]), 4),
    (("[MED", [1, 2, 3, 4]), 2),  # (2 + 3) / 2 floored
    (("[MED", [3, 4]), 3),
    (("[SM", [9, 9, 5]), 3),
    (("[MAX", [2, 9, ("[MIN", [4, 7]), 0]), 9),
    (("[SM", [("[MED", [8, 1, 5]), ("[MIN", [9, ("[MAX", [3, 6])]), 7]), 8),  # 5 + 6 + 7 = 18
])
def test_values_of_hand_made_expressions(expression, value):
    assert evaluate(expression) == value
    assert evaluate(parse(to_source(expression))) == value


def test_source_text_and_tokens_follow_the_benchmark():
    expression = ("[MAX", [2, 9, ("[MIN", [4, 7]), 0])
    assert to_source(expression) == "( ( ( ( ( [MAX 2 ) 9 ) ( ( ( [MIN 4 ) 7 ) ] ) ) 0 ) ] )"
    assert tokenize(to_source(expression)) == ["[MAX", "2", "9", "[MIN", "4", "7", "]", "0", "]"]
    assert parse(to_source(expression)) == expression
    assert set(VOCABULARY) == {"<pad>", *OPERATORS, "]", *"0123456789"}


@pytest.mark.parametrize(("text", "message"), [("[MAX 1 2", "never closed"), ("[MAX ]", "no arguments"),
                                               ("[MAX 1 ] 3", "after a whole expression"), ("[FOO 1 ]", r"'\[FOO'")])
def test_malformed_expressions_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse(text)


def test_sampled_expressions_respect_the_definition():
    settings = ListOpsSettings()
    rng = random.Random(3)
    depths, arities, operators = [], [], set()

    def walk(node, depth):
        if isinstance(node, int):
            assert 0 <= node <= 9
            depths.append(depth)
            return
        operator, arguments = node
        operators.add(operator)
        arities.append(len(arguments))
        assert depth < settings.max_depth  # no operator at depth 10
        for argument in arguments:
            walk(argument, depth + 1)

    roots = 0
    for _ in range(2000):
        expression, length = sample_expression(rng, settings)
        assert sample_expression(random.Random(0), settings, limit=1) is None
        assert length == len(tokenize(to_source(expression)))
        roots += not isinstance(expression, int)
        walk(expression, 1)
    assert 0.2 < roots / 2000 < 0.3  # the root is an operator with probability 0.25
    assert min(arities) == 2 and max(arities) == 10 and operators == set(OPERATORS)
    assert max(depths) == settings.max_depth


def test_generated_splits(tmp_path):
    summary = generate_listops(tmp_path, size=150, seed=1, workers=1, progress=False)
    assert summary["splits"] == split_sizes(150) == {"train": 144, "val": 3, "test": 3}
    assert split_sizes(100_000) == {"train": 96_000, "val": 2_000, "test": 2_000}
    sources = []
    for split, count in summary["splits"].items():
        lines = (tmp_path / f"basic_{split}.tsv").read_text().splitlines()
        assert lines[0] == "Source\tTarget" and len(lines) == count + 1
        for line in lines[1:]:
            source, target = line.split("\t")
            assert 500 < len(tokenize(source)) < 2000
            assert evaluate(parse(source)) == int(target)
            sources.append(source)
    assert len(set(sources)) == len(sources)  # no duplicates, within or across splits
    tokens, targets = read_listops(tmp_path / "basic_val.tsv")
    assert len(tokens) == 3 and all(0 < t < len(VOCABULARY) for sequence in tokens for t in sequence)
    assert all(0 <= target <= 9 for target in targets)


def test_generation_is_deterministic_whatever_the_workers_and_a_complete_folder_stays(tmp_path):
    settings = ListOpsSettings(min_length=20, max_length=60)
    generate_listops(tmp_path / "one", size=600, seed=5, settings=settings, workers=1, progress=False)
    generate_listops(tmp_path / "two", size=600, seed=5, settings=settings, workers=2, progress=False)
    generate_listops(tmp_path / "other", size=600, seed=6, settings=settings, workers=1, progress=False)
    one, two = ((tmp_path / name / "basic_train.tsv").read_text() for name in ("one", "two"))
    assert one == two != (tmp_path / "other" / "basic_train.tsv").read_text()
    path = tmp_path / "one" / "basic_train.tsv"
    os.utime(path, (1, 1))
    again = generate_listops(tmp_path / "one", size=600, seed=5, settings=settings, workers=1, progress=False)
    assert not again["generated"] and path.stat().st_mtime == 1


def test_bad_settings_and_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="no length L with 10 < L < 11"):
        generate_listops(tmp_path, size=10, settings=ListOpsSettings(min_length=10, max_length=11))
    with pytest.raises(ValueError, match="operators"):
        ListOpsSettings(operators=("[FIRST",)).check()
    tiny = ListOpsSettings(max_depth=2, max_args=2, operators=("[MAX",), min_length=2, max_length=5)
    with pytest.raises(ValueError, match="only 100 distinct expressions"):
        generate_listops(tmp_path, size=200, settings=tiny, workers=1, progress=False)
    assert not any(tmp_path.iterdir())
    bad = tmp_path / "basic_train.tsv"
    bad.write_text("Source\tTarget\n[MAX 1 2 ]\t2\n[MAX 1 2 ]\tx\n")
    with pytest.raises(ValueError, match=r"basic_train.tsv:3: expected 'source<TAB>digit'"):
        read_listops(bad)
    bad.write_text("Source\tTarget\n[MAX 1 22 ]\t2\n")
    with pytest.raises(ValueError, match=r"basic_train.tsv:2: unknown token '22'"):
        read_listops(bad)
