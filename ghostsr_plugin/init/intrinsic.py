"""Choosing one layer's intrinsic filters: k-means clustering (GhostSR) or the first filters.

A Ghost layer computes ``c_i = ceil(lambda * c_out)`` channels with a real conv and makes
the rest by shifting them: output position ``p`` carries intrinsic channel ``p % c_i``
(positions below ``c_i`` are the intrinsic channels themselves). A Ghost layer whose real
conv is a group conv (``G`` groups) is laid out per conv group: the same holds within each
group, whose local position ``p`` carries the group's local intrinsic channel
``p % (c_i / G)``. Initializing it from a plain layer means choosing which plain filter
each intrinsic position computes, and which intrinsic position stands in for each plain
filter (its *label*); the next layer's input weights are built from the labels (see
``transfer``).
"""
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans

METHODS = ('cluster', 'order')
KMEANS_RESTARTS = 10  # sklearn's n_init: fixed, so that a seed gives one result


@dataclass
class IntrinsicChoice:
    """Intrinsic filters of one layer.

    Attributes:
        intrinsic: (c_i,) index of the plain filter each intrinsic position computes.
        labels: (c_out,) intrinsic position standing in for each plain filter.
        coefficients: (c_out,) how much of each plain filter's response its intrinsic
            channel stands in for: the least-squares coefficient ``<v, r> / <r, r>`` of the
            filter ``v`` on its representative ``r`` (1 for the representative itself and
            for exact duplicates, 0 for an orthogonal filter).
        distances: (c_out,) distance of each plain filter to the mean of its label group
            (its cluster's center), in the space the filters were clustered in.
        norms: (c_out,) the norm of each plain filter in that space, the scale of ``distances``.
    """

    intrinsic: np.ndarray
    labels: np.ndarray
    coefficients: np.ndarray
    distances: np.ndarray
    norms: np.ndarray

    @property
    def sizes(self):
        """Number of plain filters each intrinsic position stands in for."""
        return np.bincount(self.labels, minlength=len(self.intrinsic))


def _distances_to_centers(vectors, labels, num_groups):
    centers = np.stack([vectors[labels == g].mean(0) for g in range(num_groups)])
    return np.linalg.norm(vectors - centers[labels], axis=1)


def _choice(vectors, intrinsic, labels, distances):
    representative = vectors[intrinsic[labels]]
    squared_norms = (representative * representative).sum(1)
    projection = (vectors * representative).sum(1)
    coefficients = np.divide(projection, squared_norms, out=np.zeros_like(projection), where=squared_norms > 0)
    coefficients[intrinsic] = 1
    return IntrinsicChoice(intrinsic, labels, coefficients, distances, np.linalg.norm(vectors, axis=1))


def _split_until(labels, num_clusters):
    """Give ``labels`` exactly ``num_clusters`` non-empty clusters.

    k-means leaves clusters empty only when there are fewer distinct filters than
    clusters (exact duplicates); a duplicate is then moved out of the largest cluster.
    """
    labels = np.unique(labels, return_inverse=True)[1]
    for new in range(labels.max() + 1, num_clusters):
        largest = np.flatnonzero(labels == np.bincount(labels).argmax())
        labels[largest[-1]] = new
    return labels


def cluster_filters(vectors, num_intrinsic, seed=0):
    """GhostSR's choice: k-means into ``num_intrinsic`` clusters, the filter nearest each center.

    ``vectors`` (c_out, n): the plain filters, flattened (and screened, see ``transfer``).
    Clusters are then placed on intrinsic positions so that every output position ``p``
    (which carries intrinsic channel ``p % c_i``) stands in for a plain filter close to
    filter ``p``, as far as a one-to-one placement allows (a linear assignment on squared
    distances). The order does not matter where the next layer's input is screened (its
    weights are folded to match), but it does where the output joins a residual stream
    that later layers read by channel position.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    num_filters = len(vectors)
    if num_intrinsic == num_filters:
        cluster = np.arange(num_filters)
    else:
        kmeans = KMeans(n_clusters=num_intrinsic, n_init=KMEANS_RESTARTS, random_state=seed).fit(vectors)
        cluster = _split_until(kmeans.labels_, num_intrinsic)
    to_center = _distances_to_centers(vectors, cluster, num_intrinsic)
    representative = np.array([np.flatnonzero(cluster == k)[to_center[cluster == k].argmin()]
                               for k in range(num_intrinsic)])

    # cost[q, k]: squared distance of the filters at positions p = q (mod c_i) to representative k.
    position = np.arange(num_filters) % num_intrinsic
    squared = cdist(vectors, vectors[representative], 'sqeuclidean')
    cost = np.stack([squared[position == q].sum(0) for q in range(num_intrinsic)])
    _, cluster_at = linear_sum_assignment(cost)
    position_of = np.argsort(cluster_at)
    return _choice(vectors, representative[cluster_at], position_of[cluster], to_center)


def order_filters(vectors, num_intrinsic):
    """The paper's from-scratch layout: intrinsic = the first ``num_intrinsic`` filters.

    Plain filter ``p`` is labelled with the intrinsic channel that output position ``p``
    carries, ``p % c_i``.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    labels = np.arange(len(vectors)) % num_intrinsic
    return _choice(vectors, np.arange(num_intrinsic), labels, _distances_to_centers(vectors, labels, num_intrinsic))


def _concatenate(choices):
    """One layer's choice from its conv groups' choices, each numbered within its group."""
    filters = np.cumsum([0] + [len(c.labels) for c in choices])
    positions = np.cumsum([0] + [len(c.intrinsic) for c in choices])
    return IntrinsicChoice(np.concatenate([c.intrinsic + f for c, f in zip(choices, filters)]),
                           np.concatenate([c.labels + p for c, p in zip(choices, positions)]),
                           *(np.concatenate([getattr(c, name) for c in choices])
                             for name in ('coefficients', 'distances', 'norms')))


def choose_intrinsic(vectors, num_intrinsic, method='cluster', seed=0, groups=1):
    """Intrinsic filters of one layer by ``method`` ('cluster' or 'order').

    With ``groups`` > 1 (a group conv), each group's intrinsic filters are chosen among
    its own filters: conv group ``g`` of the real conv reads only group ``g``'s inputs. The
    choice is made for each group alone, on its local positions (local output position
    ``p`` carries the group's local intrinsic channel ``p % (num_intrinsic / groups)``, the
    Ghost layer's per-group layout), then numbered layer-wide: group ``g``'s intrinsic
    positions are ``g * num_intrinsic / groups + local`` (conv group ``g`` of the real
    conv), its filters ``g * c_out / groups + local``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown ghost init method '{method}'; expected one of {METHODS}")
    if groups > 1:
        return _concatenate([choose_intrinsic(part, num_intrinsic // groups, method, seed)
                             for part in np.split(np.asarray(vectors), groups)])
    if method == 'cluster':
        return cluster_filters(vectors, num_intrinsic, seed)
    return order_filters(vectors, num_intrinsic)
