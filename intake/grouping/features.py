"""What an inquiry asks, as tokens that compare across senders and languages.

Two kinds of token, because two kinds of evidence say that two emails ask the same thing:

* **Topic tokens** (``§deadline``): the questions a fellowship desk gets again and again, each
  written as the words people use for it in English, Spanish, French and Portuguese. "fecha
  límite", "date limite", "prazo" and "deadline" are one token, which is what lets a Spanish and
  a French email about the deadline land in the same group without a translation model. The
  table is domain knowledge, like the classifier's cue words (``classify/cues.py``); a topic it
  does not know is still grouped, by its words, within one language.
* **Word tokens**: the remaining words, stopwords removed and stemmed in the inquiry's own
  language (the classifier's ``language``), so "postulé", "postular" and "postulación" match.

Text is accent-folded first so that a missing accent ("postulacion") changes nothing.
Stemming uses snowballstemmer (the Snowball project's own Python port, used by Sphinx: stemmers
for every language we detect, pure Python, no download) and stopwords come from ``stop-words``
(maintained lists for 30+ languages shipped inside the package; NLTK's need a download at run
time, which fails offline).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Iterable

import snowballstemmer
from stop_words import get_stop_words

# Languages the detector may return -> Snowball / stop-words names. Others get no stemming.
LANGUAGE_NAMES = {"en": "english", "es": "spanish", "fr": "french", "pt": "portuguese", "de": "german"}
DEFAULT_LANGUAGE = "en"
MAX_TEXT_CHARS = 1500
TOPIC_PREFIX = "§"

# Salutations and sign-offs: in every language, in nearly every email, and about nothing.
COURTESY = frozenset("""
hi hello hey dear thanks thank regards best cheers kind sincerely team
hola buenas buenos dias tardes gracias saludos saludo cordiales atentamente muchas estimado estimada
bonjour bonsoir merci cordialement salutations madame monsieur avance bien vous
ola oi bom dia obrigado obrigada atenciosamente abracos
hallo danke gruesse grusse freundlichen
""".split())

# The questions a fellowship inbox keeps getting, in the words people write them with
# (accent-folded, lower case; regular expressions matched on whole words).
TOPICS: dict[str, tuple[str, ...]] = {
    "deadline": (
        r"deadlines?", r"due date", r"closing date", r"last day", r"applications? close",
        r"when do(?:es)? (?:the )?applications? close", r"fecha limite", r"plazos?", r"cierra\w*",
        r"cierre", r"hasta cuando", r"date limite", r"cloture", r"jusqu'?a quand", r"echeance",
        r"prazos?", r"data limite", r"encerra\w*", r"ate quando", r"frist", r"bewerbungsschluss",
    ),
    "citizenship and visas": (
        r"citizens?", r"citizenship", r"non-?citizens?", r"visas?", r"work permit",
        r"work authori[sz]ation", r"green card", r"sponsor(?:ship)? (?:a |my |the |work )?visas?",
        r"international applicants?", r"foreign(?:ers?)?", r"ciudadan\w+", r"nacionalidad",
        r"extranjer\w+", r"permiso de trabajo", r"citoyen\w*", r"nationalite", r"etrangers?",
        r"permis de travail", r"titre de sejour", r"cidadan\w+", r"cidadao", r"nacionalidade",
        r"estrangeir\w+", r"autorizacao de trabalho", r"staatsburger\w*", r"arbeitserlaubnis",
    ),
    "remote or relocation": (
        r"remote(?:ly)?", r"in[- ]person", r"on[- ]?site", r"relocat\w+", r"move to", r"hybrid",
        r"work from home", r"remot[oa]s?", r"a distancia", r"presencial\w*", r"mudar(?:me|se)?",
        r"trasladar\w*", r"reubica\w*", r"a distance", r"teletravail", r"presentiel", r"demenag\w+",
        r"remotamente", r"hibrid[oa]", r"home ?office", r"umzug", r"vor ort",
    ),
    "stipend and pay": (
        r"stipends?", r"salar(?:y|ies)", r"paid", r"pay", r"compensation", r"wages?",
        r"remunera\w+", r"salarios?", r"sueldos?", r"estipendio", r"pag(?:a|an|o|ado|ada)",
        r"salaires?", r"allocation", r"indemnite", r"bourse", r"pagamento", r"pago",
        r"verguetung", r"gehalt",
    ),
    "degree requirement": (
        r"degrees?", r"diplomas?", r"bachelor'?s?", r"college", r"university", r"universit\w+",
        r"titulo\w*", r"licenciatura", r"carrera", r"diplome\w*", r"licence", r"niveau d'?etudes",
        r"graduacao", r"faculdade", r"estudios", r"studium", r"abschluss",
    ),
    "recommendation letters": (
        r"recommendations?", r"references?", r"referees?", r"recommenders?",
        r"letters? of (?:recommendation|reference|support)", r"recomendaci\w+", r"cartas?",
        r"referencias?", r"recomienda\w*", r"recommandation\w*", r"lettres?", r"referents?",
        r"recomendacao", r"recomendacoes", r"empfehlung\w*", r"referenz\w*",
    ),
    "decision timeline": (
        r"hear back", r"heard (?:back|anything)", r"decisions?", r"results?", r"notif(?:y|ied)",
        r"announce\w*", r"resultados?", r"respuesta", r"decision\w*", r"seleccion", r"resultats?",
        r"reponse", r"selection", r"annonce\w*", r"resposta", r"selecao", r"entscheidung\w*",
    ),
    "upload problem": (
        r"upload\w*", r"attach\w*", r"error\w*", r"portal", r"browsers?", r"subir",
        r"adjuntar", r"navegador\w*", r"televers\w+", r"telecharg\w+", r"joindre", r"erreurs?",
        r"navigateurs?", r"carregar", r"anexar", r"erro", r"hochlad\w+", r"fehler\w*",
    ),
    # The partner's question ("how can we host fellows?"), not an applicant's "host agency".
    "hosting fellows": (
        r"host(?:ing)? (?:a |one |two |the |our )?fellows?", r"become a host\w*", r"host partners?",
        r"ser (?:agencia )?anfitrion\w*", r"(?:acoger|recibir) (?:a )?(?:un |los )?fellows?",
        r"accueillir (?:des |un |une )?fellows?", r"structure d'?accueil",
        r"(?:acolher|receber) (?:os |um )?fellows?", r"gastgeber\w*",
    ),
    "mentoring": (r"mentor\w*", r"mentori\w+", r"mentorat", r"mentoria"),
    "volunteering": (r"volunteer\w*", r"voluntari\w+", r"benevol\w+", r"ehrenamt\w*"),
    "start date": (
        r"start date", r"when does (?:the fellowship|it) (?:start|begin)", r"fecha de inicio",
        r"cuando empieza", r"date de debut", r"quand commence", r"data de inicio",
    ),
    "application fee": (
        r"application fee", r"fee to apply", r"cost to apply", r"cuota de inscripcion",
        r"frais de (?:candidature|dossier)", r"taxa de inscricao",
    ),
    "age limit": (r"age limit", r"too old", r"limite de edad", r"limite d'?age", r"limite de idade"),
    "part-time": (
        r"part[- ]time", r"hours a week", r"hours per week", r"medio tiempo", r"tiempo parcial",
        r"temps partiel", r"meio periodo", r"teilzeit",
    ),
    "language requirement": (
        r"fluent", r"speak english", r"english level", r"nivel de ingles", r"niveau d'?anglais",
        r"parler (?:couramment )?anglais", r"nivel de ingles", r"falar ingles",
    ),
    "housing": (r"housing", r"accommodation", r"vivienda", r"alojamiento", r"logement", r"moradia"),
}

_WORD = re.compile(r"[a-z][a-z'-]{2,}")


def fold(text: str) -> str:
    """Lower case without accents: "Fecha Límite" -> "fecha limite"."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _compile(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])(?:" + "|".join(patterns) + r")(?![\w-])")


_TOPIC_PATTERNS = {topic: _compile(patterns) for topic, patterns in TOPICS.items()}


def topics_of(folded: str) -> list[str]:
    """The known questions a text mentions, once each, in table order."""
    return [topic for topic, pattern in _TOPIC_PATTERNS.items() if pattern.search(folded)]


@functools.lru_cache(maxsize=None)
def _stopwords(language: str) -> frozenset[str]:
    name = LANGUAGE_NAMES.get(language)
    words = get_stop_words(name) if name else []
    return frozenset(fold(w) for w in words) | COURTESY


@functools.lru_cache(maxsize=None)
def _stemmer(language: str):
    name = LANGUAGE_NAMES.get(language)
    return snowballstemmer.stemmer(name) if name else None


@functools.lru_cache(maxsize=200_000)
def _stem(language: str, word: str) -> str:
    # The vocabulary of a desk is small, so caching makes stemming 10,000 emails nearly free.
    stemmer = _stemmer(language)
    return stemmer.stemWord(word) if stemmer is not None else word


def words_of(folded: str, language: str | None) -> list[str]:
    """Content words, stemmed in the text's language."""
    language = language if language in LANGUAGE_NAMES else DEFAULT_LANGUAGE
    stop = _stopwords(language)
    out = []
    for match in _WORD.finditer(folded):
        word = match.group(0).strip("'-")
        if len(word) < 3 or word in stop:
            continue
        out.append(_stem(language, word))
    return out


def inquiry_text(subject: str | None, body: str | None) -> str:
    """The text an inquiry is grouped by: its subject and the opening of its first message."""
    return f"{subject or ''}\n{(body or '')[:MAX_TEXT_CHARS]}"


def tokens(text: str, language: str | None) -> tuple[list[str], list[str]]:
    """(topic tokens, word tokens) of one inquiry's text."""
    folded = fold(text)
    return [TOPIC_PREFIX + t for t in topics_of(folded)], words_of(folded, language)
