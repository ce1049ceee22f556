"""Which clients train in a round, and their shuffle seeds: pure functions of the seed and the round (no TFF).

Because sampling and shuffling depend on nothing else, a resumed run samples exactly what an uninterrupted run
would, and every run of an experiment with the same seed trains on the same clients.
"""

from __future__ import annotations

import numpy as np


def derive_seed(*parts: int) -> int:
    """A 31-bit seed determined by ``parts`` (numpy SeedSequence)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] % (2 ** 31 - 1))


def sample_clients(client_ids: list[str], clients_per_round: int, seed: int, round_num: int) -> list[str]:
    """Clients of round ``round_num``: uniform without replacement, seeded by ``(seed, round_num)``.

    Raises:
      ValueError: more clients per round than ``client_ids`` holds.
    """
    rng = np.random.default_rng([int(seed), int(round_num)])
    idx = rng.choice(len(client_ids), size=clients_per_round, replace=False)
    return [client_ids[i] for i in idx]
