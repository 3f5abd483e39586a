"""Offline dataset builders returning HF `datasets.Dataset` objects.

Text comes from what Python ships (pydoc's topic help, the stdlib's own source); images and puzzles
come from scikit-learn's digits and procedural generators. The same builders accept local text files
or a Hub dataset name, so a learner with internet can swap in real data without touching a chapter.
"""

from labcore.data.text import (
    course_corpus,
    encode_corpus,
    from_hub,
    from_text_files,
    random_windows,
    stdlib_code,
    stdlib_prose,
    train_val_split,
)

__all__ = ["course_corpus", "encode_corpus", "from_hub", "from_text_files", "random_windows",
           "stdlib_code", "stdlib_prose", "train_val_split"]
