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


def _lower_names() -> dict[str, str | None]:
    """Every model name, lower-cased -> its RecBole family (None: a plugin model)."""
    names: dict[str, str | None] = {module: family for family, modules in recbole_model_modules().items()
                                    for module in modules}
    names.update({name.lower(): None for name in PLUGIN_MODELS})
    return names


def _proper_name(lower: str, family: str | None) -> str | None:
    if family is None:
        return next(name for name in PLUGIN_MODELS if name.lower() == lower)
    return _class_name(family, lower)


def check_model_name(model: str) -> None:
    """Raise a ``UserInputError`` unless ``model`` is the exact class name of a RecBole or plugin model; suggest the
    right spelling (RecBole finds model files by the lower-cased name, then fails on the class name)."""
    if model in PLUGIN_MODELS:
        return
    names, lower = _lower_names(), model.lower()
    if names.get(lower) is not None and _class_name(names[lower], lower) == model:
        return
    closest = [lower] if lower in names else difflib.get_close_matches(lower, list(names), n=1)
    hint = f" Did you mean {_proper_name(closest[0], names[closest[0]])!r}?" if closest else ""
    sequential = ", ".join(filter(None, (_class_name("sequential_recommender", module)
                                         for module in recbole_model_modules()["sequential_recommender"])))
    raise UserInputError(
        f"Unknown model {model!r}.{hint} Model names are case-sensitive. Plugin models: {', '.join(PLUGIN_MODELS)}. "
        f"RecBole's sequential models: {sequential}. General, context-aware and knowledge-aware RecBole models "
        "work too (see RecBole's model list)."
    )
