"""Classifier speed on one core: messages/s (single and batches), latency, load time, memory.

    .venv/bin/python bench/classify.py [--repeat N]
    .venv/bin/python bench/classify.py --quality     # held-out quality of the seed set instead

Messages are the seed set's texts (subject, body, sender) as Documents, so the numbers include
the automated checks, rules, features and model, but not MIME parsing. Prints one figure a line.
"""

from __future__ import annotations

import os

# One core: pin the process and keep BLAS from starting threads (before numpy is imported).
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quality() -> None:
    """Held-out scores: the default split `intake train` uses, then four other random splits."""
    from intake.classify.classifier import Classifier
    from intake.classify.evaluate import format_report
    from intake.classify.model import fit_bundle, load_seed
    from intake.classify.training import SPLIT_SEED, evaluate_examples, split
    from intake.config import Settings

    settings = Settings.from_env({})
    seed = load_seed(settings.category_names)
    results = []
    for n, split_seed in enumerate((SPLIT_SEED, 1, 2, 3, 4)):
        train, test = split(seed, seed=split_seed)
        classifier = Classifier(settings)
        classifier._bundle = fit_bundle(train, f"split-{split_seed}")
        scores, predicted = evaluate_examples(classifier, test)
        results.append(scores)
        if n == 0:
            print(f"default split: trained on {len(train)}, held out {len(test)}")
            print(format_report(scores))
            for e, p in zip(test, predicted):
                if e.category == "automated" and p != "automated" or p == "spam" and e.category != "spam":
                    print(f"  {e.category} -> {p}: {e.subject}")
        print(f"split {split_seed}: macro-F1 {scores.macro_f1:.3f}, legitimate called spam "
              f"{scores.extra['legit_as_spam']}, automated missed {scores.extra['automated_missed']}"
              f"/{scores.per_category['automated']['support']}")
    print(f"mean macro-F1 over {len(results)} splits: "
          f"{statistics.mean(r.macro_f1 for r in results):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3, help="passes over the seed set")
    parser.add_argument("--quality", action="store_true", help="held-out quality, not speed")
    args = parser.parse_args()
    os.environ["INTAKE_CACHE_DIR"] = tempfile.mkdtemp(prefix="intake-bench-")
    if args.quality:
        quality()
        return

    from intake.classify import Classifier, Document
    from intake.classify.model import ModelBundle, load_seed, seed_model
    from intake.config import Settings

    settings = Settings.from_env({})
    start = time.perf_counter()
    bundle = seed_model(settings.category_names)  # fitted (no cache yet) and written to the cache
    fit_s = time.perf_counter() - start
    blob = bundle.dumps()
    start = time.perf_counter()
    ModelBundle.loads(blob)
    load_s = time.perf_counter() - start

    docs = [Document(subject=e.subject, body=e.body, full_text=e.body, sender_address=e.sender)
            for e in load_seed()]
    classifier = Classifier(settings)
    classifier.classify(docs[0])  # warm-up

    latencies = []
    for _ in range(args.repeat):
        for doc in docs:
            t = time.perf_counter()
            classifier.classify(doc)
            latencies.append(time.perf_counter() - t)
    single_rate = len(latencies) / sum(latencies)

    batch_rates = {}
    for size in (32, 256):
        t = time.perf_counter()
        n = 0
        for _ in range(args.repeat):
            for i in range(0, len(docs), size):
                n += len(classifier.classify_many(docs[i:i + size]))
        batch_rates[size] = n / (time.perf_counter() - t)

    latencies.sort()
    print(f"messages: {len(docs)} x {args.repeat}")
    print(f"seed model fit (first use, no cache): {fit_s:.2f} s")
    print(f"model load from bytes: {load_s * 1000:.0f} ms ({len(blob) / 1024:.0f} KiB)")
    print(f"single: {single_rate:.0f} msg/s; latency median {statistics.median(latencies) * 1000:.2f} ms, "
          f"p95 {latencies[int(len(latencies) * 0.95)] * 1000:.2f} ms")
    for size, rate in batch_rates.items():
        print(f"batch of {size}: {rate:.0f} msg/s")
    print(f"RSS: {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
