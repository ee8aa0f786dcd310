"""Language detection on the short texts people actually send, in the six default languages."""

from __future__ import annotations

import pytest

from intake.classify import detect_language
from intake.config import Settings

SHORT_TEXTS = [
    ("en", "When is the deadline to apply?"),
    ("en", "Thanks, see you Tuesday."),
    ("en", "Is the stipend taxable?"),
    ("es", "¿Cuándo cierra la convocatoria?"),
    ("es", "Quiero ser voluntaria."),
    ("es", "Gracias por la respuesta."),
    ("fr", "Bonjour, je voudrais postuler."),
    ("fr", "Merci beaucoup pour votre aide."),
    ("fr", "Je suis journaliste au Monde."),
    ("de", "Wie kann ich mich bewerben?"),
    ("de", "Vielen Dank für die schnelle Antwort."),
    ("de", "Ich bin bis Montag nicht im Büro."),
    ("pt", "Quando abrem as inscrições?"),
    ("pt", "Obrigada pela resposta!"),
    ("pt", "Gostaria de ser voluntário."),
    ("ko", "지원 마감일이 언제인가요?"),
    ("ko", "감사합니다."),
    ("ko", "면접 일정 문의드립니다."),
]


@pytest.fixture(scope="module")
def plain_settings() -> Settings:
    return Settings.from_env({})


@pytest.mark.parametrize("expected,text", SHORT_TEXTS)
def test_short_texts_in_the_six_default_languages(plain_settings, expected, text):
    assert detect_language(text, plain_settings) == expected


def test_nothing_to_detect_gives_none(plain_settings):
    assert detect_language("", plain_settings) is None
    assert detect_language("  12345 -- !!", plain_settings) is None


def test_detection_is_limited_to_the_configured_languages(tmp_path):
    config = tmp_path / "intake.toml"
    config.write_text('[classifier]\nlanguages = ["en", "es"]\n', encoding="utf-8")
    settings = Settings.from_env({"INTAKE_CONFIG": str(config)})
    # Portuguese is not configured: the closest configured language is the answer, never "pt".
    assert detect_language("Obrigada pela resposta, até amanhã!", settings) in ("es", "en")
    assert detect_language("Hello, when is the deadline?", settings) == "en"


def test_the_default_detector_is_the_small_one_and_the_large_one_can_be_chosen(tmp_path):
    """Low-accuracy mode keeps a worker under its memory budget (bench/worker_memory.py);
    high-accuracy mode stays a setting away, and both get the desk's short texts right."""
    assert Settings.from_env({}).classifier.language_low_memory is True
    config = tmp_path / "intake.toml"
    config.write_text("[classifier]\nlanguage_low_memory = false\n", encoding="utf-8")
    settings = Settings.from_env({"INTAKE_CONFIG": str(config)})
    assert settings.classifier.language_low_memory is False
    for expected, text in SHORT_TEXTS:
        assert detect_language(text, settings) == expected, text
