"""TrajectoryOptions: enums checked once, every option reaches every layer, JSON round trip."""

from __future__ import annotations

import json

import pytest

from motionformer.attention import Normalization, PrototypeSource
from motionformer.layers import Approximation, TrajectoryAttention, TrajectoryOptions
from motionformer.models import create_model


def test_strings_become_enums_and_round_trip_through_json():
    options = TrajectoryOptions(approx="nystrom", normalization="frame", prototype_source="queries")
    assert options.approx is Approximation.NYSTROM and options.prototype_source is PrototypeSource.QUERIES
    again = TrajectoryOptions.from_dict(json.loads(json.dumps(options.to_dict())))
    assert again == options and again.normalization is Normalization.FRAME


@pytest.mark.parametrize(("values", "message"), [
    ({"temporal_pooling": "max"}, r"temporal_pooling='max' is not one of attention, average"),
    ({"prototype_selection": "best"}, r"prototype_selection='best' is not one of orthogonal, random, segment_means"),
    ({"oversampling": 0}, r"oversampling must be an integer >= 1, got 0"),
    ({"pinv_iterations": 2.5}, r"pinv_iterations must be an integer >= 1, got 2.5"),
    ({"approx": "performer", "normalization": "space_time"}, r"only implemented for exact attention"),
    ({"oversample": 2}, r"unknown trajectory option\(s\) oversample; valid: approx, num_prototypes"),
])
def test_bad_options_name_the_value_and_the_choices(values, message):
    with pytest.raises(ValueError, match=message):
        TrajectoryOptions.from_dict(values)


def test_module_takes_options_or_plain_keywords():
    options = TrajectoryOptions(approx="orthoformer", num_prototypes=4, oversampling=2)
    by_value = TrajectoryAttention(16, 2, options=options)
    by_keywords = TrajectoryAttention(16, 2, approx="orthoformer", num_prototypes=4, oversampling=2)
    assert by_value.options == by_keywords.options == options
    assert TrajectoryAttention(16, 2, options, oversampling=3).oversampling == 3


@pytest.mark.parametrize(("name", "value"), [("approx", "nystrom"), ("num_prototypes", 8),
                                             ("temporal_pooling", "average"), ("normalization", "space_time"),
                                             ("original_temporal_values", True), ("prototype_selection", "random"),
                                             ("shared_prototypes", False), ("prototype_source", "queries"),
                                             ("oversampling", 2), ("num_random_features", 32),
                                             ("pinv_iterations", 3), ("reference", True)])
def test_every_option_reaches_every_layer_from_create_model(name, value):
    model = create_model("mformer_tiny", depth=2, **{name: value})
    for block in model.blocks:
        assert block.attn.options.to_dict()[name] == value
    assert model.architecture["trajectory"][name] == value


def test_unknown_model_argument_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown model argument\(s\) oversample; valid: .*oversampling"):
        create_model("mformer_tiny", oversample=2)
