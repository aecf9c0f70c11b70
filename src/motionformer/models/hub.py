"""The Hugging Face Hub convention for this library's weights: a folder, or a Hub repository, holding
``config.json`` (the ``WeightsInfo`` record: architecture, input spec, class names, source, dataset) and
``model.safetensors`` (the state dict). Loading is strict: a missing, unexpected or mis-shaped tensor is an error
naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

from motionformer.models.motionformer import Motionformer
from motionformer.models.weights import WeightsInfo, read_weight_files, write_weight_files

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def save_pretrained(model: Motionformer, directory: str | os.PathLike, info: WeightsInfo | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` to ``directory`` (made if absent); returns it.

    ``info`` defaults to ``model.weights_info``, else the model's own frames and crop with default settings. The
    folder can be uploaded as it is, e.g. with ``huggingface_hub.upload_folder``.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} is a file; save_pretrained writes a folder ({CONFIG_NAME}, {WEIGHTS_NAME})")
    write_weight_files(model, directory / WEIGHTS_NAME, directory / CONFIG_NAME, info)
    return directory


def from_pretrained(name_or_path: str | os.PathLike, *, revision: str | None = None,
                    cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                    token: str | bool | None = None) -> Motionformer:
    """The model (eval mode, with ``weights_info``) of a local folder, else of the Hub repository ``owner/name``.

    ``revision``, ``cache_dir``, ``local_files_only`` and ``token`` are passed to ``huggingface_hub``'s download.
    Raises FileNotFoundError when the name is neither a folder nor a reachable repository holding both files.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return read_weight_files(path / WEIGHTS_NAME, path / CONFIG_NAME)
    if path.exists():
        raise ValueError(f"{path} is a file; from_pretrained reads a folder with {CONFIG_NAME} and {WEIGHTS_NAME} "
                         "(motionformer.models.from_checkpoint reads single weight files)")
    options = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    config, weights = (_download(str(name_or_path), name, options) for name in (CONFIG_NAME, WEIGHTS_NAME))
    return read_weight_files(weights, config)


def _download(repo_id: str, filename: str, options: dict) -> Path:
    """The local path of ``filename`` of the Hub repository ``repo_id``; FileNotFoundError naming both."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    try:
        return Path(hf_hub_download(repo_id, filename, **options))
    except HFValidationError:
        raise FileNotFoundError(f"{repo_id}: no such folder, and not a Hugging Face Hub repository id "
                                "(owner/name)") from None
    except (OSError, EntryNotFoundError) as error:  # HTTP errors, missing repositories and files, no connection
        raise FileNotFoundError(f"{repo_id}: no such folder, and {filename} could not be had from the Hugging Face "
                                f"Hub ({type(error).__name__}: {str(error).splitlines()[0]})") from error
