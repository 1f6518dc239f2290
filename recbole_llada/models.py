"""Which model names the runner accepts: RecBole's built-in recommenders plus the plugin's."""

from __future__ import annotations

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


def check_model_name(model: str) -> None:
    if model in PLUGIN_MODELS:
        return
    lower = model.lower()
    for modules in recbole_model_modules().values():
        if lower in modules:
            return
    sequential = ", ".join(recbole_model_modules()["sequential_recommender"])
    raise UserInputError(
        f"Unknown model {model!r}. Plugin models: {', '.join(PLUGIN_MODELS)}. RecBole's sequential models "
        f"(file names; use the class name, e.g. SASRec, GRU4Rec, BERT4Rec): {sequential}. General, context-aware "
        "and knowledge-aware RecBole models work too (see RecBole's model list). Names are case-sensitive."
    )
