"""Where the YAML configs live: the source checkout's ``properties/`` and ``dataset_configs/``.

``setup.py`` maps both folders into the package (``recbole_llada/_properties``, ``recbole_llada/_dataset_configs``)
for non-editable installs; a checkout or editable install reads them in place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from recbole_llada.errors import UserInputError

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parent


def _resource_dir(name: str) -> Path:
    in_checkout = _REPO_ROOT / name
    if in_checkout.is_dir():
        return in_checkout
    return _PACKAGE_DIR / f"_{name}"


def properties_dir() -> Path:
    return _resource_dir("properties")


def dataset_configs_dir() -> Path:
    return _resource_dir("dataset_configs")


def overall_config() -> Path:
    return properties_dir() / "overall.yaml"


def model_config(model: str) -> Path:
    return properties_dir() / "model" / f"{model}.yaml"


def model_dataset_config(model: str, dataset: str) -> Path:
    """``model``'s settings on ``dataset``, loaded automatically for that pair."""
    return properties_dir() / "model_dataset" / f"{model}-{dataset}.yaml"


def demo_config(model: str, dataset: str) -> Path:
    """A small CPU configuration of ``model`` on ``dataset`` (``make demo``), passed with ``--config_files``."""
    return properties_dir() / "demo" / f"{model}-{dataset}.yaml"


def dataset_config(dataset: str) -> Path:
    return dataset_configs_dir() / f"{dataset}.yaml"


def available_dataset_configs() -> list[str]:
    return sorted(p.stem for p in dataset_configs_dir().glob("*.yaml"))


class RecBoleYamlLoader(yaml.SafeLoader):
    """Reads ``1e-4`` as a float, as RecBole's own config loader does (plain YAML 1.1 reads it as a string)."""


RecBoleYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+"
               r"(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML file's mapping of config keys, read as RecBole reads it."""
    with open(path, encoding="utf-8") as f:
        loaded = yaml.load(f, Loader=RecBoleYamlLoader)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserInputError(f"{path} must hold a mapping of config keys, found {type(loaded).__name__}.")
    return loaded
