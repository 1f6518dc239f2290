"""Where the YAML configs live: the source checkout's ``properties/`` and ``dataset_configs/``.

``setup.py`` maps both folders into the package (``recbole_llada/_properties``, ``recbole_llada/_dataset_configs``)
for non-editable installs; a checkout or editable install reads them in place.
"""

from __future__ import annotations

from pathlib import Path

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


def dataset_config(dataset: str) -> Path:
    return dataset_configs_dir() / f"{dataset}.yaml"


def available_dataset_configs() -> list[str]:
    return sorted(p.stem for p in dataset_configs_dir().glob("*.yaml"))
