"""Which model names the runner accepts: RecBole's built-in recommenders plus the plugin's."""

from __future__ import annotations

import difflib
import pkgutil
from functools import lru_cache

from recbole_llada.errors import UserInputError
from recbole_llada.registry import PLUGIN_MODELS

_RECBOLE_FAMILIES = ("sequential_recommender", "general_recommender", "context_aware_recommender",
                     "knowledge_aware_recommender")


@lru_cache(maxsize=1)
def recbole_model_modules() -> dict[str, list[str]]:
    """Module names per RecBole model family (RecBole names model files after the lower-cased class name)."""
    families = {}
    for family in _RECBOLE_FAMILIES:
        package = __import__(f"recbole.model.{family}", fromlist=["__path__"])
        families[family] = sorted(m.name for m in pkgutil.iter_modules(package.__path__))
    return families


def _class_name(family: str, module: str) -> str | None:
    """The model class RecBole's ``get_model`` finds in a model file (named after its lower-cased class name)."""
    import importlib

    module_object = importlib.import_module(f"recbole.model.{family}.{module}")
    return next((name for name in vars(module_object) if name.lower() == module), None)


def check_model_name(model: str) -> None:
    if model in PLUGIN_MODELS:
        return
    lower = model.lower()
    suggestion = next((name for name in PLUGIN_MODELS if name.lower() == lower), None)
    for family, modules in recbole_model_modules().items():
        if lower in modules:
            class_name = _class_name(family, lower)
            if class_name == model:
                return
            suggestion = suggestion or class_name
    if suggestion is None:
        every_module = [m for modules in recbole_model_modules().values() for m in modules]
        close = difflib.get_close_matches(lower, [*every_module, *(p.lower() for p in PLUGIN_MODELS)], n=1)
        if close:
            plugin = next((name for name in PLUGIN_MODELS if name.lower() == close[0]), None)
            family = next(f for f, modules in recbole_model_modules().items() if close[0] in modules) \
                if plugin is None else None
            suggestion = plugin or _class_name(family, close[0])
    hint = f" Did you mean {suggestion!r}?" if suggestion else ""
    sequential = ", ".join(filter(None, (_class_name("sequential_recommender", module)
                                         for module in recbole_model_modules()["sequential_recommender"])))
    raise UserInputError(
        f"Unknown model {model!r}.{hint} Model names are case-sensitive. Plugin models: {', '.join(PLUGIN_MODELS)}. "
        f"RecBole's sequential models: {sequential}. General, context-aware and knowledge-aware RecBole models "
        "work too (see RecBole's model list)."
    )
