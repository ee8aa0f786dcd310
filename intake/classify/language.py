"""Language of the latest reply, among the languages the program expects.

lingua is limited to the configured languages (`[classifier] languages`): the fewer candidates,
the better it does on a two-line email, and it works offline with no model download (the
measurements are in DESIGN.md). Building a detector takes a while, so one is built per process
and per language set.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Sequence

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

if TYPE_CHECKING:  # pragma: no cover
    from intake.config import Settings

log = logging.getLogger(__name__)

# Enough text to decide; lingua's cost grows with length and the opening says it all.
MAX_DETECT_CHARS = 1000
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)

_lock = threading.Lock()
_detectors: dict[tuple[tuple[str, ...], bool], LanguageDetector] = {}


def _language(code: str) -> Language | None:
    try:
        return Language.from_iso_code_639_1(IsoCode639_1.from_str(code))
    except ValueError:
        log.error("[classifier] languages: %r is not an ISO 639-1 code lingua knows; ignored", code)
        return None


def detector_for(codes: Sequence[str], low_memory: bool) -> LanguageDetector | None:
    """Low-accuracy mode by default (`[classifier] language_low_memory = true`): its trigram
    models take about 15 MB per process where high-accuracy mode's take about 155 MB, which put
    a worker over 300 MB (bench/worker_memory.py). On whole emails and on the short texts a desk
    gets, the two agree with the labels alike; on only the first 3 words of the seed messages
    low-accuracy mode agrees with the full-text answer 83% of the time against 95% (5 words:
    93.5% vs 99.5%). `language_low_memory = false` picks the large one."""
    key = (tuple(sorted(codes)), low_memory)
    with _lock:
        if key not in _detectors:
            languages = [lang for lang in (_language(c) for c in key[0]) if lang is not None]
            if len(languages) < 2:
                return None  # zero or one candidate: nothing to detect
            builder = LanguageDetectorBuilder.from_languages(*languages)
            if low_memory:
                builder = builder.with_low_accuracy_mode()
            _detectors[key] = builder.build()
        return _detectors[key]


def detect_language(text: str, settings: "Settings") -> str | None:
    """ISO 639-1 code of the text, or None when there is nothing to go on."""
    sample = (text or "")[:MAX_DETECT_CHARS]
    if len(_LETTER.findall(sample)) < 2:
        return None
    codes = settings.classifier.languages
    detector = detector_for(codes, settings.classifier.language_low_memory)
    if detector is None:
        return codes[0] if len(codes) == 1 else None
    language = detector.detect_language_of(sample)
    if language is None:
        return None
    return language.iso_code_639_1.name.lower()
