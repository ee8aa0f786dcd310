"""Worker memory whatever languages arrive, and what the language detector's setting costs in
accuracy.

    .venv/bin/python bench/worker_memory.py                       # RSS by language, then accuracy
    .venv/bin/python bench/worker_memory.py --config FILE.toml    # another INTAKE_CONFIG
    .venv/bin/python bench/worker_memory.py --worker              # an `intake worker` process instead
    .venv/bin/python bench/worker_memory.py --accuracy-only

Memory: a fresh process does what `intake worker` does with each new inquiry, in one process on a
fresh SQLite file: the message stored, then processed by the real path (parse, thread, language,
classifier, inquiry, events) and its deliveries run (the card and the acknowledgment, logged: no
Slack or SMTP is configured), then the worker's periodic grouping refresh (it stems each
inquiry's words in its language). Mail arrives English first, then one language at a time: the
six default languages, then fifteen that are not configured, each a few inquiries (a question a
fellowship desk gets, written for this benchmark). The process's RSS (``VmRSS``) is printed after
each language, and its peak (``VmHWM``) at the end. ``--worker`` measures a real `intake worker`
process instead (embedded SQLite queue, two job threads, the outbox poller): this process stores
each message and enqueues its job as the webhook does, waits until the worker has processed it
and run its deliveries, and reads the worker's ``/proc/PID/status``; at the end it waits for the
worker's first periodic grouping refresh (a minute after it starts).

Accuracy: the detector as configured, and as each alternative setting, on labelled texts in the
six default languages: the grouping fixtures (tests/fixtures/grouping, en/es/fr/pt, whole emails
and their first five words) and the short texts below (all six). Every detector is built in this
one process, so accuracy runs after the memory figures, never before them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The order mail arrives in: English alone first, then the other default languages, then
# languages the defaults do not list (the detector picks among the configured ones for those).
TEXTS: dict[str, list[tuple[str, str]]] = {
    "en": [("Application deadline", "Hello, when is the deadline to apply for the fellowship this year? I want to be sure I submit everything on time. Thank you."),
           ("Stipend question", "Is the stipend the same in every city, and is it taxable? I could not find it on the website."),
           ("Partnership", "Our city would like to host two fellows next year. Who should we talk to about the partnership?")],
    "es": [("Fecha límite", "Hola, ¿cuál es la fecha límite para postular a la beca este año? Quiero enviar todo a tiempo. Gracias."),
           ("Estipendio", "¿El estipendio es igual en todas las ciudades? No encontré la información en la página."),
           ("Voluntariado", "Me gustaría ser voluntaria en sus eventos de la comunidad. ¿Cómo puedo inscribirme?")],
    "fr": [("Date limite", "Bonjour, quelle est la date limite pour postuler à la bourse cette année ? Je voudrais tout envoyer à temps. Merci."),
           ("Allocation", "L'allocation est-elle la même dans toutes les villes ? Je n'ai pas trouvé l'information sur le site."),
           ("Partenariat", "Notre ville souhaite accueillir deux fellows l'an prochain. À qui devons-nous parler ?")],
    "de": [("Bewerbungsfrist", "Hallo, wann endet die Bewerbungsfrist für das Stipendium in diesem Jahr? Ich möchte alles rechtzeitig einreichen. Danke."),
           ("Vergütung", "Ist die Vergütung in jeder Stadt gleich? Ich habe die Information auf der Webseite nicht gefunden."),
           ("Partnerschaft", "Unsere Stadt möchte im nächsten Jahr zwei Fellows aufnehmen. Mit wem sollen wir sprechen?")],
    "pt": [("Prazo", "Olá, qual é o prazo para se candidatar à bolsa este ano? Quero enviar tudo a tempo. Obrigada."),
           ("Bolsa", "O valor da bolsa é o mesmo em todas as cidades? Não encontrei a informação no site."),
           ("Voluntariado", "Gostaria de ser voluntário nos eventos da comunidade. Como posso me inscrever?")],
    "ko": [("지원 마감일", "안녕하세요, 올해 펠로우십 지원 마감일이 언제인가요? 모든 서류를 제때 제출하고 싶습니다. 감사합니다."),
           ("지원금 문의", "지원금은 모든 도시에서 동일한가요? 웹사이트에서 정보를 찾지 못했습니다."),
           ("협력 문의", "저희 시에서 내년에 펠로우 두 명을 모시고 싶습니다. 누구에게 연락하면 될까요?")],
    # Not configured by default.
    "it": [("Scadenza", "Buongiorno, qual è la scadenza per candidarsi alla borsa quest'anno? Vorrei inviare tutto in tempo. Grazie.")],
    "nl": [("Deadline", "Hallo, wanneer is de deadline om je aan te melden voor de fellowship dit jaar? Ik wil alles op tijd insturen. Bedankt.")],
    "pl": [("Termin", "Dzień dobry, jaki jest termin składania wniosków o stypendium w tym roku? Chcę wysłać wszystko na czas. Dziękuję.")],
    "sv": [("Sista ansökningsdag", "Hej, när är sista dagen att ansöka till stipendiet i år? Jag vill skicka in allt i tid. Tack.")],
    "tr": [("Son başvuru tarihi", "Merhaba, bu yıl burs için son başvuru tarihi ne zaman? Her şeyi zamanında göndermek istiyorum. Teşekkürler.")],
    "vi": [("Hạn chót", "Xin chào, hạn chót nộp đơn cho chương trình học bổng năm nay là khi nào? Tôi muốn gửi mọi thứ đúng hạn. Cảm ơn.")],
    "id": [("Batas waktu", "Halo, kapan batas waktu pendaftaran beasiswa tahun ini? Saya ingin mengirim semuanya tepat waktu. Terima kasih.")],
    "ro": [("Termen limită", "Bună ziua, care este termenul limită pentru a aplica la bursă anul acesta? Vreau să trimit totul la timp. Mulțumesc.")],
    "ru": [("Срок подачи", "Здравствуйте, когда крайний срок подачи заявки на стипендию в этом году? Хочу отправить всё вовремя. Спасибо.")],
    "uk": [("Термін подання", "Добрий день, коли останній день подання заявки на стипендію цього року? Хочу надіслати все вчасно. Дякую.")],
    "el": [("Προθεσμία", "Γεια σας, ποια είναι η προθεσμία για την υποβολή αίτησης για την υποτροφία φέτος; Ευχαριστώ πολύ.")],
    "ar": [("الموعد النهائي", "مرحبا، ما هو الموعد النهائي للتقديم على المنحة هذا العام؟ أريد إرسال كل شيء في الوقت المحدد. شكرا.")],
    "he": [("מועד אחרון", "שלום, מתי המועד האחרון להגשת מועמדות למלגה השנה? אני רוצה לשלוח הכל בזמן. תודה.")],
    "zh": [("申请截止日期", "您好，今年奖学金的申请截止日期是什么时候？我想按时提交所有材料。谢谢。")],
    "ja": [("応募締切", "こんにちは、今年のフェローシップの応募締切はいつですか？すべての書類を期限内に提出したいです。よろしくお願いします。")],
}

# Short texts a desk gets (as tests/test_classify_language.py), in the six default languages.
SHORT = [
    ("en", "When is the deadline to apply?"), ("en", "Thanks, see you Tuesday."), ("en", "Is the stipend taxable?"),
    ("es", "¿Cuándo cierra la convocatoria?"), ("es", "Quiero ser voluntaria."), ("es", "Gracias por la respuesta."),
    ("fr", "Bonjour, je voudrais postuler."), ("fr", "Merci beaucoup pour votre aide."),
    ("fr", "Je suis journaliste au Monde."), ("de", "Wie kann ich mich bewerben?"),
    ("de", "Vielen Dank für die schnelle Antwort."), ("de", "Ich bin bis Montag nicht im Büro."),
    ("de", "Gibt es eine Altersgrenze für die Bewerbung?"), ("de", "Können Sie mir die Unterlagen schicken?"),
    ("pt", "Quando abrem as inscrições?"), ("pt", "Obrigada pela resposta!"), ("pt", "Gostaria de ser voluntário."),
    ("ko", "지원 마감일이 언제인가요?"), ("ko", "감사합니다."), ("ko", "면접 일정 문의드립니다."),
]


def memory(pid: int | str = "self") -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process (this one by default) in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            found[line.split(":")[0]] = int(line.split()[1]) / 1024
    return found["VmRSS"], found["VmHWM"]


def message(n: int, language: str, subject: str, body: str) -> bytes:
    return (f"From: Sender {n} <sender{n}.{language}@example.org>\r\nTo: fellowship@intake.example.org\r\n"
            f"Subject: {subject}\r\nMessage-ID: <memory-{language}-{n}@example.org>\r\n"
            f"Date: Tue, 03 Nov 2026 09:12:00 -0500\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


def measure_memory(config: str | None, rounds: int) -> None:
    from intake.cli import Item, build_runtime, ingest_item
    from intake.grouping import store
    from intake.migrate import upgrade

    work = Path(tempfile.mkdtemp(prefix="intake-memory-"))
    os.environ.update(DATABASE_URL=f"sqlite:///{work / 'intake.db'}", INTAKE_QUEUE_PATH=str(work / "queue.db"),
                      INTAKE_CONFIG=config or "", SLACK_BOT_TOKEN="", SMTP_URL="")
    upgrade(os.environ["DATABASE_URL"])
    rt = build_runtime()
    print(f"languages configured: {', '.join(rt.settings.classifier.languages)}; "
          f"language_low_memory = {str(rt.settings.classifier.language_low_memory).lower()}")
    print(f"{'after':<34} {'RSS':>7}  detected")
    print(f"{'start (intake imported)':<34} {memory()[0]:5.0f} MB")
    n = 0
    for language, texts in TEXTS.items():
        detected = []
        for _ in range(rounds):
            for subject, body in texts:
                n += 1
                result = ingest_item(rt, Item(f"{language}-{n}", message(n, language, subject, body), 0))
                with rt.db.read_session() as session:
                    from intake.models import Inquiry

                    detected.append(session.get(Inquiry, result["inquiry"]).language or "-")
        where = "configured" if language in rt.settings.classifier.languages else "not configured"
        label = f"{language} mail ({where})"
        print(f"{label:<34} {memory()[0]:5.0f} MB  {' '.join(sorted(set(detected)))}")
    store.refresh(rt)
    print(f"{'grouping refresh':<34} {memory()[0]:5.0f} MB")
    rss, peak = memory()
    print(f"peak RSS (VmHWM) {peak:.0f} MB after {n} inquiries in {len(TEXTS)} languages")
    rt.db.dispose()


def measure_worker(config: str | None, rounds: int) -> None:
    """The same mail through a separate `intake worker` process, its RSS read from /proc."""
    from sqlalchemy import text

    from intake import inquiries
    from intake.config import Settings
    from intake.db import Database
    from intake.migrate import upgrade
    from intake.pipeline import process_message_job
    from intake.queue import HueyQueue
    from intake.runtime import Runtime

    work = Path(tempfile.mkdtemp(prefix="intake-memory-"))
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{work / 'intake.db'}",
           "INTAKE_QUEUE_PATH": str(work / "queue.db"), "INTAKE_CONFIG": config or "", "SLACK_BOT_TOKEN": "",
           "SMTP_URL": "", "REDIS_URL": "", "INTAKE_LOG_LEVEL": "INFO"}
    upgrade(env["DATABASE_URL"])
    settings = Settings.from_env(env)
    log_path = work / "worker.log"
    with log_path.open("w") as log_file:
        worker = subprocess.Popen([str(Path(sys.executable).parent / "intake"), "worker"], env=env,
                                  stdout=log_file, stderr=subprocess.STDOUT)
    db = Database(env["DATABASE_URL"])
    rt = Runtime(settings, db, queue=HueyQueue(settings))
    started = time.monotonic()

    def drained() -> bool:
        with db.engine.connect() as conn:
            todo = conn.execute(text("SELECT count(*) FROM messages WHERE state = 'received'")).scalar()
            owed = conn.execute(text("SELECT count(*) FROM deliveries WHERE state = 'pending'")).scalar()
        return not todo and not owed

    def wait(until, what: str, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if worker.poll() is not None:
                raise SystemExit(f"intake worker exited: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            time.sleep(0.2)

    try:
        print(f"`intake worker` pid {worker.pid}, languages {', '.join(settings.classifier.languages)}; "
              f"language_low_memory = {str(settings.classifier.language_low_memory).lower()}")
        wait(lambda: "job consumer on" in log_path.read_text(), "the worker to start", 120)
        print(f"{'after':<34} {'RSS':>7}")
        print(f"{'start (worker idle)':<34} {memory(worker.pid)[0]:5.0f} MB")
        n = 0
        for language, texts in TEXTS.items():
            for _ in range(rounds):
                for subject, body in texts:
                    n += 1
                    with db.session() as session:
                        stored = inquiries.store_raw(session, message(n, language, subject, body), provider="mime")
                    process_message_job.enqueue(rt, stored.message_id)
            wait(drained, f"{language} mail to be processed")
            where = "configured" if language in settings.classifier.languages else "not configured"
            print(f"{f'{language} mail ({where})':<34} {memory(worker.pid)[0]:5.0f} MB")
        wait(lambda: "groups.refresh" in log_path.read_text(), "the periodic grouping refresh",
             max(5.0, 75 - (time.monotonic() - started)))
        time.sleep(1.0)
        print(f"{'grouping refresh':<34} {memory(worker.pid)[0]:5.0f} MB")
        print(f"peak RSS (VmHWM) of `intake worker` {memory(worker.pid)[1]:.0f} MB after {n} inquiries "
              f"in {len(TEXTS)} languages")
    finally:
        worker.terminate()
        worker.wait(30)
        db.dispose()


def labelled() -> list[tuple[str, str, str]]:
    """(kind, language, text): whole emails and their first five words, and the short texts."""
    found = [("short", lang, text) for lang, text in SHORT]
    for name in ("questions", "holdout", "unrelated"):
        for line in (REPO / "tests" / "fixtures" / "grouping" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                text = row["body"]
                found.append(("email", row["lang"], text))
                found.append(("5 words", row["lang"], " ".join(text.split()[:5])))
    return found


def seed_bodies() -> list[str]:
    bodies = []
    for path in sorted((REPO / "intake" / "classify" / "seed").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                bodies.append(json.loads(line)["body"])
    return bodies


def _code(language) -> str | None:
    return language.iso_code_639_1.name.lower() if language is not None else None


def measure_accuracy(config: str | None) -> None:
    """Each detector setting on the labelled texts, then on the seed set's openings against the
    high-accuracy answer for the whole text (the seed set has no language labels)."""
    from intake.classify.language import detector_for
    from intake.config import Settings

    settings = Settings.from_env({"INTAKE_CONFIG": config or ""})
    codes = settings.classifier.languages
    texts = labelled()
    kinds = sorted({kind for kind, _, _ in texts})
    bodies = seed_bodies()
    reference = [_code(detector_for(codes, False).detect_language_of(body)) for body in bodies]
    print(f"\ndetection accuracy on {len(texts)} labelled texts ({', '.join(codes)} candidates); "
          f"configured: language_low_memory = {str(settings.classifier.language_low_memory).lower()}")
    print(f"{'detector':<20} " + " ".join(f"{kind:>14}" for kind in kinds) + f" {'all':>14}"
          + f"  seed set ({len(bodies)}), first 3 / 5 words agree with the whole text")
    for name, low_memory in (("high accuracy", False), ("low accuracy", True)):
        detector = detector_for(codes, low_memory)
        right = {kind: [0, 0] for kind in [*kinds, "all"]}
        misses = []
        for kind, lang, text in texts:
            found = _code(detector.detect_language_of(text))
            for key in (kind, "all"):
                right[key][0] += found == lang
                right[key][1] += 1
            if found != lang:
                misses.append(f"{lang}->{found}: {text[:40]!r}")
        agree = {words: sum(_code(detector.detect_language_of(" ".join(body.split()[:words]))) == ref
                            for body, ref in zip(bodies, reference)) / len(bodies)
                 for words in (3, 5)}
        print(f"{name:<20} " + " ".join(f"{right[k][0]:>6}/{right[k][1]:<3} {100 * right[k][0] / right[k][1]:3.0f}%"
                                         for k in [*kinds, "all"])
              + f"  {100 * agree[3]:.1f}% / {100 * agree[5]:.1f}%")
        for miss in misses[:12]:
            print(f"    {miss}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="an INTAKE_CONFIG file (default: the built-in defaults)")
    parser.add_argument("--rounds", type=int, default=2, help="times each language's texts are sent")
    parser.add_argument("--worker", action="store_true", help="measure a separate `intake worker` process")
    parser.add_argument("--accuracy-only", action="store_true")
    args = parser.parse_args()
    if args.worker:
        measure_worker(args.config, args.rounds)
    elif not args.accuracy_only:
        measure_memory(args.config, args.rounds)
    measure_accuracy(args.config)


if __name__ == "__main__":
    main()
