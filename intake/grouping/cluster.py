"""Near-duplicate questions in a set of open inquiries: vectors, then groups.

Pure computation (no database, no Slack), so the benchmark and the tests run it on plain data.

**Vectors.** Each inquiry gets two TF-IDF vectors (scikit-learn, already our classifier's
library): one over its topic tokens, one over its stemmed words (``features.py``). Each is
L2-normalized, then they are concatenated with weights ``sqrt(w)`` and ``sqrt(1 - w)``, so the dot
product of two inquiries is ``w * topic cosine + (1 - w) * word cosine``: a Spanish and a French
email about the deadline meet on the topic half, two English emails on any topic on the word
half. IDF makes a topic that every application email mentions count for little.

**Groups.** Within one category at a time (a group never mixes categories), inquiries whose
similarity reaches ``threshold`` are neighbours (a sparse matrix product, in row chunks so memory
stays bounded). Groups are then formed the way Butina clustering does it: the inquiry with the
most neighbours starts a group with all its still-free neighbours, and so on. Every member is
within the threshold of the group's centre, so one email that asks two questions cannot chain
two groups into one (single linkage would). A last pass moves each inquiry to the group whose
centroid it is closest to, which recovers paraphrases that missed the centre by a little.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from intake.grouping.features import TOPIC_PREFIX, inquiry_text, tokens

CHUNK_ROWS = 2000


@dataclass(frozen=True)
class Candidate:
    """One open inquiry that may be grouped."""

    id: int
    category: str
    language: str | None
    subject: str
    body: str


@dataclass(frozen=True)
class Options:
    threshold: float = 0.45  # similarity (0..1) that makes two inquiries the same question
    topic_weight: float = 0.5  # share of the similarity that comes from topic tokens
    min_size: int = 2  # smallest group worth naming
    # A leader's neighbours must be about as similar to one another as its neighbours' own are.
    leader_cohesion: float = 0.7


@dataclass(frozen=True)
class Cluster:
    category: str
    ids: tuple[int, ...]  # members, the most central first
    topics: tuple[str, ...]  # the topic labels most members share, strongest first


def _identity(doc: list[str]) -> list[str]:
    return doc


def _tfidf(token_lists: list[list[str]]) -> sparse.csr_matrix:
    if not any(token_lists):
        return sparse.csr_matrix((len(token_lists), 1))
    vectorizer = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, norm="l2")
    return vectorizer.fit_transform(token_lists).tocsr()


def vectorize(candidates: Sequence[Candidate], options: Options) -> tuple[sparse.csr_matrix, list[list[str]]]:
    """The weighted vectors of the candidates (one row each) and each one's topic tokens."""
    topic_lists, word_lists = [], []
    for c in candidates:
        topic_tokens, word_tokens = tokens(inquiry_text(c.subject, c.body), c.language)
        topic_lists.append(topic_tokens)
        word_lists.append(word_tokens)
    topics = _tfidf(topic_lists) * math.sqrt(options.topic_weight)
    words = _tfidf(word_lists) * math.sqrt(1 - options.topic_weight)
    return sparse.hstack([topics, words], format="csr", dtype=np.float32), topic_lists


def _neighbours(x: sparse.csr_matrix, threshold: float) -> sparse.csr_matrix:
    """A boolean adjacency matrix: similarity >= threshold, the diagonal excluded."""
    rows = []
    xt = x.T.tocsc()
    for start in range(0, x.shape[0], CHUNK_ROWS):
        block = (x[start:start + CHUNK_ROWS] @ xt).tocsr()
        block.data = block.data >= threshold
        block.eliminate_zeros()
        rows.append(block)
    adjacency = sparse.vstack(rows, format="csr") if rows else sparse.csr_matrix(x.shape[:1] * 2)
    adjacency.setdiag(False)
    adjacency.eliminate_zeros()
    return adjacency.astype(bool)


def _cohesion(x: sparse.csr_matrix, adjacency: sparse.csr_matrix) -> np.ndarray:
    """Mean similarity between the neighbours of each inquiry (1 when it has fewer than two).

    From one sparse product: the squared norm of the sum of the neighbours' vectors is the sum
    of all their pairwise similarities (plus their own squared norms, subtracted).
    """
    a = adjacency.astype(np.float32)
    degree = np.asarray(adjacency.sum(axis=1)).ravel().astype(np.float64)
    sums = a @ x
    total = np.asarray(sums.multiply(sums).sum(axis=1)).ravel()
    own = a @ np.asarray(x.multiply(x).sum(axis=1)).ravel()
    pairs = degree * (degree - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pairs > 0, (total - own) / pairs, 1.0)


def _butina(x: sparse.csr_matrix, adjacency: sparse.csr_matrix, leader_cohesion: float) -> list[list[int]]:
    """Leaders by descending neighbour count, each taking its free neighbours.

    An inquiry whose neighbours are much less similar to one another than theirs are (one email
    asking two questions, close to both groups) leads only after the others: it joins the first
    group that takes it instead of fusing two.
    """
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    cohesion = _cohesion(x, adjacency)
    with np.errstate(divide="ignore", invalid="ignore"):
        around = np.where(degree > 0, (adjacency.astype(np.float64) @ cohesion) / degree, 0.0)
    incoherent = cohesion < leader_cohesion * around
    # Coherent leaders first, most neighbours first; ties go to the older inquiry.
    order = np.lexsort((np.arange(len(degree)), -degree, incoherent))
    free = np.ones(len(degree), dtype=bool)
    groups = []
    for leader in order:
        if not free[leader] or degree[leader] == 0:
            continue
        members = adjacency.indices[adjacency.indptr[leader]:adjacency.indptr[leader + 1]]
        members = members[free[members]]
        if len(members) == 0:
            continue
        free[leader] = False
        free[members] = False
        groups.append([int(leader), *(int(m) for m in members)])
    return groups


def _refine(x: sparse.csr_matrix, groups: list[list[int]], threshold: float) -> list[list[int]]:
    """One pass of moving each member of a group to the nearest group centroid above threshold."""
    if len(groups) < 2:
        return groups
    member_rows = [i for g in groups for i in g]
    labels = np.concatenate([np.full(len(g), k) for k, g in enumerate(groups)])
    assign = sparse.csr_matrix(
        (np.ones(len(member_rows), dtype=np.float32), (labels, member_rows)),
        shape=(len(groups), x.shape[0]),
    )
    centroids = normalize(assign @ x)
    scores = (x[member_rows] @ centroids.T).toarray()
    best = scores.argmax(axis=1)
    keep = scores[np.arange(len(member_rows)), best] >= threshold
    new_labels = np.where(keep, best, labels)
    moved: dict[int, list[int]] = defaultdict(list)
    for row, label in zip(member_rows, new_labels):
        moved[int(label)].append(row)
    refined = []
    for k in sorted(moved):
        # Members that stayed keep their order (the centre first); newcomers follow.
        stayed, original = set(moved[k]), groups[k]
        refined.append([r for r in original if r in stayed] + [r for r in moved[k] if r not in set(original)])
    return refined


def _shared_topics(rows: Iterable[int], topic_lists: list[list[str]]) -> tuple[str, ...]:
    counts: dict[str, int] = defaultdict(int)
    rows = list(rows)
    for row in rows:
        for token in topic_lists[row]:
            counts[token[len(TOPIC_PREFIX):]] += 1
    common = [t for t, n in counts.items() if n * 2 > len(rows)]
    return tuple(sorted(common, key=lambda t: -counts[t]))


def cluster(candidates: Sequence[Candidate], options: Options = Options()) -> list[Cluster]:
    """Groups of at least ``options.min_size`` candidates asking the same question.

    Clusters come out largest first; each lists its most central member first.
    """
    by_category: dict[str, list[int]] = defaultdict(list)
    for index, c in enumerate(candidates):
        by_category[c.category].append(index)
    out: list[Cluster] = []
    for category, indexes in by_category.items():
        if len(indexes) < options.min_size:
            continue
        block = [candidates[i] for i in indexes]
        x, topic_lists = vectorize(block, options)
        adjacency = _neighbours(x, options.threshold)
        groups = _refine(x, _butina(x, adjacency, options.leader_cohesion), options.threshold)
        for rows in groups:
            if len(rows) >= options.min_size:
                out.append(Cluster(category, tuple(block[r].id for r in rows), _shared_topics(rows, topic_lists)))
    out.sort(key=lambda c: (-len(c.ids), c.ids[0]))
    return out
