"""recbole-llada: LLaDA-Rec (discrete diffusion over parallel semantic IDs) as a RecBole plugin.

Importing the package applies the compatibility workarounds (``compat``) and registers the plugin's models,
dataset classes and trainers with RecBole, so RecBole's own entry points (``run_recbole``, ``get_model``,
``create_dataset``, ``get_trainer``, ``load_data_and_model``) find them by name.
"""

from recbole_llada import compat

compat.apply()

from recbole_llada.registry import PLUGIN_MODELS, register  # noqa: E402

register()

__version__ = "0.1.0"
__all__ = ["PLUGIN_MODELS", "__version__"]
