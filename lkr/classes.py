"""One canonical vocabulary of expression classes, in the paper's table order.

Tables 2 and 3 of the paper list Anger, Disgust, Fear, Happiness, Sadness, Surprise, then
Contempt (CK+) or Neutral (FER2013). Each dataset keeps its own seven ``class_names`` in that
order; labels index into them. FER2013's CSV codes 0..6 (Angry, Disgust, Fear, Happy, Sad,
Surprise, Neutral) are already in this order.
"""

from __future__ import annotations

CANONICAL: tuple[str, ...] = (
    "anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral", "contempt",
)
FER2013_CLASSES: tuple[str, ...] = (
    "anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral",
)
CKPLUS_CLASSES: tuple[str, ...] = (
    "anger", "disgust", "fear", "happiness", "sadness", "surprise", "contempt",
)

# Names used by the releases users have, mapped to canonical names.
ALIASES: dict[str, str] = {
    "anger": "anger", "angry": "anger",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "scared": "fear",
    "happiness": "happiness", "happy": "happiness",
    "sadness": "sadness", "sad": "sadness",
    "surprise": "surprise", "surprised": "surprise",
    "neutral": "neutral", "neutrality": "neutral",
    "contempt": "contempt",
}

# The full CK+ release's Emotion/*.txt codes (1..7).
CKPLUS_EMOTION_CODES: dict[int, str] = {
    1: "anger", 2: "contempt", 3: "disgust", 4: "fear", 5: "happiness", 6: "sadness", 7: "surprise",
}


def canonical(name: str) -> str:
    """Map a release's class name (any case) to the canonical name.

    Raises:
        KeyError: if the name is no known expression.
    """
    return ALIASES[name.strip().lower()]


def short(name: str) -> str:
    """Short display name ("happiness" -> "Happy")."""
    return {"anger": "Anger", "disgust": "Disgust", "fear": "Fear", "happiness": "Happy",
            "sadness": "Sad", "surprise": "Surprise", "neutral": "Neutral",
            "contempt": "Contempt"}[name]
