"""What each dataset's annotations mean: class lists, label orders, label words and official folds.

Shared by the official-layout readers (:mod:`ifdd_bench.data.readers`), the list importers
(:mod:`ifdd_bench.data.lists`), ``data check``, the SynthDFER generator and the sweep planner.
Class orders are fixed per dataset (0-based indices). No torch, no file access.
"""

from __future__ import annotations

from ifdd_bench.errors import ConfigError, suggest

#: DFEW (and SynthDFER, which is written in the DFEW layout): official 1-based labels minus one.
DFEW_CLASSES = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
#: FERV39k as the IFDD reference maps it (alphabetical).
FERV39K_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
#: MAFW official 11-class order (MAE-DFER and IFDD use it).
MAFW_CLASSES = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise",
                "contempt", "anxiety", "helplessness", "disappointment")
#: MAFW order used by DFER-CLIP / MMA-DFER list files.
MAFW_CLASSES_DFERCLIP = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear",
                         "contempt", "anxiety", "helplessness", "disappointment")

#: dataset -> label order name -> class names in index order (``data.label_order``)
LABEL_ORDERS = {
    "synth": {"official": DFEW_CLASSES},
    "dfew": {"official": DFEW_CLASSES},
    "ferv39k": {"official": FERV39K_CLASSES, "dfew": DFEW_CLASSES},
    "mafw": {"official": MAFW_CLASSES, "dferclip": MAFW_CLASSES_DFERCLIP},
}

#: number of official folds per dataset (SynthDFER is written in the DFEW layout); the one home of
#: this fact: the readers, ``data check``, the engine, the sweep planner and the generator read it
NUM_FOLDS = {"synth": 5, "dfew": 5, "ferv39k": 1, "mafw": 5}

#: MAFW official index -> DFER-CLIP index (both orders share the 4 extra classes at 7..10).
MAFW_OFFICIAL_TO_DFERCLIP = tuple(MAFW_CLASSES_DFERCLIP.index(name) for name in MAFW_CLASSES)

#: word variants seen in annotation files -> one canonical key per emotion
_LABEL_ALIASES = {
    "happy": "happy", "happiness": "happy", "sad": "sad", "sadness": "sad", "neutral": "neutral",
    "angry": "angry", "anger": "angry", "surprise": "surprise", "surprised": "surprise",
    "disgust": "disgust", "disgusted": "disgust", "fear": "fear", "fearful": "fear",
    "contempt": "contempt", "anxiety": "anxiety", "helplessness": "helplessness",
    "disappointment": "disappointment",
}


def classes_for(dataset: str, label_order: str = "official") -> tuple[str, ...]:
    """Class names (index order) of ``dataset`` under ``label_order``."""
    if dataset not in LABEL_ORDERS:
        raise ConfigError(f"unknown dataset {dataset!r}{suggest(dataset, LABEL_ORDERS)}; "
                          f"valid: {', '.join(LABEL_ORDERS)}")
    orders = LABEL_ORDERS[dataset]
    if label_order not in orders:
        raise ConfigError(f"data.label_order={label_order!r} is not available for {dataset}; "
                          f"valid: {', '.join(orders)}")
    return orders[label_order]


def label_index(word: str, classes: tuple[str, ...]) -> int | None:
    """Index of the emotion ``word`` in ``classes`` (case-insensitive, common variants accepted)."""
    key = _LABEL_ALIASES.get(word.strip().lower())
    if key is None:
        return None
    for i, name in enumerate(classes):
        if _LABEL_ALIASES.get(name) == key:
            return i
    return None
