"""Registers the plugin's models, datasets and trainers where RecBole 1.2.1 looks them up by name.

RecBole resolves names with fixed module paths (``recbole.model.sequential_recommender.<name lower>``,
``recbole.data.dataset.<Model>Dataset``, ``recbole.trainer.<Model>Trainer``) and reads a model's default
YAML from its own package. We place our classes at those names and add our model YAML to the internal
config layer, so user YAML and ``--key=value`` still override it exactly as for built-in models.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

from recbole_llada import resources


@dataclass(frozen=True)
class PluginModel:
    name: str
    module: str
    dataset_class: str | None = None
    trainer_class: str | None = None


PLUGIN_MODELS: dict[str, PluginModel] = {
    m.name: m
    for m in [
        PluginModel("FMLPRec", "recbole_llada.model.fmlp_rec"),
        PluginModel(
            "LLaDARec",
            "recbole_llada.model.llada_rec",
            dataset_class="recbole_llada.data.dataset:LLaDARecDataset",
            trainer_class="recbole_llada.training.trainer:LLaDARecTrainer",
        ),
    ]
}


def _import_attr(spec: str):
    module_name, attr = spec.split(":")
    return getattr(importlib.import_module(module_name), attr)


def _register_model(plugin: PluginModel) -> None:
    import recbole.data.dataset
    import recbole.trainer

    module = importlib.import_module(plugin.module)
    sys.modules[f"recbole.model.sequential_recommender.{plugin.name.lower()}"] = module
    if plugin.dataset_class:
        dataset_class = _import_attr(plugin.dataset_class)
        setattr(recbole.data.dataset, dataset_class.__name__, dataset_class)
    if plugin.trainer_class:
        trainer_class = _import_attr(plugin.trainer_class)
        setattr(recbole.trainer, trainer_class.__name__, trainer_class)


def _add_plugin_model_yaml() -> None:
    from recbole.config import Config

    original = Config._load_internal_config_dict
    if getattr(original, "_adds_plugin_yaml", False):
        return

    def load_internal_config_dict(self, model, model_class, dataset):
        original(self, model, model_class, dataset)
        model_yaml = resources.model_config(model)
        if model in PLUGIN_MODELS and model_yaml.is_file():
            self._update_internal_config_dict(str(model_yaml))

    load_internal_config_dict._adds_plugin_yaml = True
    Config._load_internal_config_dict = load_internal_config_dict


def register() -> None:
    _add_plugin_model_yaml()
    for plugin in PLUGIN_MODELS.values():
        _register_model(plugin)
