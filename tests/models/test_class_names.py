"""The packaged class-name lists: sizes, shape of the files and a few entries checked against the sources."""

from __future__ import annotations

from importlib.resources import files

import pytest

from motionformer.models.class_names import CLASS_LISTS, class_names

EXPECTED_SIZES = {"kinetics400": 400, "kinetics600": 600, "ssv2": 174, "epic_verbs": 97, "epic_nouns": 300}


def _raw(name: str) -> str:
    return (files("motionformer.models") / "classes" / f"{name}.txt").read_text(encoding="utf-8")


def test_known_lists():
    assert set(CLASS_LISTS) == set(EXPECTED_SIZES)


@pytest.mark.parametrize("name", CLASS_LISTS)
def test_sizes_and_uniqueness(name):
    names = class_names(name)
    assert len(names) == EXPECTED_SIZES[name]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", CLASS_LISTS)
def test_file_format(name):
    raw = _raw(name)
    assert raw.endswith("\n") and not raw.endswith("\n\n")
    assert "\r" not in raw and "\t" not in raw
    for line in raw.splitlines():
        assert line, f"empty line in {name}.txt"
        assert line == line.strip(), f"stray whitespace around {line!r} in {name}.txt"


@pytest.mark.parametrize("name", ["kinetics400", "kinetics600"])
def test_kinetics_sorted(name):
    names = class_names(name)
    assert names == sorted(names)
    assert not any("_" in n for n in names)  # the official spaced form, not folder-style underscores


def test_kinetics_spot_checks():
    k400 = class_names("kinetics400")
    assert k400[:3] == ["abseiling", "air drumming", "answering questions"]
    assert k400[-1] == "zumba"
    assert "massaging person's head" in k400
    assert "passing American football (not in game)" in k400
    k600 = class_names("kinetics600")
    assert k600[:3] == ["abseiling", "acting in play", "adjusting glasses"]
    assert k600[-1] == "zumba"
    assert "passing american football (not in game)" in k600  # lower-case "american" in Kinetics-600
    # Kinetics-600 keeps 368 of the Kinetics-400 classes unchanged.
    assert len(set(k400) & set(k600)) == 368


def test_ssv2_spot_checks():
    ssv2 = class_names("ssv2")
    assert ssv2[0] == "Approaching something with your camera"
    assert ssv2[16] == "Holding something"
    assert ssv2[135] == "Something falling like a rock"
    assert ssv2[160] == "Touching (without moving) part of something"
    assert ssv2[-1] == "Wiping something off of something"
    assert not any("[" in n or "]" in n for n in ssv2)


def test_epic_spot_checks():
    verbs = class_names("epic_verbs")
    assert verbs[:3] == ["take", "put", "wash"]
    assert verbs[6] == "turn-on"
    assert verbs[-1] == "unfreeze"
    nouns = class_names("epic_nouns")
    assert nouns[:3] == ["tap", "spoon", "plate"]
    assert nouns[18] == "board:chopping"
    assert nouns[-1] == "extract:vanilla"


def test_returns_a_fresh_list():
    names = class_names("epic_verbs")
    names.clear()
    assert len(class_names("epic_verbs")) == 97


@pytest.mark.parametrize("bad", ["kinetics700", "", "SSV2", "../kinetics400"])
def test_unknown_list(bad):
    with pytest.raises(ValueError, match="kinetics400") as info:
        class_names(bad)
    assert repr(bad) in str(info.value)
