"""Cue words: what the program's staff know about each category, in the six languages.

A few hundred seed messages cannot teach the model every way a reporter or a donor writes, least
of all in Spanish, French, Portuguese, German or Korean. These lists give it that prior knowledge
as extra tokens ("cue_press") appended to the text: the model still learns how much each cue is
worth from the labelled examples, so a cue that misleads is weighted down rather than obeyed.
They cover the default taxonomy; a renamed or new category simply gets no cue.
"""

from __future__ import annotations

import re
import unicodedata

_CUES: dict[str, list[str]] = {
    "application": [
        r"how (?:do|can) i apply", r"apply(?:ing)?", r"eligib\w*", r"requirements?", r"deadline",
        r"stipend", r"visas?", r"cohort", r"qualif\w+", r"info(?:rmation)? sessions?",
        r"prospective", r"applicants?", r"work authorization", r"to be considered",
        r"postular\w*", r"aplicar", r"convocatoria", r"requisitos?", r"becas?", r"fecha l[ií]mite",
        r"candidat\w+", r"[ée]ligib\w+", r"date limite", r"dossiers?", r"inscri[çc][õo]es",
        r"candidatura", r"bolsas?", r"prazo", r"bewerb\w+", r"voraussetzung\w*",
        r"지원", r"자격", r"마감",
    ],
    "applicant_status": [
        r"i (?:have )?applied", r"my application", r"i submitted", r"status", r"my interview",
        r"interview (?:invitation|link|slot|panel)", r"references?", r"withdraw\w*", r"wait ?list\w*",
        r"decisions?", r"offer letter", r"accepted", r"not selected", r"rejection",
        r"heard (?:back|anything)", r"haven'?t heard", r"application id", r"portal", r"next steps?",
        r"mi solicitud", r"mi postulaci[óo]n", r"retir\w+", r"entrevistas?", r"ma candidature",
        r"mon dossier", r"entretien", r"minha inscri[çc][ãa]o", r"minha candidatura",
        r"desist[êe]ncia", r"resultado", r"meine(?:r)? bewerbung", r"면접", r"지원서",
    ],
    "partnership": [
        r"host(?:ing)? (?:a |one |two |the )?fellows?", r"host agenc\w+", r"host partner\w*",
        r"partner(?:ship|ing)?s?", r"collaborat\w+", r"memorandum", r"mou", r"cost share",
        r"data (?:sharing|use) agreement", r"agenc(?:y|ies)", r"city of", r"county", r"department",
        r"ministr\w+", r"municipal\w*", r"mayor'?s office", r"state of", r"government",
        r"alianza", r"colaboraci[óo]n", r"convenio", r"cooperaci[óo]n", r"municipalidad",
        r"ministerio", r"partenariat", r"accueillir", r"collectivit\w+", r"parceria",
        r"coopera[çc][ãa]o", r"conv[êe]nio", r"prefeitura", r"secretaria", r"zusammenarbeit",
        r"kooperation\w*", r"협력",
    ],
    "press": [
        r"reporter", r"journalis\w+", r"periodis\w+", r"jornalis\w+", r"rep[óo]rter",
        r"reportage", r"reportaje", r"reportagem", r"articles?", r"art[íi]culo", r"mat[ée]ria",
        r"story", r"stories", r"on the record", r"comment", r"quote", r"newsroom", r"redacci[óo]n",
        r"r[ée]daction", r"editor", r"producer", r"segment", r"documentary", r"fact.?check\w*",
        r"publish\w*", r"publication", r"embargo", r"press kit", r"op-?ed", r"magazine",
        r"newspaper", r"radio", r"on air", r"podcast", r"episode", r"coverage", r"media",
        r"presse", r"redaktion", r"기자", r"기사", r"인터뷰",
    ],
    "funding": [
        r"donat\w+", r"donor", r"gifts?", r"giving", r"grants?", r"grantee", r"sponsor\w*",
        r"matching", r"tax (?:receipt|deductible|id)", r"501\(c\)\(3\)", r"ein", r"pledge",
        r"bequest", r"philanthrop\w+", r"foundation", r"fund(?:s|ing|ed)?", r"contribut\w+",
        r"donaci[óo]n", r"donar", r"patrocin\w+", r"financ\w+", r"m[ée]c[ée]nat", r"dons?",
        r"doa[çc][ãa]o", r"apoio financeiro", r"spende\w*", r"기부", r"후원",
    ],
    "volunteer": [
        r"volunteer\w*", r"mentor\w*", r"chapters?", r"brigade", r"hack ?days?", r"hack ?nights?",
        r"hackathon", r"pro bono", r"help out", r"my time", r"voluntari\w+", r"voluntário\w*",
        r"b[ée]n[ée]vol\w+", r"mentorat", r"mentoria", r"ehrenamt\w*", r"자원봉사", r"봉사",
    ],
    "events": [
        r"speak(?:er|ers|ing)?", r"keynote", r"panel(?:ist)?s?", r"conferences?", r"summit",
        r"lectures?", r"talks?", r"webinars?", r"workshops?", r"meetups?", r"moderat\w+",
        r"fireside", r"roundtable", r"remarks", r"ceremony", r"session proposal", r"call for",
        r"ponente", r"conferencia", r"charla", r"conversatorio", r"palestra", r"congresso",
        r"intervenir", r"intervention", r"conf[ée]rence", r"table ronde", r"s[ée]minaire",
        r"mesa redonda", r"painel", r"vortrag", r"konferenz", r"컨퍼런스", r"발표", r"연사",
    ],
    "vendor": [
        r"demo", r"free trial", r"our (?:platform|company|agency|firm|team of|software|tool|services?)",
        r"services?", r"pricing", r"quote", r"discount\w*", r"solutions?", r"outsourc\w+",
        r"recruit(?:er|ers|ing)", r"candidates", r"staffing", r"fee", r"commission", r"resell\w*",
        r"capabilities", r"proposal", r"rates?", r"clients?", r"15 minutes", r"quick call",
        r"propuesta comercial", r"servicios", r"consultora", r"proposition commerciale",
        r"devis", r"agence", r"proposta comercial", r"software house", r"servi[çc]os",
        r"plataforma", r"plateforme", r"soluci[óo]n\w*", r"solu[çc][ãa]o", r"d[ée]monstra\w+",
        r"demonstra[çc][ãa]o", r"tarif\w*", r"cotiza\w+", r"or[çc]amento", r"recrutement",
        r"reclutamiento", r"recrutamento", r"headhunt\w*", r"angebot", r"dienstleist\w+",
    ],
    "feedback": [
        r"thank you", r"thanks", r"great", r"lov(?:e|ed)", r"awesome", r"inspiring", r"kudos",
        r"complain\w*", r"disappoint\w*", r"frustrat\w+", r"broken", r"bug", r"404", r"errors?",
        r"does(?:n'?t| not) work", r"not working", r"typo", r"website", r"site", r"page",
        r"accessib\w+", r"screen reader", r"suggest\w*", r"fix", r"slow\w*", r"unreadable",
        r"merci", r"bravo", r"probl[èe]me", r"queja", r"sugerencia", r"p[áa]gina",
        r"no funciona", r"reclama[çc][ãa]o", r"sugest[ãa]o", r"parab[ée]ns", r"elogio",
        r"kritik", r"오류", r"excellent", r"wonderful", r"fantastic", r"amazing", r"impress\w*",
        r"appreciat\w+", r"rude", r"terrible", r"unacceptable", r"ironic", r"confusing",
        r"misleading", r"contradict\w*", r"out of date", r"outdated", r"félicit\w+",
        r"passionnant\w*", r"d[ée]cevant\w*", r"d[ée][çc]u\w*", r"gracias por", r"felicit\w+",
        r"obrigad[ao] pel[ao]", r"danke", r"lob", r"toll", r"großartig", r"감사", r"불편",
    ],
    "spam": [
        r"click (?:here|below|the link)", r"verify", r"suspend\w*", r"password", r"winner",
        r"won", r"lottery", r"prize", r"beneficiary", r"bitcoin", r"crypto", r"wire transfer",
        r"gift cards?", r"urgent\w*", r"bank (?:details|account)", r"seo", r"backlinks?",
        r"viagra", r"casino", r"loan", r"confidential\w*", r"million", r"inheritance", r"claim (?:your|the|it|now)",
        r"expire\w*", r"24 hours", r"within \d+ hours", r"credentials", r"locked", r"sign in",
        r"premio", r"sorteo", r"bloquead[ao]", r"gagn[ée]", r"colis", r"sorteado", r"pr[êe]mio",
        r"invest\w*", r"earn(?:ings?)?", r"profits?", r"guarantee[ds]?", r"risk.free", r"whatsapp",
        r"rewards?", r"act now", r"limited (?:time|offer|stock)", r"offer ends", r"dear friend",
        r"kindly", r"100%", r"no experience (?:needed|required)", r"work from home", r"passport",
        r"compensation", r"atm card", r"next of kin", r"western union", r"moneygram", r"reviews?",
        r"followers", r"free (?:trial|spins|iphone|gift)", r"weight", r"pills?", r"ganhe",
        r"dinheiro", r"gesperrt", r"konto", r"cr[ée]dit", r"gratuit", r"herencia", r"cuenta",
        r"contrase[ñn]a", r"mot de passe", r"senha", r"당첨", r"무료",
    ],
    "automated": [
        r"out of (?:the )?office", r"auto(?:matic|mated)?[- ]?(?:reply|response|message)",
        r"do not reply", r"no-?reply", r"unmonitored", r"undeliver\w+", r"delivery",
        r"mailer-daemon", r"receipt", r"notification", r"google calendar", r"vacation",
        r"upon my return", r"limited access", r"fuera de la oficina", r"absente?", r"cong[ée]s",
        r"f[ée]rias", r"nicht im b[üu]ro", r"자동", r"휴가",
    ],
}


def _fold(text: str) -> str:
    """Lower-case; Korean stays as it is (NFKD would split its syllables into jamo)."""
    return text.lower()


_HANGUL = re.compile(r"[\uac00-\ud7a3]")


def _compile(words: list[str]) -> re.Pattern[str]:
    """Whole words, except Korean, where particles attach to the word (지원서를, 지원할)."""
    latin = [w for w in words if not _HANGUL.search(w)]
    korean = [w for w in words if _HANGUL.search(w)]
    parts = [r"(?<!\w)(?:" + "|".join(latin) + r")(?!\w)"] if latin else []
    if korean:
        parts.append("|".join(korean))
    return re.compile("|".join(parts), re.IGNORECASE)


_PATTERNS: dict[str, re.Pattern[str]] = {category: _compile(words) for category, words in _CUES.items()}


# The look of a message, whatever its language: scams promise large sums and links, and shout.
_STYLE: dict[str, re.Pattern[str]] = {
    "bigmoney": re.compile(
        r"(?:[$€£]|r\$|usd|eur)\s?\d{1,3}(?:[,.\s]\d{3}){2,}|\d+(?:[.,]\d+)?\s?(?:million|millones|millions|milh[õo]es)",
        re.IGNORECASE,
    ),
    "link": re.compile(r"https?://|www\.", re.IGNORECASE),
    "shout": re.compile(r"!!|\$\$|\b[A-Z]{4,}\b(?:\s+\b[A-Z]{3,}\b)+"),
}


def cue_tokens(text: str) -> str:
    """One `cue_<category>` token per distinct cue word found (capped at 3 per category), and
    `cue_<style>` tokens for large sums, links and shouting."""
    normalized = unicodedata.normalize("NFC", text)
    folded = _fold(normalized)
    out: list[str] = []
    for category, pattern in _PATTERNS.items():
        found = {m.group(0) for m in pattern.finditer(folded)}
        out.extend([f"cue_{category}"] * min(len(found), 3))
    for name, pattern in _STYLE.items():
        if pattern.search(normalized):
            out.append(f"cue_{name}")
    return " ".join(out)


def spam_signs(text: str, *, sure: bool = False) -> list[str]:
    """What makes the text look like spam, for the spam gate and for staff: two or more spam
    cue words (one when the model is `sure`), a large sum, or a link with a cue word.
    [] when nothing that strong (a worried claimant writing "urgent" is not spam)."""
    normalized = unicodedata.normalize("NFC", text)
    words = sorted({m.group(0).lower() for m in _PATTERNS["spam"].finditer(_fold(normalized))})
    signs = words[:4] if len(words) >= (1 if sure else 2) else []
    if _STYLE["bigmoney"].search(normalized):
        signs.append("large sum")
    if words and not signs and _STYLE["link"].search(normalized):
        signs = words[:4] + ["link"]
    return signs
