"""Check a run's configuration before any data is loaded: unknown keys, wrong types, values out of range.

RecBole accepts any key and reads values lazily, so a misspelt key is silently ignored and a bad value fails
deep inside training, after an epoch or more. Here every key the user sets (config files and ``--key=value``
overrides) must be a key RecBole or recbole-llada knows, and every value must have its default's type and lie in
its range; each mistake ends in a ``UserInputError`` naming the key, where it was set, and the fix.

Known keys: RecBole's YAML property files and its argument lists, the few keys RecBole reads in code without a
YAML default (``RECBOLE_CODE_KEYS``), our YAML files (``properties/``, ``dataset_configs/``), the ``sid_*`` keys of
``SIDConfig`` and ``SCHEMA``. A key's type comes from its default in those YAML files (int, float or bool);
``SCHEMA`` adds ranges and choices, and types for keys whose default is null. New plugin keys need only a YAML
default; add them to ``SCHEMA`` when they have a range or a fixed set of choices.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from recbole_llada import resources
from recbole_llada.decoding.beam_search import DECODING_ORDERS
from recbole_llada.devices import PRECISIONS
from recbole_llada.errors import UserInputError
from recbole_llada.model.layers import ATTENTION_KINDS
from recbole_llada.model.llada_rec import COMPILE_MODES, INIT_SCHEMES, ITEM_SCORER_LOSSES, ITEM_SCORERS, SCORING_MODES

COMMAND_LINE = "--key=value overrides"


@dataclass(frozen=True)
class Rule:
    """What a key accepts. ``kind``: int, float, bool or str (None: whatever type its YAML default has)."""

    kind: type | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None
    nullable: bool = False
    exclusive_minimum: bool = False  # minimum itself is not allowed (a rate, a temperature)


_POSITIVE = Rule(minimum=1)
_NON_NEGATIVE = Rule(minimum=0)
_PROBABILITY = Rule(minimum=0, maximum=1)

SCHEMA: dict[str, Rule] = {
    # RecBole's training and evaluation keys that every model reads
    "epochs": _POSITIVE,
    "train_batch_size": _POSITIVE,
    "eval_batch_size": _POSITIVE,
    "stopping_step": _NON_NEGATIVE,
    "eval_step": _NON_NEGATIVE,
    "learning_rate": _NON_NEGATIVE,  # 0 freezes the weights (a baseline for a search), negative is refused
    "weight_decay": _NON_NEGATIVE,
    "MAX_ITEM_LIST_LENGTH": _POSITIVE,
    # LLaDARec
    "hidden_size": _POSITIVE,
    "n_layers": _POSITIVE,
    "n_heads": _POSITIVE,
    "mlp_ratio": Rule(minimum=0, exclusive_minimum=True),
    "dropout_prob": _PROBABILITY,
    "attention": Rule(str, choices=ATTENTION_KINDS),
    "temperature": Rule(minimum=0, exclusive_minimum=True),
    "item_mask_weight": _NON_NEGATIVE,
    "his_mask_weight": _NON_NEGATIVE,
    "warmup_ratio": _PROBABILITY,
    "gen_steps": _POSITIVE,
    "gen_order": Rule(str, choices=DECODING_ORDERS),
    "num_beams": _POSITIVE,
    "valid_num_beams": _POSITIVE,
    "decode_batch_size": _POSITIVE,
    "train_time_budget": Rule(float, minimum=0, exclusive_minimum=True, nullable=True),
    "init": Rule(str, choices=INIT_SCHEMES),
    "compile_mode": Rule(str, choices=COMPILE_MODES),
    "precision": Rule(str, choices=PRECISIONS),
    "scoring": Rule(str, choices=SCORING_MODES),
    "valid_scoring": Rule(str, choices=SCORING_MODES),
    "rescore_candidates": _POSITIVE,
    "item_scorer": Rule(str, choices=ITEM_SCORERS),
    "item_scorer_weight": _NON_NEGATIVE,
    "item_scorer_loss": Rule(str, choices=ITEM_SCORER_LOSSES),
    "item_scorer_backbone": Rule(str, nullable=True),
    # semantic IDs (types and choices: SIDConfig)
    "sid_length": Rule(int, minimum=1),
    "sid_codebook_size": Rule(int, minimum=2),
    "sid_code_dim": Rule(int, minimum=1),
    "sid_epochs": Rule(int, minimum=1, nullable=True),
    "sid_batch_size": Rule(int, minimum=1),
    "sid_encode_batch_size": Rule(int, minimum=1),
    "sid_check_every": Rule(int, minimum=1),
    "sid_collab_epochs": Rule(int, minimum=1),
    "sid_collab_hidden_size": Rule(int, minimum=1),
    "sid_cooc_dim": Rule(int, minimum=1),
    # the Amazon 2023 preparation
    "amazon2023_category": Rule(str, nullable=True),
}

# Keys this plugin read before, and what replaced them: a user's old config gets the new name, not "unknown key".
RENAMED_KEYS: dict[str, str] = {
    "sid_n_heads": "sid_length (M, the tokens per item; n_heads is the attention heads)",
    "max_grad_norm": "RecBole's clip_grad_norm, e.g. clip_grad_norm: {max_norm: 1.0}",
}

# Keys RecBole reads in its code (or sets itself) without a default in its YAML property files.
RECBOLE_CODE_KEYS = frozenset({
    "model", "dataset", "device", "local_rank", "world_size", "nproc", "ip", "port", "offset", "single_spec",
    "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "valid_neg_sample_args", "test_neg_sample_args",
    "CROP_ITEM_SEQ", "CROP_ITEM_SEQ_LEN", "INVERSE_ITEM_SEQ", "MASK_INDEX", "MASK_ITEM_SEQ", "NEG_ITEMS",
    "POS_ITEMS", "REORDER_ITEM_SEQ", "cin", "contrast", "encoding", "eta", "feature_num", "has_residual", "norm",
    "sim", "tail_ratio", "token_num_threshold", "use_filter", "xgb_early_stopping_rounds",
})


def _recbole_properties() -> Path:
    import recbole

    return Path(recbole.__file__).resolve().parent / "properties"


def _yaml_keys(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        loaded = yaml.safe_load(handle)
    return loaded if isinstance(loaded, dict) else {}


@lru_cache(maxsize=1)
def known_keys() -> frozenset[str]:
    """Every key RecBole or recbole-llada reads."""
    from recbole.utils import argument_list

    from recbole_llada.sid.build import SIDConfig

    recbole_dir = _recbole_properties()
    files = [recbole_dir / "overall.yaml", recbole_dir / "dataset" / "sample.yaml",
             recbole_dir / "dataset" / "ml-100k.yaml", *(recbole_dir / "model").glob("*.yaml"),
             *(recbole_dir / "quick_start_config").glob("*.yaml"), *resources.properties_dir().rglob("*.yaml"),
             *resources.dataset_configs_dir().glob("*.yaml")]
    keys = set(RECBOLE_CODE_KEYS) | set(SCHEMA)
    for path in files:
        keys.update(_yaml_keys(path))
    for arguments in (argument_list.general_arguments, argument_list.training_arguments,
                      argument_list.evaluation_arguments, argument_list.dataset_arguments):
        keys.update(arguments)
    keys.update(SIDConfig.config_key(field.name) for field in SIDConfig.__dataclass_fields__.values())
    return frozenset(keys)


def _default_files(model: str) -> list[Path]:
    """The YAML files whose values are ``model``'s defaults (types of keys come from these)."""
    recbole_dir = _recbole_properties()
    files = [recbole_dir / "overall.yaml", recbole_dir / "dataset" / "sample.yaml", resources.overall_config()]
    recbole_model_yaml = recbole_dir / "model" / f"{model}.yaml"
    return [*files, recbole_model_yaml, resources.model_config(model)]


@lru_cache(maxsize=None)
def default_types(model: str) -> dict[str, type]:
    """Key -> int, float or bool, from the non-null defaults of ``model``'s YAML files (int in one, float in another:
    float; other disagreements: no type)."""
    types: dict[str, type] = {}
    ambiguous: set[str] = set()
    for path in _default_files(model):
        if not path.is_file():
            continue
        for key, value in _yaml_keys(path).items():
            if not isinstance(value, (bool, int, float)):
                continue
            previous, kind = types.get(key), type(value)
            if previous is None or previous is kind:
                types[key] = kind
            elif {previous, kind} == {int, float}:
                types[key] = float
            else:
                ambiguous.add(key)
    return {key: kind for key, kind in types.items() if key not in ambiguous}


def check_unknown_keys(keys: Iterable[str], source: str) -> None:
    """Raise for the first key that neither RecBole nor recbole-llada reads, with the closest known keys."""
    known = known_keys()
    for key in keys:
        if key in RENAMED_KEYS:
            raise UserInputError(f"Config key {key!r} (set in {source}) was renamed to {RENAMED_KEYS[key]}.")
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UserInputError(
            f"Unknown config key {key!r} (set in {source}).{hint} RecBole and recbole-llada ignore keys they "
            "do not know, so a misspelt key would silently leave the default in place; the known keys are "
            "those of RecBole's property files and of this plugin's properties/ YAML files."
        )


def _describe(rule: Rule, kind: type) -> str:
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[kind]
    if rule.choices:
        words = f"one of {', '.join(map(str, rule.choices))}"
    if rule.minimum is not None:
        words += f" {'>' if rule.exclusive_minimum else '>='} {rule.minimum}"
    if rule.maximum is not None:
        words += f"{' and' if rule.minimum is not None else ''} <= {rule.maximum}"
    if rule.nullable:
        words += " (or ~ for none)"
    return words


def _valid(value: Any, rule: Rule, kind: type) -> bool:
    if value is None:
        return rule.nullable
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is int and not isinstance(value, int):
        return False
    if kind is float and not isinstance(value, (int, float)):
        return False
    if kind is str and not isinstance(value, str):
        return False
    if rule.choices is not None and value not in rule.choices:
        return False
    if rule.minimum is not None and (value < rule.minimum or (rule.exclusive_minimum and value == rule.minimum)):
        return False
    return rule.maximum is None or value <= rule.maximum


def check_values(model: str, values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """Raise for the first value in ``values`` (final config values of the keys the user set) that does not fit
    its key's type or range. ``sources`` says where each key was set, for the message."""
    types = default_types(model)
    for key, value in values.items():
        rule = SCHEMA.get(key, Rule())
        kind = rule.kind or types.get(key)
        if kind is None:
            continue
        if not _valid(value, rule, kind):
            raise UserInputError(
                f"Config key {key!r} is {value!r} (set in {sources.get(key, COMMAND_LINE)}), but it must be "
                f"{_describe(rule, kind)}. Fix the value, or remove it to use the default."
            )


def load_user_config_file(path: Path) -> dict[str, Any]:
    """A user YAML file's mapping, read as RecBole reads it; malformed files end in a ``UserInputError``."""
    from recbole.config import Config

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserInputError(f"Cannot read config file {str(path)!r}: {error}.") from error
    try:
        loaded = yaml.load(text, Loader=Config._build_yaml_loader(None))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise UserInputError(
            f"Config file {str(path)!r} is not valid YAML{where}: {problem}. A config file holds one "
            "'key: value' per line, e.g. 'epochs: 10'."
        ) from error
    if not isinstance(loaded, dict):
        found = "nothing" if loaded is None else f"a {type(loaded).__name__}"
        raise UserInputError(
            f"Config file {str(path)!r} must be a YAML mapping of 'key: value' lines (e.g. 'epochs: 10'), but it "
            f"holds {found}."
        )
    return loaded


def check_semantic_id_config(config: Any) -> None:
    """LLaDARec's semantic-ID keys (``SIDConfig`` reads and checks them)."""
    from recbole_llada.sid.build import SIDConfig

    try:
        sid = SIDConfig.from_config(config)
    except ValueError as error:
        raise UserInputError(f"Semantic-ID configuration: {error}. The sid_* keys, their defaults and "
                             "meanings are listed in properties/model/LLaDARec.yaml.") from error
    if sid.content_source == "file":
        for key, path in (("sid_embedding_file", sid.embedding_file), ("sid_embedding_ids_file",
                                                                       sid.embedding_ids_file)):
            if not Path(path).is_file():
                raise UserInputError(f"{key} {path!r} does not exist: item_embedding: file reads the item vectors "
                                     "from it. Fix the path, or use item_embedding: text or collaborative.")
    _check_pca_width(sid)


def _collaborative_width(sid: Any) -> tuple[int, str] | None:
    """Width of the item vectors ``item_embedding: collaborative`` feeds the PCA, and the keys that set it; None when
    the width is only known once the data is loaded (text or file vectors, alone or fused with collaborative ones).

    SASRec's item table is ``sid_collab_hidden_size`` wide, the transition SVD keeps ``sid_cooc_dim`` singular
    vectors, and fusing both concatenates them (``LLaDARecDataset._item_embeddings``, ``fuse_embeddings``)."""
    if sid.item_embedding != "collaborative":
        return None
    widths = {"sasrec": (sid.collab_hidden_size, f"sid_collab_hidden_size ({sid.collab_hidden_size})"),
              "cooccurrence": (sid.cooc_dim, f"sid_cooc_dim ({sid.cooc_dim})")}
    parts = [widths[source] for source in sid.collab_source.split("+")]
    return sum(width for width, _ in parts), " + ".join(name for _, name in parts)


def _check_pca_width(sid: Any) -> None:
    """``sid_pca_dim`` within the width of collaborative item vectors. Every tokenizer whitens the vectors with a
    PCA first (``sid.build._quantize``), which cannot keep more axes than the vectors have; without this check the
    mistake surfaces only after the data is loaded (and SASRec trained)."""
    known = _collaborative_width(sid)
    if sid.pca_dim <= 0 or known is None:
        return
    width, keys = known
    if sid.pca_dim > width:
        raise UserInputError(
            f"sid_pca_dim is {sid.pca_dim}, but item_embedding: collaborative with sid_collab_source: "
            f"{sid.collab_source} gives {width}-dimensional item vectors (width = {keys}), and the PCA cannot keep "
            f"more axes than that: set sid_pca_dim to at most {width} or 0 (no PCA), or widen the vectors."
        )


def check_item_scorer(config: Any) -> None:
    """LLaDARec's ``item_scorer_loss`` and ``item_scorer_backbone``: a scorer to train with them, an existing
    checkpoint."""
    if config["item_scorer_loss"] == "fused" and config["item_scorer"] == "none":
        raise UserInputError("item_scorer_loss: fused trains the item scorer on scorer + marginal scores, but "
                             "item_scorer is none: set item_scorer: sid (or leave item_scorer_loss: scorer).")
    path = config["item_scorer_backbone"]
    if not path:
        return
    if config["item_scorer"] == "none":
        raise UserInputError("item_scorer_backbone trains an item scorer on a frozen LLaDARec, but item_scorer is "
                             "none: set item_scorer: sid (and item_scorer_id_embedding: True for a per-item vector).")
    if not Path(path).is_file():
        raise UserInputError(f"item_scorer_backbone {path!r} does not exist: it must be a trained LLaDARec checkpoint "
                             "(.pth under saved/).")


def check_decoding_steps(config: Any) -> None:
    """LLaDARec's ``gen_steps`` against the number of tokens per item it decodes."""
    if not 1 <= config["gen_steps"] <= config["sid_length"]:
        raise UserInputError(
            f"gen_steps is {config['gen_steps']}, but it must lie between 1 and sid_length ({config['sid_length']}): "
            "each denoising step commits at least one of the item's sid_length tokens."
        )
